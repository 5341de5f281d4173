"""Authorisation end to end: route census, server-side resources, Rego RBAC/ABAC, audit trail.

Two teams, three classifications, an auditor; every check goes through a real server, a
real OPA and the bundled policies, on both `/api` and `/ajax-api`.
"""

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support import servers, teams

pytestmark = pytest.mark.e2e

CLI = str(Path(sys.executable).with_name("mlflow-secure"))
PREFIXES = ("/api", "/ajax-api")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    server = servers.start(
        tmp_path_factory.mktemp("authz"),
        workers=2,
        env={"MLFLOW_SECURE_AUTH_MAX_FAILURES": "1000"},
    )
    actors = teams.populate(server)

    def experiment(owner, name, project, classification):
        tags = [{"key": "mlflow.secure.project", "value": project}]
        if classification:
            tags.append({"key": "mlflow.secure.classification", "value": classification})
        response = actors[owner].call(
            "POST", "/2.0/mlflow/experiments/create", json={"name": name, "tags": tags}
        )
        assert response.status_code == 200, response.text
        return response.json()["experiment_id"]

    ids = {
        "fraud": experiment("admin", "fraud-internal", "fraud", "internal"),
        "fraud_restricted": experiment("admin", "fraud-restricted", "fraud", "restricted"),
        "churn": experiment("admin", "churn-confidential", "churn", "confidential"),
    }
    run = actors["alice"].call(
        "POST", "/2.0/mlflow/runs/create", json={"experiment_id": ids["fraud"]}
    )
    assert run.status_code == 200, run.text
    ids["fraud_run"] = run.json()["run"]["info"]["run_id"]
    yield server, actors, ids
    server.interrupt()


@pytest.mark.parametrize("prefix", PREFIXES)
def test_team_b_cannot_read_write_or_delete_team_a_resources(world, prefix):
    _, actors, ids = world
    bob = actors["bob"]
    attempts = [
        ("GET", f"/2.0/mlflow/experiments/get?experiment_id={ids['fraud']}", None),
        ("GET", f"/2.0/mlflow/runs/get?run_id={ids['fraud_run']}", None),
        ("POST", "/2.0/mlflow/runs/create", {"experiment_id": ids["fraud"]}),
        (
            "POST",
            "/2.0/mlflow/runs/log-metric",
            {"run_id": ids["fraud_run"], "key": "m", "value": 1.0, "timestamp": 1},
        ),
        (
            "POST",
            "/2.0/mlflow/experiments/set-experiment-tag",
            {"experiment_id": ids["fraud"], "key": "x", "value": "y"},
        ),
        ("POST", "/2.0/mlflow/runs/delete", {"run_id": ids["fraud_run"]}),
        ("POST", "/2.0/mlflow/experiments/delete", {"experiment_id": ids["fraud"]}),
    ]
    for method, path, body in attempts:
        response = bob.call(method, path, prefix=prefix, json=body)
        # what bob may not read looks to him like what does not exist
        assert response.status_code == 404, (method, path, response.text)
        payload = response.json()
        assert payload["error_code"] == "RESOURCE_DOES_NOT_EXIST"
        assert payload["decision_id"], payload
    # Nothing changed: the run is still there, untouched.
    run = actors["alice"].call("GET", f"/2.0/mlflow/runs/get?run_id={ids['fraud_run']}").json()
    assert run["run"]["info"]["lifecycle_stage"] == "active"
    assert run["run"]["data"].get("metrics", []) == []


@pytest.mark.parametrize("prefix", PREFIXES)
def test_team_a_works_in_its_own_project(world, prefix):
    _, actors, ids = world
    alice = actors["alice"]
    assert (
        alice.call(
            "GET", f"/2.0/mlflow/experiments/get?experiment_id={ids['fraud']}", prefix=prefix
        ).status_code
        == 200
    )
    logged = alice.call(
        "POST",
        "/2.0/mlflow/runs/log-metric",
        prefix=prefix,
        json={
            "run_id": ids["fraud_run"],
            "key": f"loss{prefix[1:4]}",
            "value": 0.5,
            "timestamp": 1,
        },
    )
    assert logged.status_code == 200, logged.text


def test_classification_above_clearance_is_refused(world):
    _, actors, ids = world
    response = actors["alice"].call(
        "GET", f"/2.0/mlflow/experiments/get?experiment_id={ids['fraud_restricted']}"
    )
    assert response.status_code == 404
    decision_id = response.json()["decision_id"]
    server = world[0]
    query = {"subject": "alice", "decision": "deny", "max_results": 1000}

    def audited():
        events = actors["admin"].call("GET", "/2.0/mlflow-secure/audit/events", params=query)
        return [e for e in events.json()["events"] if e["decision_id"] == decision_id]

    server.wait_for(audited, 10, "the denial in the audit trail")
    (event,) = audited()
    assert any("clearance" in reason for reason in event["reasons"])  # the reason is audited


def test_auditor_reads_everything_and_writes_nothing(world):
    _, actors, ids = world
    audrey = actors["audrey"]
    for experiment_id in (ids["fraud"], ids["fraud_restricted"], ids["churn"]):
        assert (
            audrey.call(
                "GET", f"/2.0/mlflow/experiments/get?experiment_id={experiment_id}"
            ).status_code
            == 200
        )
    for method, path, body in [
        ("POST", "/2.0/mlflow/runs/create", {"experiment_id": ids["fraud"]}),
        ("POST", "/2.0/mlflow/experiments/delete", {"experiment_id": ids["churn"]}),
    ]:
        assert audrey.call(method, path, json=body).status_code == 403


def test_unfiltered_listings_are_for_administrators_and_auditors(world):
    """Jobs carry parameters this layer does not read: their search cannot be narrowed per
    item, so it stays closed. Webhooks carry no attributes at all: one question decides the
    whole list, so others see an empty one."""
    _, actors, _ids = world
    jobs = actors["bob"].call("POST", "/3.0/jobs/search", prefix="/ajax-api", json={})
    assert jobs.status_code == 403
    assert "until its results are filtered" in jobs.json()["reasons"][0]
    audited = actors["audrey"].call("POST", "/3.0/jobs/search", prefix="/ajax-api", json={})
    assert audited.status_code == 200, audited.text
    hooks = actors["bob"].call("GET", "/2.0/mlflow/webhooks")
    assert (hooks.status_code, hooks.json()) == (200, {})
    secrets = actors["bob"].call("GET", "/3.0/mlflow/gateway/secrets/list")
    assert (secrets.status_code, secrets.json()) == (200, {})
    assert actors["audrey"].call("GET", "/2.0/mlflow/webhooks").status_code == 200


@pytest.mark.parametrize("prefix", PREFIXES)
def test_experiment_search_shows_only_what_the_caller_may_read(world, prefix):
    server, actors, _ids = world

    def names(actor, **params):
        response = actor.call(
            "GET",
            "/2.0/mlflow/experiments/search",
            prefix=prefix,
            params={"max_results": 100, **params},
        )
        assert response.status_code == 200, response.text
        return {e["name"] for e in response.json().get("experiments", [])}

    assert names(actors["bob"]) >= {"churn-confidential"}
    assert not names(actors["bob"]) & {"fraud-internal", "fraud-restricted"}
    assert "fraud-internal" in names(actors["alice"])
    assert "fraud-restricted" not in names(actors["alice"])  # above her clearance
    assert names(actors["audrey"]) >= {"fraud-internal", "fraud-restricted", "churn-confidential"}
    # the bundled policy is pushed into the store query, never the batched filter, and the
    # server indexed MLflow's tag values for it at start-up
    assert "uses the batched filter" not in server.log()
    database = server.backend_uri.removeprefix("sqlite:///")
    with sqlite3.connect(database) as connection:
        indexes = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    assert "mlflow_secure_experiment_tag_values" in indexes


def test_experiment_search_pages_are_full_and_never_skip(world):
    _, actors, _ = world
    alice = actors["alice"]
    for index in range(5):
        tags = [{"key": "mlflow.secure.project", "value": "fraud"}]
        alice.call(
            "POST", "/2.0/mlflow/experiments/create", json={"name": f"page-{index}", "tags": tags}
        )
    everything = alice.call(
        "GET", "/2.0/mlflow/experiments/search", params={"max_results": 1000}
    ).json()["experiments"]
    seen, token = [], None
    while True:
        params = {"max_results": 2, **({"page_token": token} if token else {})}
        page = alice.call("GET", "/2.0/mlflow/experiments/search", params=params).json()
        seen += [e["experiment_id"] for e in page.get("experiments", [])]
        token = page.get("next_page_token")
        if not token:
            break
        assert len(page["experiments"]) == 2  # pages are filled
    assert seen == [e["experiment_id"] for e in everything]
    assert "total" not in json.dumps(page)
    bad = alice.call("GET", "/2.0/mlflow/experiments/search", params={"page_token": "!!"})
    assert bad.status_code == 400


def test_run_search_is_narrowed_to_readable_experiments(world):
    _, actors, ids = world
    body = {"experiment_ids": [ids["fraud"], ids["churn"]], "max_results": 100}
    for prefix in PREFIXES:
        bob = actors["bob"].call("POST", "/2.0/mlflow/runs/search", prefix=prefix, json=body)
        assert bob.status_code == 200, bob.text
        assert all(
            run["info"]["experiment_id"] == ids["churn"] for run in bob.json().get("runs", [])
        )
        only_fraud = actors["bob"].call(
            "POST",
            "/2.0/mlflow/runs/search",
            prefix=prefix,
            json={"experiment_ids": [ids["fraud"]]},
        )
        assert only_fraud.status_code == 200
        assert only_fraud.json() == {}
    alice = actors["alice"].call("POST", "/2.0/mlflow/runs/search", json=body).json()
    assert ids["fraud_run"] in {run["info"]["run_id"] for run in alice["runs"]}


def test_creating_in_a_project_needs_editor_there(world):
    _, actors, _ = world
    tags = [{"key": "mlflow.secure.project", "value": "fraud"}]
    refused = actors["bob"].call(
        "POST", "/2.0/mlflow/experiments/create", json={"name": "sneaky", "tags": tags}
    )
    assert refused.status_code == 403
    own = actors["bob"].call("POST", "/2.0/mlflow/experiments/create", json={"name": "bob-private"})
    assert own.status_code == 200, own.text
    private = own.json()["experiment_id"]
    # Outside any project: its owner and administrators only.
    assert (
        actors["alice"]
        .call("GET", f"/2.0/mlflow/experiments/get?experiment_id={private}")
        .status_code
        == 404
    )
    assert (
        actors["bob"]
        .call("GET", f"/2.0/mlflow/experiments/get?experiment_id={private}")
        .status_code
        == 200
    )


def test_dangerous_artifact_locations_are_refused(world):
    _, actors, _ = world
    for location in ("file:///etc", "FILE:/tmp/x", "http://169.254.169.254/latest"):
        response = actors["admin"].call(
            "POST",
            "/2.0/mlflow/experiments/create",
            json={"name": f"x-{abs(hash(location))}", "artifact_location": location},
        )
        assert response.status_code == 403, (location, response.text)


def test_unknown_routes_and_ambiguous_requests_are_refused(world):
    _, actors, ids = world
    unknown = actors["admin"].call("GET", "/2.0/mlflow/no-such-endpoint")
    assert unknown.status_code == 404
    assert unknown.json()["error_code"] == "ENDPOINT_NOT_FOUND"
    ambiguous = actors["alice"].call(
        "POST",
        "/2.0/mlflow/runs/update",
        json={"run_id": ids["fraud_run"], "run_uuid": "0" * 32, "status": "FINISHED"},
    )
    assert ambiguous.status_code == 400
    duplicated = actors["alice"].call(
        "GET", f"/2.0/mlflow/runs/get?run_id={ids['fraud_run']}&run_id=other"
    )
    assert duplicated.status_code == 400


def test_ui_shell_is_public_but_data_is_not(world):
    server, _, _ = world
    assert server.get("/").status_code == 200
    assert server.get("/ajax-api/2.0/mlflow/experiments/search?max_results=1").status_code == 401


def test_every_request_is_in_a_verifiable_audit_trail(world):
    server, actors, ids = world
    actors["bob"].call("GET", f"/2.0/mlflow/experiments/get?experiment_id={ids['fraud']}")
    audrey, bob = actors["audrey"], actors["bob"]
    denials = audrey.call(
        "GET", "/2.0/mlflow-secure/audit/events?subject=bob&decision=deny&max_results=1000"
    )
    assert denials.status_code == 200, denials.text
    events = denials.json()["events"]
    assert events
    assert {event["decision"] for event in events} == {"deny"}
    assert all(event["decision_id"] and event["reasons"] for event in events)
    assert any(event["resource_id"] == ids["fraud"] for event in events)
    assert bob.call("GET", "/2.0/mlflow-secure/audit/events").status_code == 403
    anonymous = audrey.call(
        "GET", "/2.0/mlflow-secure/audit/events?decision=unauthenticated&max_results=1000"
    ).json()["events"]
    assert anonymous
    log = json.dumps(audrey.call("GET", "/2.0/mlflow-secure/audit/events?max_results=1000").json())
    for actor in actors.values():
        assert actor.key not in log
        assert actor.key[17:60] not in log

    database = Path(server.backend_uri.removeprefix("sqlite:///")).with_name("mlflow-secure.db")
    verify = [CLI, "audit", "verify", "--database-uri", f"sqlite:///{database}"]
    intact = subprocess.run(verify, capture_output=True, text=True, timeout=60)
    assert intact.returncode == 0, intact.stdout + intact.stderr
    # An insider edits one event: the chain names it.
    with sqlite3.connect(database) as connection:
        connection.execute(
            "UPDATE mls_audit_events SET decision = 'allow' WHERE seq = ("
            "SELECT min(seq) FROM mls_audit_events WHERE decision = 'deny')"
        )
    broken = subprocess.run(verify, capture_output=True, text=True, timeout=60)
    assert broken.returncode == 1
    assert "seq" in broken.stdout + broken.stderr


def test_artifacts_through_the_proxy(world, tmp_path, monkeypatch):
    server, actors, ids = world
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", actors["alice"].key)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    source = tmp_path / "weights.txt"
    source.write_text("secret weights")
    client = MlflowClient()
    client.log_artifact(ids["fraud_run"], str(source))  # PUT mlflow-artifacts/artifacts/...
    downloaded = client.download_artifacts(ids["fraud_run"], "weights.txt", str(tmp_path / "out"))
    assert Path(downloaded).read_text() == "secret weights"

    path = f"{ids['fraud']}/{ids['fraud_run']}/artifacts/weights.txt"
    assert actors["alice"].call("GET", f"/2.0/mlflow-artifacts/artifacts/{path}").status_code == 200
    for prefix in PREFIXES:
        stolen = actors["bob"].call("GET", f"/2.0/mlflow-artifacts/artifacts/{path}", prefix=prefix)
        assert stolen.status_code == 404, stolen.text
        assert (
            actors["bob"]
            .call("GET", f"/get-artifact?path=weights.txt&run_uuid={ids['fraud_run']}", prefix="")
            .status_code
            == 404
        )
    overwrite = actors["bob"].call(
        "PUT", f"/2.0/mlflow-artifacts/artifacts/{path}", content=b"tampered"
    )
    assert overwrite.status_code == 404
    assert (
        Path(
            client.download_artifacts(ids["fraud_run"], "weights.txt", str(tmp_path / "again"))
        ).read_text()
        == "secret weights"
    )


@pytest.mark.parametrize(
    "path",
    [
        "{e}/%2e%2e/%2e%2e/etc/passwd",
        "{e}/%252e%252e/x",
        "{e}/..%5c..%5cx",
        "{e}/a%00b",
    ],
)
def test_artifact_path_traversal_is_refused(world, path):
    server, actors, ids = world
    raw = path.format(e=ids["fraud"])
    response = httpx.get(
        f"{server.url}/api/2.0/mlflow-artifacts/artifacts/{raw}",
        headers={"Authorization": f"Bearer {actors['admin'].key}"},
    )
    assert response.status_code in (400, 404), response.text


def test_other_resource_families_are_isolated_between_teams(world):
    _, actors, ids = world
    alice, bob = actors["alice"], actors["bob"]
    project = [{"key": "mlflow.secure.project", "value": "fraud"}]
    # Registered model and version in project fraud, created by its editor.
    model = alice.call(
        "POST",
        "/2.0/mlflow/registered-models/create",
        json={"name": "fraud-model", "tags": project},
    )
    assert model.status_code == 200, model.text
    version = alice.call(
        "POST",
        "/2.0/mlflow/model-versions/create",
        json={
            "name": "fraud-model",
            "source": f"runs:/{ids['fraud_run']}/model",
            "run_id": ids["fraud_run"],
        },
    )
    assert version.status_code == 200, version.text
    # A logged model and a trace in the fraud experiment.
    logged = alice.call(
        "POST", "/2.0/mlflow/logged-models", json={"experiment_id": ids["fraud"], "name": "lm"}
    )
    assert logged.status_code == 200, logged.text
    model_id = logged.json()["model"]["info"]["model_id"]
    trace = alice.call(
        "POST",
        "/3.0/mlflow/traces",
        json={
            "trace": {
                "trace_info": {
                    "trace_id": "tr-0123456789abcdef0123456789abcdef",
                    "trace_location": {
                        "type": "MLFLOW_EXPERIMENT",
                        "mlflow_experiment": {"experiment_id": ids["fraud"]},
                    },
                    "request_time": "2026-01-01T00:00:00Z",
                    "state": "OK",
                }
            }
        },
    )
    assert trace.status_code == 200, trace.text
    trace_id = trace.json()["trace"]["trace_info"]["trace_id"]

    reads = [
        "/2.0/mlflow/registered-models/get?name=fraud-model",
        "/2.0/mlflow/model-versions/get?name=fraud-model&version=1",
        f"/2.0/mlflow/logged-models/{model_id}",
        f"/3.0/mlflow/traces/{trace_id}",
    ]
    for path in reads:
        assert alice.call("GET", path).status_code == 200, path
        for prefix in PREFIXES:
            response = bob.call("GET", path, prefix=prefix)
            assert response.status_code == 404, (prefix, path, response.text)
    writes = [
        (
            "POST",
            "/2.0/mlflow/registered-models/set-tag",
            {"name": "fraud-model", "key": "k", "value": "v"},
        ),
        ("DELETE", "/2.0/mlflow/model-versions/delete", {"name": "fraud-model", "version": "1"}),
        ("DELETE", f"/2.0/mlflow/logged-models/{model_id}", None),
        ("PATCH", f"/3.0/mlflow/traces/{trace_id}/tags", {"key": "k", "value": "v"}),
    ]
    for method, path, body in writes:
        response = bob.call(method, path, json=body)
        assert response.status_code == 404, (method, path, response.text)
    assert (
        alice.call("GET", "/2.0/mlflow/model-versions/get?name=fraud-model&version=1").json()[
            "model_version"
        ]["current_stage"]
        == "None"
    )


def _trace(actor, experiment_id, trace_id):
    response = actor.call(
        "POST",
        "/3.0/mlflow/traces",
        json={
            "trace": {
                "trace_info": {
                    "trace_id": trace_id,
                    "trace_location": {
                        "type": "MLFLOW_EXPERIMENT",
                        "mlflow_experiment": {"experiment_id": experiment_id},
                    },
                    "request_time": "2026-01-01T00:00:00Z",
                    "state": "OK",
                }
            }
        },
    )
    assert response.status_code == 200, response.text
    return trace_id


def test_experiment_scoped_listings_and_id_lists_are_narrowed(world):
    """Logged models, traces (v2, v3, batch), datasets, bulk metrics and listings inside one
    experiment: bob sees and reads only what lives in his own project."""
    _, actors, ids = world
    alice, bob = actors["alice"], actors["bob"]
    fraud, churn = ids["fraud"], ids["churn"]
    churn_run = bob.call("POST", "/2.0/mlflow/runs/create", json={"experiment_id": churn})
    assert churn_run.status_code == 200, churn_run.text
    churn_run = churn_run.json()["run"]["info"]["run_id"]
    for actor, experiment in ((alice, fraud), (bob, churn)):
        made = actor.call(
            "POST", "/2.0/mlflow/logged-models", json={"experiment_id": experiment, "name": "m"}
        )
        assert made.status_code == 200, made.text
    fraud_trace = _trace(alice, fraud, "tr-" + "a" * 32)
    churn_trace = _trace(bob, churn, "tr-" + "b" * 32)
    both = [fraud, churn]

    for prefix in PREFIXES:
        models = bob.call(
            "POST", "/2.0/mlflow/logged-models/search", prefix, json={"experiment_ids": both}
        )
        assert models.status_code == 200, models.text
        assert {m["info"]["experiment_id"] for m in models.json()["models"]} == {churn}
        locations = [
            {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": i}} for i in both
        ]
        traces = bob.call(
            "POST", "/3.0/mlflow/traces/search", prefix, json={"locations": locations}
        )
        assert traces.status_code == 200, traces.text
        assert [t["trace_id"] for t in traces.json()["traces"]] == [churn_trace]
        v2 = bob.call(
            "GET", f"/2.0/mlflow/traces?experiment_ids={fraud}&experiment_ids={churn}", prefix
        )
        assert v2.status_code == 200, v2.text
        assert {t["experiment_id"] for t in v2.json().get("traces", [])} <= {churn}
        batch = bob.call(
            "POST",
            "/3.0/mlflow/traces/batchGetInfos",
            prefix,
            json={"trace_ids": [fraud_trace, churn_trace]},
        )
        assert batch.status_code == 200, batch.text
        assert [t["trace_id"] for t in batch.json()["trace_infos"]] == [churn_trace]
        only_fraud = bob.call(
            "POST", "/3.0/mlflow/traces/batchGetInfos", prefix, json={"trace_ids": [fraud_trace]}
        )
        assert (only_fraud.status_code, only_fraud.json()) == (200, {})
    # Nothing readable named: an empty page, as for experiments that do not exist.
    nothing = bob.call("POST", "/2.0/mlflow/logged-models/search", json={"experiment_ids": [fraud]})
    assert (nothing.status_code, nothing.json()) == (200, {})

    # Bulk metric histories: every named run must be readable.
    interval = "/2.0/mlflow/metrics/get-history-bulk-interval?metric_key=loss&run_ids="
    assert bob.call("GET", interval + churn_run, "/ajax-api").status_code == 200
    mixed = bob.call("GET", f"{interval}{churn_run}&run_ids={ids['fraud_run']}", "/ajax-api")
    assert mixed.status_code == 404, mixed.text
    bulk = f"/2.0/mlflow/metrics/get-history-bulk?metric_key=loss&run_id={ids['fraud_run']}"
    assert alice.call("GET", bulk, "/ajax-api").status_code == 200
    assert bob.call("GET", f"{bulk}&run_id={churn_run}", "/ajax-api").status_code == 404

    # A listing inside one experiment is a read of that experiment.
    schemas = f"/3.0/mlflow/label-schemas/list?experiment_id={fraud}"
    assert alice.call("GET", schemas).status_code == 200
    assert bob.call("GET", schemas).status_code == 404

    # Datasets: without experiment ids MLflow would search them all; bob gets his own only.
    for actor, experiment, name in ((alice, fraud, "fraud-data"), (bob, churn, "churn-data")):
        made = actor.call(
            "POST",
            "/3.0/mlflow/datasets/create",
            json={"name": name, "experiment_ids": [experiment]},
        )
        assert made.status_code == 200, made.text
    found = bob.call("POST", "/3.0/mlflow/datasets/search", json={})
    assert found.status_code == 200, found.text
    assert [d["name"] for d in found.json()["datasets"]] == ["churn-data"]
    everything = actors["admin"].call("POST", "/3.0/mlflow/datasets/search", json={})
    assert {d["name"] for d in everything.json()["datasets"]} >= {"fraud-data", "churn-data"}


def test_a_get_with_a_body_is_refused(world):
    """MLflow reads the JSON body of a GET without a query; this layer never lets one in."""
    server, actors, ids = world
    response = httpx.request(
        "GET",
        server.url + "/api/2.0/mlflow/runs/get",
        headers={"Authorization": f"Bearer {actors['bob'].key}"},
        content=json.dumps({"run_id": ids["fraud_run"]}),
    )
    assert response.status_code == 400
    assert "must not carry a body" in response.json()["message"]


@pytest.mark.parametrize(
    "headers",
    [{"Host": "rebound.example"}, {"Origin": "https://evil.example"}],
    ids=["host", "origin"],
)
def test_foreign_host_or_origin_changes_nothing(world, headers):
    server, actors, ids = world
    response = httpx.post(
        server.url + "/api/2.0/mlflow/experiments/set-experiment-tag",
        headers={"Authorization": f"Bearer {actors['admin'].key}", **headers},
        json={"experiment_id": ids["fraud"], "key": "touched", "value": "yes"},
    )
    assert response.status_code == 403, response.text
    experiment = actors["admin"].call(
        "GET", f"/2.0/mlflow/experiments/get?experiment_id={ids['fraud']}"
    )
    tags = {t["key"] for t in experiment.json()["experiment"].get("tags", [])}
    assert "touched" not in tags


def test_artifacts_under_a_custom_location(world, tmp_path, monkeypatch):
    """An experiment created with its own `mlflow-artifacts:` location keeps its artefacts
    its own; locations that would claim another experiment's tree are refused."""
    server, actors, ids = world
    from mlflow import MlflowClient

    alice, bob = actors["alice"], actors["bob"]
    project = [{"key": "mlflow.secure.project", "value": "fraud"}]
    created = alice.call(
        "POST",
        "/2.0/mlflow/experiments/create",
        json={
            "name": "fraud-custom",
            "artifact_location": "mlflow-artifacts:/fraud-team/models",
            "tags": project,
        },
    )
    assert created.status_code == 200, created.text
    experiment_id = created.json()["experiment_id"]
    for location in (
        "mlflow-artifacts:/fraud-team",  # would hold the tree above
        "mlflow-artifacts:/fraud-team/models/inner",  # would sit inside it
        "mlflow-artifacts:/fraud-team/models",  # the same tree
        f"mlflow-artifacts:/{ids['fraud']}/stolen",  # a numbered (default) tree
        "mlflow-artifacts:/",  # the whole root
    ):
        refused = bob.call(
            "POST",
            "/2.0/mlflow/experiments/create",
            json={
                "name": f"grab-{len(location)}",
                "artifact_location": location,
                "tags": [{"key": "mlflow.secure.project", "value": "churn"}],
            },
        )
        assert refused.status_code == 400, (location, refused.text)

    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", alice.key)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    client = MlflowClient()
    run = client.create_run(experiment_id)
    source = tmp_path / "model.bin"
    source.write_text("custom weights")
    client.log_artifact(run.info.run_id, str(source))  # immediately after the experiment
    downloaded = client.download_artifacts(run.info.run_id, "model.bin", str(tmp_path / "out"))
    assert Path(downloaded).read_text() == "custom weights"

    path = f"fraud-team/models/{run.info.run_id}/artifacts/model.bin"
    assert alice.call("GET", f"/2.0/mlflow-artifacts/artifacts/{path}").status_code == 200
    for prefix in PREFIXES:
        assert bob.call("GET", f"/2.0/mlflow-artifacts/artifacts/{path}", prefix).status_code == 404
    listing = bob.call("GET", "/2.0/mlflow-artifacts/artifacts?path=fraud-team/models")
    assert listing.status_code == 404
    assert (
        bob.call("PUT", f"/2.0/mlflow-artifacts/artifacts/{path}", content=b"x").status_code == 404
    )
    # a tree nobody owns is nobody's: answered as a missing resource
    assert alice.call("GET", "/2.0/mlflow-artifacts/artifacts/unowned/x").status_code == 404


def test_otlp_export_is_authorised_by_its_experiment_header(world):
    """`/v1/traces` names its experiment (and optionally a run) in headers: both must be
    writable by the caller, and a parameter spelt like the header changes nothing."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

    server, actors, ids = world
    span = Span(
        trace_id=b"\x07" * 16,
        span_id=b"\x08" * 8,
        name="root",
        start_time_unix_nano=1,
        end_time_unix_nano=2,
    )
    payload = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[span])])]
    ).SerializeToString()

    def export(actor, experiment, run=None, query="", trace=payload):
        headers = {
            "Authorization": f"Bearer {actor.key}",
            "Content-Type": "application/x-protobuf",
            "x-mlflow-experiment-id": experiment,
        }
        if run:
            headers["x-mlflow-run-id"] = run
        return httpx.post(f"{server.url}/v1/traces{query}", headers=headers, content=trace)

    assert export(actors["bob"], ids["fraud"]).status_code == 404
    churn_run = actors["bob"].call(
        "POST", "/2.0/mlflow/runs/create", json={"experiment_id": ids["churn"]}
    )
    churn_run = churn_run.json()["run"]["info"]["run_id"]
    # his own experiment, but linked to alice's run: refused
    assert export(actors["bob"], ids["churn"], run=ids["fraud_run"]).status_code == 404
    spoof = export(
        actors["bob"], ids["fraud"], query=f"?header:x-mlflow-experiment-id={ids['churn']}"
    )
    assert spoof.status_code == 404
    accepted = export(actors["alice"], ids["fraud"], run=ids["fraud_run"])
    assert accepted.status_code == 200, accepted.text
    # the trace is alice's now: bob may neither append to it nor move it (another id is his)
    assert export(actors["bob"], ids["churn"], run=churn_run).status_code == 404
    span.trace_id = b"\x09" * 16
    own = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[span])])]
    ).SerializeToString()
    assert export(actors["bob"], ids["churn"], run=churn_run, trace=own).status_code == 200


def test_a_shared_dataset_is_read_through_any_experiment_and_changed_through_all(world):
    _, actors, ids = world
    admin, bob, alice = actors["admin"], actors["bob"], actors["alice"]
    made = admin.call(
        "POST",
        "/3.0/mlflow/datasets/create",
        json={"name": "shared-data", "experiment_ids": [ids["fraud"], ids["churn"]]},
    )
    assert made.status_code == 200, made.text
    dataset_id = made.json()["dataset"]["dataset_id"]
    for actor in (alice, bob):
        read = actor.call("GET", f"/3.0/mlflow/datasets/{dataset_id}")
        assert read.status_code == 200, read.text
        listed = actor.call("POST", "/3.0/mlflow/datasets/search", json={})
        assert "shared-data" in {d["name"] for d in listed.json()["datasets"]}
        tagged = actor.call(
            "PATCH",
            f"/3.0/mlflow/datasets/{dataset_id}/tags",
            json={"tags": json.dumps({"k": "v"})},
        )
        assert tagged.status_code == 403, tagged.text  # the change would reach the other team
    assert (
        admin.call(
            "PATCH",
            f"/3.0/mlflow/datasets/{dataset_id}/tags",
            json={"tags": json.dumps({"k": "v"})},
        ).status_code
        == 200
    )
