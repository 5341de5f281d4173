"""Policy revisions in the audit trail, and shadow mode, through a real multi-worker server.

The server runs a copy of the bundled policies (so the test can edit them while it runs) and,
in shadow mode, a candidate copy in which a project viewer may no longer read.
"""

import json
import re
import shutil
import time

import pytest

from mlflow_secure.config import bundled_policy_dir
from mlflow_secure.policy.revision import directory_revision
from tests.support import servers

pytestmark = pytest.mark.e2e

REVISION = re.compile(r"sha256:[0-9a-f]{16}")
VIEWER_GRANTS = '"viewer": {"read"},'
DISAGREES = "shadow policy disagrees: "


def api(server, key, path, body=None):
    if body is None:
        return server.api("GET", path, key)
    return server.api("POST", path, key, json=body)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("shadow")
    active, candidate = root / "active", root / "candidate"
    shutil.copytree(bundled_policy_dir(), active)
    shutil.copytree(bundled_policy_dir(), candidate)
    resources = candidate / "mlflow" / "authz" / "resources.rego"
    text = resources.read_text()
    assert VIEWER_GRANTS in text
    resources.write_text(text.replace(VIEWER_GRANTS, '"viewer": set(),'))
    server = servers.start(
        root,
        workers=2,
        env={
            "MLFLOW_SECURE_POLICY_DIR": str(active),
            "MLFLOW_SECURE_SHADOW_POLICY_DIR": str(candidate),
        },
    )
    admin = server.admin_key()

    def setup(path, body):
        response = api(server, admin, "/api/2.0/mlflow-secure/" + path, body)
        assert response.status_code == 200, (path, response.text)
        return response.json()

    setup("users/create", {"name": "bob", "clearance": "confidential"})
    setup("projects/create", {"name": "fraud"})
    setup("projects/set-member", {"project": "fraud", "role": "viewer", "principal": "bob"})
    bob = setup("keys/create", {"principal": "bob", "scopes": ["read"]})["key"]
    tags = [{"key": "mlflow.secure.project", "value": "fraud"}]
    created = api(
        server, admin, "/api/2.0/mlflow/experiments/create", {"name": "fraud-exp", "tags": tags}
    )
    assert created.status_code == 200, created.text
    yield server, active, candidate, admin, bob, created.json()["experiment_id"]
    server.interrupt()


def read_experiment(server, bob, experiment_id):
    path = f"/api/2.0/mlflow/experiments/get?experiment_id={experiment_id}"
    response = server.api("GET", path, bob)
    assert response.status_code == 200, response.text  # the active policy is enforced
    return response


def bob_events(server, admin):
    response = api(
        server, admin, "/api/2.0/mlflow-secure/audit/events?subject=bob&max_results=1000"
    )
    assert response.status_code == 200, response.text
    return [e for e in response.json()["events"] if e["endpoint"] == "mlflow.experiments.get"]


def disagreements(server):
    return [
        json.loads(line.split(DISAGREES, 1)[1])
        for line in server.log().splitlines()
        if DISAGREES in line
    ]


def test_candidate_disagreements_are_logged_while_the_active_policy_decides(world):
    server, _active, _candidate, admin, bob, experiment_id = world
    for _ in range(4):  # both workers, most likely
        read_experiment(server, bob, experiment_id)
    server.wait_for(lambda: len(disagreements(server)) >= 4, what="shadow disagreements")
    records = disagreements(server)
    wanted = {record["decision_id"] for record in records}

    def recorded():  # audit events are written by a background queue
        return wanted <= {event["decision_id"] for event in bob_events(server, admin)}

    server.wait_for(recorded, what="the audit events of the compared decisions")
    decided = {event["decision_id"]: event for event in bob_events(server, admin)}
    for record in records:
        assert record["differs"] == "allow"
        assert record["subject"] == "bob"
        assert record["endpoint"] == "mlflow.experiments.get"
        assert (record["resource_type"], record["resource_id"]) == ("experiment", experiment_id)
        assert record["active"]["allow"] is True
        assert record["active"]["reasons"] == []
        assert record["candidate"]["allow"] is False
        assert record["candidate"]["reasons"] == [
            "your role in project fraud (viewer) does not permit read access"
        ]
        assert REVISION.fullmatch(record["candidate"]["revision"])
        assert record["candidate"]["revision"] != record["active"]["revision"]
        event = decided[record["decision_id"]]  # the line points at the audit event
        assert event["decision"] == "allow"
        assert event["policy_revision"] == record["active"]["revision"]
    log = server.log()
    assert bob not in log
    assert admin not in log
    assert bob[17:60] not in log


def test_every_decision_names_its_policy_revision_and_a_reload_changes_it(world, opa_binary):
    server, active, _candidate, admin, bob, experiment_id = world
    read_experiment(server, bob, experiment_id)
    read_experiment(server, bob, experiment_id)
    events = bob_events(server, admin)
    revisions = {event["policy_revision"] for event in events}
    assert len(revisions) == 1, revisions  # the same in every worker
    (first,) = revisions
    assert REVISION.fullmatch(first)
    assert first == directory_revision(opa_binary, active)  # policy explain --show-revision

    authz = active / "mlflow" / "authz" / "authz.rego"
    authz.write_text(authz.read_text() + "\n# reviewed by the policy board\n")
    second = directory_revision(opa_binary, active)
    assert second != first

    def newest_revision():
        read_experiment(server, bob, experiment_id)
        return bob_events(server, admin)[-1]["policy_revision"] == second

    server.wait_for(newest_revision, timeout=30, what="events with the new revision")
    # Past the refresh interval every worker has moved on: no new event names the old one.
    time.sleep(3)
    seen = {event["decision_id"] for event in bob_events(server, admin)}
    for _ in range(4):
        read_experiment(server, bob, experiment_id)

    def fresh():
        return [e for e in bob_events(server, admin) if e["decision_id"] not in seen]

    server.wait_for(lambda: len(fresh()) == 4, what="the audit events of the last reads")
    assert {event["policy_revision"] for event in fresh()} == {second}
