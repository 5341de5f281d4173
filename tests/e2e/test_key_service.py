"""The key service end to end: a real server, a real OPA, the bundled policies, two teams.

alice (team-a, project fraud) gets a data key for her run's artefact and encrypts a file
with it; bob (team-b) holds the ciphertext and cannot get the key, by naming her run or by
naming his own; rotation re-wraps without touching the file; destroying the project's keys
makes the file unrecoverable. Every decision is in the audit trail.
"""

from __future__ import annotations

import base64
import io
import stat
from pathlib import Path

import pytest

from mlflow_secure.crypto import artefact
from mlflow_secure.crypto.header import Context
from tests.support import servers, teams

pytestmark = pytest.mark.e2e

KEYS = "/2.0/mlflow-secure/keys/"
SECRET = b"fraud model weights: the plaintext marker " * 1000


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("keys")
    server = servers.start(root, workers=2, env={"MLFLOW_SECURE_AUTH_MAX_FAILURES": "1000"})
    actors = teams.populate(server)
    runs = {}
    for name, project in (("alice", "fraud"), ("bob", "churn")):
        actor = actors[name]
        tags = [
            {"key": "mlflow.secure.project", "value": project},
            {"key": "mlflow.secure.classification", "value": "confidential"},
        ]
        created = actor.call(
            "POST", "/2.0/mlflow/experiments/create", json={"name": project, "tags": tags}
        )
        assert created.status_code == 200, created.text
        experiment = created.json()["experiment_id"]
        run = actor.call("POST", "/2.0/mlflow/runs/create", json={"experiment_id": experiment})
        assert run.status_code == 200, run.text
        runs[name] = run.json()["run"]["info"]["run_id"]
    yield server, actors, runs, root
    server.kill()


def keys(actor, verb: str, **body):
    return actor.call("POST", KEYS + verb, json=body)


def sealed_for(issued: dict) -> bytes:
    sink = io.BytesIO()
    data_key = base64.b64decode(issued["data_key"])
    context = Context(issued["project"], issued["artefact"])
    artefact.encrypt_stream(
        io.BytesIO(SECRET), sink, data_key, issued["key_id"], issued["key_version"], context
    )
    return sink.getvalue()


def opened(ciphertext: bytes, issued: dict) -> bytes:
    out = bytearray()
    data_key = base64.b64decode(issued["data_key"])
    context = Context(issued["project"], issued["artefact"])
    artefact.decrypt_stream(io.BytesIO(ciphertext), out.extend, lambda _h: data_key, context)
    return bytes(out)


def test_team_b_cannot_unwrap_team_as_key_even_with_the_ciphertext(world):
    _, actors, runs, root = world
    alice, bob = actors["alice"], actors["bob"]
    path = "model/model.pkl"
    response = keys(alice, "data-keys/create", run_id=runs["alice"], path=path)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    issued = response.json()
    assert issued["project"] == "fraud"
    assert issued["required"] is True
    assert issued["artefact"] == f"runs/{runs['alice']}/artifacts/{path}"
    ciphertext = sealed_for(issued)
    assert b"plaintext marker" not in ciphertext

    # bob names alice's run: refused, and answered as if the run did not exist (he may not
    # read it, so he must not learn it exists); the key is not in the answer
    refused = keys(
        bob, "data-keys/unwrap", key_id=issued["key_id"], run_id=runs["alice"], path=path
    )
    assert refused.status_code == 404, refused.text
    assert refused.json()["message"] == f"Run with id={runs['alice']} not found"
    assert issued["data_key"] not in refused.text
    # bob names his own run (which he may read) with alice's key id: the key service refuses
    mine = keys(bob, "data-keys/unwrap", key_id=issued["key_id"], run_id=runs["bob"], path=path)
    assert mine.status_code == 403, mine.text
    assert mine.json()["message"] == f"data key {issued['key_id']} was not issued for this artefact"
    assert issued["data_key"] not in mine.text
    # nor can he make a key for alice's run
    assert keys(bob, "data-keys/create", run_id=runs["alice"], path="x.bin").status_code == 404

    again = keys(
        alice, "data-keys/unwrap", key_id=issued["key_id"], run_id=runs["alice"], path=path
    )
    assert again.status_code == 200, again.text
    assert again.json()["data_key"] == issued["data_key"]
    assert opened(ciphertext, again.json()) == SECRET

    # a key of bob's own, for his own run, cannot open alice's file either
    his = keys(bob, "data-keys/create", run_id=runs["bob"], path=path).json()
    with pytest.raises(artefact.DecryptionError, match="not the one this file was encrypted"):
        opened(ciphertext, {**his, "project": "fraud", "artefact": issued["artefact"]})

    trail = (
        actors["admin"]
        .call("GET", "/2.0/mlflow-secure/audit/events", params={"subject": "bob"})
        .json()["events"]
    )
    unwraps = [e for e in trail if e["endpoint"] == "mlflow-secure.artifact_keys.unwrap"]
    denied = [e for e in unwraps if e["decision"] == "deny"]
    assert denied
    assert denied[0]["reasons"] == [
        "unwrapping a data key of this run needs read access to it (project fraud)"
    ]
    assert any(e["resource_context"].get("key_id") == issued["key_id"] for e in unwraps)
    assert all(e["resource_context"]["artefact"].startswith("runs/") for e in unwraps)
    assert all(issued["data_key"] not in str(e) for e in trail)

    key_file = root / "mlflow-secure-master.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_a_trace_id_made_again_in_another_experiment_gets_no_key(world):
    """Clients choose trace ids: alice's trace deleted and bob's made with the same id must
    not reach the data key of alice's trace data (the key is bound to its experiment). Runs
    before the tests below destroy the projects' keys."""
    import uuid

    _, actors, runs, _ = world
    alice, bob = actors["alice"], actors["bob"]

    def experiment_of(actor, run_id):
        got = actor.call("GET", "/2.0/mlflow/runs/get", params={"run_id": run_id})
        return got.json()["run"]["info"]["experiment_id"]

    trace_id = "tr-" + uuid.uuid4().hex

    def start(actor, experiment_id):
        info = {
            "trace_id": trace_id,
            "trace_location": {
                "type": "MLFLOW_EXPERIMENT",
                "mlflow_experiment": {"experiment_id": experiment_id},
            },
            "request_time": "2026-01-01T00:00:00Z",
            "execution_duration": "1s",
            "state": "OK",
        }
        started = actor.call("POST", "/3.0/mlflow/traces", json={"trace": {"trace_info": info}})
        assert started.status_code == 200, started.text

    alice_experiment = experiment_of(alice, runs["alice"])
    start(alice, alice_experiment)
    issued = keys(alice, "data-keys/create", trace_id=trace_id, path="traces.json").json()
    assert issued["artefact"] == f"traces/{trace_id}/artifacts/traces.json"
    deleted = alice.call(
        "POST",
        "/2.0/mlflow/traces/delete-traces",
        json={"experiment_id": alice_experiment, "request_ids": [trace_id]},
    )
    assert deleted.status_code == 200, deleted.text
    start(bob, experiment_of(bob, runs["bob"]))
    # nor may bob point his trace at alice's files: the server alone sets that tag
    pointed = bob.call(
        "PATCH",
        f"/3.0/mlflow/traces/{trace_id}/tags",
        json={"key": "mlflow.artifactLocation", "value": f"mlflow-artifacts:/{alice_experiment}"},
    )
    assert pointed.status_code == 400, pointed.text
    assert "set by the server" in pointed.json()["message"]
    stolen = keys(
        bob, "data-keys/unwrap", key_id=issued["key_id"], trace_id=trace_id, path="traces.json"
    )
    assert stolen.status_code == 403, stolen.text
    assert issued["data_key"] not in stolen.text


def test_rotation_rewraps_without_touching_the_file_and_destroy_shreds(world):
    _, actors, runs, _ = world
    alice, admin = actors["alice"], actors["admin"]
    issued = keys(alice, "data-keys/create", run_id=runs["alice"], path="plots/roc.png").json()
    ciphertext = sealed_for(issued)

    assert keys(alice, "projects/rotate", project="fraud").status_code == 403  # an editor
    rotated = keys(admin, "projects/rotate", project="fraud")
    assert rotated.status_code == 200, rotated.text
    version = rotated.json()["version"]
    assert rotated.json()["rewrapped"] >= 1
    after = keys(
        alice,
        "data-keys/unwrap",
        key_id=issued["key_id"],
        run_id=runs["alice"],
        path="plots/roc.png",
    ).json()
    assert after["data_key"] == issued["data_key"]
    assert opened(ciphertext, after) == SECRET  # the same file, never rewritten

    status = admin.call("GET", KEYS + "projects/get", params={"project": "fraud"}).json()
    states = {v["version"]: v["state"] for v in status["versions"]}
    assert states[version] == "active"
    assert states[version - 1] == "superseded"
    retired = keys(admin, "projects/retire", project="fraud", version=version - 1)
    assert retired.json()["state"] == "retired", retired.text
    assert keys(admin, "projects/retire", project="fraud", version=version).status_code == 400

    unconfirmed = keys(admin, "projects/destroy", project="fraud", confirm="yes")
    assert unconfirmed.status_code == 400
    assert "repeat the project name" in unconfirmed.json()["message"]
    assert keys(alice, "projects/destroy", project="fraud", confirm="fraud").status_code == 403
    destroyed = keys(admin, "projects/destroy", project="fraud", confirm="fraud")
    assert destroyed.status_code == 200, destroyed.text
    gone = keys(
        alice,
        "data-keys/unwrap",
        key_id=issued["key_id"],
        run_id=runs["alice"],
        path="plots/roc.png",
    )
    assert gone.status_code == 403
    assert "cannot be decrypted by anyone" in gone.json()["message"]
    new = keys(alice, "data-keys/create", run_id=runs["alice"], path="after.bin")
    assert new.status_code == 403
    assert "were destroyed" in new.json()["message"]
    # bob's project is untouched
    assert (
        keys(actors["bob"], "data-keys/create", run_id=runs["bob"], path="a.bin").status_code == 200
    )


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"path": "m.pkl"}, 400, "exactly one of run_id, logged_model_id"),
        ({"run_id": "RUN", "logged_model_id": "m-1", "path": "m.pkl"}, 400, "exactly one"),
        ({"run_id": "RUN", "path": "../other/m.pkl"}, 400, "plain relative artefact path"),
        ({"run_id": "RUN", "path": "model/"}, 400, "must name a file"),
        ({"run_id": "RUN", "path": "model//m.pkl"}, 400, "empty segments"),
        ({"run_id": "RUN", "path": "m.pkl", "extra": 1}, 400, "unknown field"),
        ({"run_id": "0" * 32, "path": "m.pkl"}, 404, None),  # no such run: like another's
    ],
)
def test_bad_requests_get_a_clear_error_and_change_nothing(world, body, status, message):
    _, actors, runs, _ = world
    body = {k: (runs["bob"] if v == "RUN" else v) for k, v in body.items()}
    response = keys(actors["bob"], "data-keys/create", **body)
    assert response.status_code == status, response.text
    if message:
        assert message in response.json()["message"]
    assert "data_key" not in response.json()


def test_an_experiment_in_no_project_gets_a_message_naming_the_fix(world):
    _, actors, _, _ = world
    admin = actors["admin"]  # no default project: the experiment stays outside any
    created = admin.call("POST", "/2.0/mlflow/experiments/create", json={"name": "scratch"})
    assert created.status_code == 200, created.text
    experiment = created.json()["experiment_id"]
    run = admin.call("POST", "/2.0/mlflow/runs/create", json={"experiment_id": experiment})
    run_id = run.json()["run"]["info"]["run_id"]
    # unclassified means internal: below MLFLOW_SECURE_ENCRYPT_FROM (confidential), no key
    plain = keys(admin, "data-keys/create", run_id=run_id, path="m")
    assert plain.status_code == 200, plain.text
    assert plain.json() == {"required": False, "artefact": f"runs/{run_id}/artifacts/m"}
    response = keys(admin, "data-keys/create", run_id=run_id, path="m", always=True)
    assert response.status_code == 400, response.text
    assert "mlflow.secure.project" in response.json()["message"]


def test_an_unknown_data_key_is_answered_like_another_artefacts(world):
    _, actors, runs, _ = world
    response = keys(
        actors["bob"],
        "data-keys/unwrap",
        key_id="dk-doesnotexist",
        run_id=runs["bob"],
        path="m.pkl",
    )
    assert response.status_code == 403, response.text
    assert response.json()["message"] == "data key dk-doesnotexist was not issued for this artefact"


@pytest.mark.postgres
def test_a_server_database_without_a_master_key_answers_503_naming_the_fix(
    tmp_path: Path, postgres_server
):
    backend = postgres_server.make_database("e2e_no_master_key")
    server = servers.start(tmp_path, backend_uri=backend)
    try:
        admin = server.admin_key()
        tags = [
            {"key": "mlflow.secure.project", "value": "fraud"},
            {"key": "mlflow.secure.classification", "value": "restricted"},
        ]
        experiment = server.api(
            "POST", "/api/2.0/mlflow/experiments/create", admin, json={"name": "e", "tags": tags}
        ).json()["experiment_id"]
        run = server.api(
            "POST", "/api/2.0/mlflow/runs/create", admin, json={"experiment_id": experiment}
        ).json()["run"]["info"]["run_id"]
        response = server.api(
            "POST", "/api" + KEYS + "data-keys/create", admin, json={"run_id": run, "path": "m"}
        )
        assert response.status_code == 503, response.text
        assert "MLFLOW_SECURE_MASTER_KEY_FILE" in response.json()["message"]
        assert not list(tmp_path.glob("*master.key"))
    finally:
        server.kill()


def test_the_cli_rotates_shows_retires_and_destroys_a_projects_keys(world):
    from click.testing import CliRunner

    from mlflow_secure.cli.main import main

    server, actors, runs, _ = world
    bob = actors["bob"]
    issued = keys(bob, "data-keys/create", run_id=runs["bob"], path="cli/m.bin").json()
    ciphertext = sealed_for(issued)
    env = {"MLFLOW_TRACKING_URI": server.url, "MLFLOW_TRACKING_TOKEN": actors["admin"].key}
    runner = CliRunner()

    def cli(*args: str, input: str | None = None):
        return runner.invoke(main, list(args), env=env, input=input)

    rotated = cli("keys", "rotate", "--project", "churn")
    assert rotated.exit_code == 0, rotated.output
    assert "data key(s) re-wrapped, no artefact rewritten" in rotated.output
    status = cli("keys", "status", "--project", "churn")
    assert status.exit_code == 0, status.output
    assert "superseded" in status.output
    assert "active" in status.output
    version = max(
        v["version"]
        for v in actors["admin"]
        .call("GET", KEYS + "projects/get", params={"project": "churn"})
        .json()["versions"]
    )
    retired = cli("keys", "retire", "--project", "churn", "--version", str(version - 1))
    assert retired.exit_code == 0, retired.output
    both = cli("keys", "rotate", "mlsk_x", "--project", "churn")
    assert both.exit_code == 2
    assert "not both" in both.output

    still = keys(
        bob, "data-keys/unwrap", key_id=issued["key_id"], run_id=runs["bob"], path="cli/m.bin"
    )
    assert opened(ciphertext, still.json()) == SECRET

    declined = cli("keys", "destroy", "--project", "churn", input="nope\n")
    assert declined.exit_code == 1
    assert "nothing was destroyed" in declined.output
    destroyed = cli("keys", "destroy", "--project", "churn", input="churn\n")
    assert destroyed.exit_code == 0, destroyed.output
    assert "destroyed" in destroyed.output
    gone = keys(
        bob, "data-keys/unwrap", key_id=issued["key_id"], run_id=runs["bob"], path="cli/m.bin"
    )
    assert gone.status_code == 403
    master = runner.invoke(main, ["keys", "generate-master-key"])
    assert len(base64.b64decode(master.output.strip())) == 32
