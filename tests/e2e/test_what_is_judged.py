"""What is judged is what runs: every class of parser differential and unnamed id, end to end.

Two teams on a real server (uvicorn and gunicorn), a real OPA, the bundled policies and the
stock MLflow client. Each test sends what an attacker would (bob, team-b, against alice's
project fraud) and checks both the answer and that nothing changed.
"""

import json
import secrets

import httpx
import pytest

from tests.support import servers, teams

pytestmark = pytest.mark.e2e
API = "/api/2.0/mlflow"


@pytest.fixture(scope="module", params=["uvicorn", "gunicorn"])
def world(request, tmp_path_factory):
    extra = ("--gunicorn-opts", "--timeout 60") if request.param == "gunicorn" else ()
    server = servers.start(
        tmp_path_factory.mktemp(f"judged-{request.param}"),
        extra_args=extra,
        env={"MLFLOW_SECURE_AUTH_MAX_FAILURES": "1000"},
    )
    server.kind = request.param  # OTLP (/v1/traces) is a FastAPI route: uvicorn only
    actors = teams.populate(server)
    alice, bob = actors["alice"], actors["bob"]

    def experiment(actor, name, project):
        body = {"name": name, "tags": [{"key": "mlflow.secure.project", "value": project}]}
        response = actor.call("POST", "/2.0/mlflow/experiments/create", json=body)
        assert response.status_code == 200, response.text
        return response.json()["experiment_id"]

    def run(actor, experiment_id):
        response = actor.call(
            "POST", "/2.0/mlflow/runs/create", json={"experiment_id": experiment_id}
        )
        assert response.status_code == 200, response.text
        return response.json()["run"]["info"]["run_id"]

    ids = {"fraud": experiment(alice, "fraud-exp", "fraud")}
    ids["churn"] = experiment(bob, "churn-exp", "churn")
    ids["fraud_run"], ids["churn_run"] = run(alice, ids["fraud"]), run(bob, ids["churn"])
    model = alice.call(
        "POST",
        "/2.0/mlflow/logged-models",
        json={"experiment_id": ids["fraud"], "name": "fraud-model"},
    )
    assert model.status_code == 200, model.text
    ids["fraud_model"] = model.json()["model"]["info"]["model_id"]
    registered = bob.call("POST", "/2.0/mlflow/registered-models/create", json={"name": "bobs"})
    assert registered.status_code == 200, registered.text
    yield server, actors, ids
    server.interrupt()


def tags_of(actor, experiment_id):
    got = actor.call("GET", f"/2.0/mlflow/experiments/get?experiment_id={experiment_id}")
    assert got.status_code == 200, got.text
    return {t["key"]: t["value"] for t in got.json()["experiment"].get("tags", [])}


def assert_hidden(response):
    """Refused as MLflow answers for something that does not exist."""
    assert response.status_code == 404, response.text
    assert response.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"


@pytest.mark.parametrize("prefix", ["/api", "/ajax-api"])
def test_a_double_encoded_body_is_judged_as_mlflow_reads_it(world, prefix):
    server, actors, ids = world
    bob = actors["bob"]
    move = {"experiment_id": ids["fraud"], "key": "mlflow.secure.project", "value": "churn"}
    # the decoy in the query names bob's own experiment; MLflow reads the body, twice decoded
    response = httpx.post(
        f"{server.url}{prefix}/2.0/mlflow/experiments/set-experiment-tag",
        params={"experiment_id": ids["churn"]},
        content=json.dumps(json.dumps(move)),
        headers={"Authorization": f"Bearer {bob.key}", "Content-Type": "application/json"},
    )
    assert response.status_code in (400, 404), response.text
    plain = httpx.post(
        f"{server.url}{prefix}/2.0/mlflow/experiments/set-experiment-tag",
        content=json.dumps(json.dumps(move)),
        headers={"Authorization": f"Bearer {bob.key}", "Content-Type": "application/json"},
    )
    assert_hidden(plain)
    assert tags_of(actors["alice"], ids["fraud"])["mlflow.secure.project"] == "fraud"
    # alice's own double-encoded request works, as MLflow's older clients send it
    mine = {"experiment_id": ids["fraud"], "key": f"note{prefix[1]}", "value": "v"}
    ok = httpx.post(
        f"{server.url}{prefix}/2.0/mlflow/experiments/set-experiment-tag",
        content=json.dumps(json.dumps(mine)),
        headers={
            "Authorization": f"Bearer {actors['alice'].key}",
            "Content-Type": "application/json",
        },
    )
    assert ok.status_code == 200, ok.text
    assert tags_of(actors["alice"], ids["fraud"])[f"note{prefix[1]}"] == "v"


@pytest.mark.parametrize("prefix", ["/api", "/ajax-api"])
def test_camel_case_aliases_are_the_names_mlflow_reads(world, prefix):
    _, actors, ids = world
    body = {"runId": ids["fraud_run"], "key": "m", "value": 1.0, "timestamp": 1}
    logged = actors["bob"].call("POST", "/2.0/mlflow/runs/log-metric", prefix=prefix, json=body)
    assert_hidden(logged)
    both = {"run_id": ids["churn_run"], "runId": ids["fraud_run"], "key": "m", "value": 1.0}
    refused = actors["bob"].call(
        "POST", "/2.0/mlflow/runs/log-metric", json={**both, "timestamp": 1}
    )
    assert refused.status_code == 400, refused.text


def test_a_query_parsed_route_is_decided_on_its_query(world):
    server, actors, ids = world
    bob = actors["bob"]
    response = httpx.post(
        f"{server.url}/ajax-api/2.0/mlflow/upload-artifact",
        params={"run_uuid": ids["fraud_run"], "path": "planted.txt"},
        content=json.dumps({"run_uuid": ids["churn_run"]}),
        headers={"Authorization": f"Bearer {bob.key}", "Content-Type": "application/json"},
    )
    assert_hidden(response)
    listed = actors["alice"].call("GET", f"/2.0/mlflow/artifacts/list?run_id={ids['fraud_run']}")
    assert "planted.txt" not in listed.text


@pytest.mark.parametrize("prefix", ["/api", "/ajax-api"])
def test_a_model_version_cannot_point_at_another_teams_run_or_model(world, prefix):
    _, actors, ids = world
    bob = actors["bob"]
    attempts = [
        {"name": "bobs", "source": f"runs:/{ids['fraud_run']}/model"},
        {"name": "bobs", "source": "mlflow-artifacts:/x", "run_id": ids["fraud_run"]},
        {"name": "bobs", "source": f"models:/{ids['fraud_model']}"},
        {"name": "bobs", "source": "s3://b/x", "model_id": ids["fraud_model"]},
    ]
    for body in attempts:
        response = bob.call("POST", "/2.0/mlflow/model-versions/create", prefix=prefix, json=body)
        assert_hidden(response)
    listed = bob.call("GET", "/2.0/mlflow/registered-models/get?name=bobs").json()
    assert "latest_versions" not in listed["registered_model"]


def test_secondary_ids_on_metrics_outputs_and_traces_are_decided(world):
    _, actors, ids = world
    bob = actors["bob"]
    metric = {
        "run_id": ids["churn_run"],
        "key": "m",
        "value": 1.0,
        "timestamp": 1,
        "model_id": ids["fraud_model"],
    }
    assert_hidden(bob.call("POST", "/2.0/mlflow/runs/log-metric", json=metric))
    outputs = {"run_id": ids["churn_run"], "models": [{"model_id": ids["fraud_model"], "step": 0}]}
    assert_hidden(bob.call("POST", "/2.0/mlflow/runs/outputs", json=outputs))
    batch = {"run_id": ids["churn_run"], "metrics": [{**metric, "run_id": ids["fraud_run"]}]}
    assert_hidden(bob.call("POST", "/2.0/mlflow/runs/log-batch", json=batch))
    # alice's trace, which bob then names in his own requests
    trace_id = "tr-" + secrets.token_hex(16)
    trace = {
        "trace": {
            "trace_info": {
                "trace_id": trace_id,
                "trace_location": {
                    "type": "MLFLOW_EXPERIMENT",
                    "mlflow_experiment": {"experiment_id": ids["fraud"]},
                },
                "request_time": "2026-01-01T00:00:00Z",
                "state": "OK",
            }
        }
    }
    created = actors["alice"].call("POST", "/3.0/mlflow/traces", json=trace)
    assert created.status_code == 200, created.text
    link = {"run_id": ids["churn_run"], "trace_ids": [trace_id]}
    assert_hidden(bob.call("POST", "/2.0/mlflow/traces/link-to-run", json=link))
    moved = json.loads(json.dumps(trace))
    moved["trace"]["trace_info"]["trace_location"]["mlflow_experiment"]["experiment_id"] = ids[
        "churn"
    ]
    assert_hidden(bob.call("POST", "/3.0/mlflow/traces", json=moved))
    info = actors["alice"].call("GET", f"/3.0/mlflow/traces/{trace_id}")
    assert info.status_code == 200, info.text
    # as MLflow's client asks for it (MlflowClient.get_trace): it reaches MLflow, which has
    # no span data for this bare trace to return
    full = actors["alice"].call(
        "GET", f"/3.0/mlflow/traces/get?trace_id={trace_id}&allow_partial=True"
    )
    assert full.status_code not in (400, 403, 404), full.text
    location = info.json()["trace"]["trace_info"]["trace_location"]["mlflow_experiment"]
    assert location["experiment_id"] == ids["fraud"]  # still alice's
    assert bob.call("GET", f"/3.0/mlflow/traces/{trace_id}").status_code == 404


def test_an_otlp_span_cannot_append_to_another_teams_trace(world):
    server, actors, ids = world
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    otel_id = secrets.token_bytes(16)

    def export(actor, experiment_id):
        request = ExportTraceServiceRequest()
        span = request.resource_spans.add().scope_spans.add().spans.add()
        span.trace_id, span.span_id, span.name = otel_id, secrets.token_bytes(8), "root"
        span.start_time_unix_nano, span.end_time_unix_nano = 1, 2
        return httpx.post(
            server.url + "/v1/traces",
            content=request.SerializeToString(),
            headers={
                "Authorization": f"Bearer {actor.key}",
                "Content-Type": "application/x-protobuf",
                "x-mlflow-experiment-id": experiment_id,
            },
        )

    if server.kind == "gunicorn":  # the WSGI server serves no FastAPI route: nothing to reach
        assert export(actors["alice"], ids["fraud"]).json()["error_code"] == "ENDPOINT_NOT_FOUND"
        return
    assert export(actors["alice"], ids["fraud"]).status_code == 200
    assert_hidden(export(actors["bob"], ids["churn"]))


def test_lookups_by_name_resolve_names(world):
    _, actors, ids = world
    alice, bob = actors["alice"], actors["bob"]
    found = alice.call("GET", "/2.0/mlflow/experiments/get-by-name?experiment_name=fraud-exp")
    assert found.status_code == 200, found.text
    assert found.json()["experiment"]["experiment_id"] == ids["fraud"]
    # an experiment of alice's named like bob's experiment id is not bob's to read
    numbered = alice.call(
        "POST",
        "/2.0/mlflow/experiments/create",
        json={"name": ids["churn"], "tags": [{"key": "mlflow.secure.project", "value": "fraud"}]},
    )
    assert numbered.status_code == 200, numbered.text
    assert_hidden(
        bob.call("GET", f"/2.0/mlflow/experiments/get-by-name?experiment_name={ids['churn']}")
    )
    assert_hidden(bob.call("GET", "/2.0/mlflow/experiments/get-by-name?experiment_name=fraud-exp"))
    assert_hidden(bob.call("GET", "/2.0/mlflow/experiments/get-by-name?experiment_name=nothing"))


def test_path_spellings_do_not_skip_authorship(world):
    server, actors, ids = world
    response = httpx.post(
        server.url + "//api/2.0/mlflow/runs/create",
        json={
            "experiment_id": ids["churn"],
            "user_id": "alice",
            "tags": [{"key": "mlflow.user", "value": "alice"}],
        },
        headers={"Authorization": f"Bearer {actors['bob'].key}"},
    )
    assert response.status_code == 200, response.text
    info = response.json()["run"]["info"]
    assert info["user_id"] == "bob"
    tags = {t["key"]: t["value"] for t in response.json()["run"]["data"]["tags"]}
    assert tags["mlflow.user"] == "bob"


def test_uri_schemes_and_policy_tag_keys_compare_as_the_store_does(world):
    _, actors, ids = world
    bob = actors["bob"]
    upper = {
        "name": "grab",
        "artifact_location": f"MLFLOW-ARTIFACTS:/{ids['fraud']}",
        "tags": [{"key": "mlflow.secure.project", "value": "churn"}],
    }
    assert bob.call("POST", "/2.0/mlflow/experiments/create", json=upper).status_code == 400
    shouting = {"experiment_id": ids["churn"], "key": "MLFLOW.SECURE.PROJECT", "value": "fraud"}
    refused = bob.call("POST", "/2.0/mlflow/experiments/set-experiment-tag", json=shouting)
    assert refused.status_code == 400, refused.text
    assert "lower-case" in refused.json()["message"]


def test_refusals_and_errors_read_as_mlflow_and_say_how_to_fix(world):
    _, actors, _ids = world
    alice = actors["alice"]
    default = alice.call("POST", "/2.0/mlflow/runs/create", json={"experiment_id": "0"})
    assert default.status_code == 403, default.text
    assert "mlflow.set_experiment" in default.json()["message"]
    duplicate = alice.call(
        "POST",
        "/2.0/mlflow/experiments/create",
        json={"name": "fraud-exp", "tags": [{"key": "mlflow.secure.project", "value": "fraud"}]},
    )
    assert duplicate.status_code >= 400
    assert "sqlite3" not in duplicate.text
    assert "[SQL:" not in duplicate.text
    empty = alice.call(
        "POST", "/2.0/mlflow/experiments/search-datasets", prefix="/ajax-api", json={}
    )
    assert empty.status_code == 400, empty.text
    assert "experiment_id" in empty.json()["message"]
    # more ids than resolution reads: still MLflow's own refusal, in MLflow's words
    many = alice.call(
        "POST",
        "/2.0/mlflow/experiments/search-datasets",
        prefix="/ajax-api",
        json={"experiment_ids": [str(i) for i in range(1000)]},
    )
    assert many.status_code == 400, many.text
    assert many.json()["message"].startswith("SearchDatasets request cannot specify more than")
    # a request naming no resource: MLflow's own 400, not "belongs to no project"
    for method, path, options, message in (
        (
            "GET",
            "/2.0/mlflow/metrics/get-history-bulk",
            {"params": {"metric_key": "m"}},
            "GetMetricHistoryBulk request must specify at least one run_id.",
        ),
        (
            "POST",
            "/2.0/mlflow/upload-artifact",
            {"params": {"path": "a.txt"}},
            "Request must specify run_uuid.",
        ),
        (
            "POST",
            "/2.0/mlflow/runs/log-inputs",
            {"json": {"datasets": []}},
            "Missing value for required parameter 'run_id'.",
        ),
        (
            "POST",
            "/2.0/mlflow/runs/create-promptlab-run",
            {"json": {"experiment_id": "1"}},
            "CreatePromptlabRun request must specify prompt_template.",
        ),
    ):
        answer = alice.call(method, path, prefix="/ajax-api", **options)
        assert answer.status_code == 400, (path, answer.text)
        assert answer.json()["error_code"] == "INVALID_PARAMETER_VALUE"
        assert answer.json()["message"].startswith(message), answer.text


def test_new_work_goes_into_the_creators_project(world):
    server, actors, _ = world
    admin = actors["admin"].key
    for path, body in (
        ("users/create", {"name": "carol", "clearance": "internal"}),
        ("teams/add-member", {"team": "team-a", "principal": "carol"}),
    ):
        assert server.api("POST", teams.API + path, admin, json=body).status_code == 200
    carol = teams.Actor(server, teams.make_key(server, admin, "carol"))
    created = carol.call("POST", "/2.0/mlflow/experiments/create", json={"name": "carols"})
    assert created.status_code == 200, created.text
    assert tags_of(carol, created.json()["experiment_id"])["mlflow.secure.project"] == "fraud"
    # a client may choose among its projects with X-MLflow-Secure-Project
    chosen = carol.call(
        "POST",
        "/2.0/mlflow/experiments/create",
        json={"name": "carols-churn"},
        headers={"X-MLflow-Secure-Project": "churn"},
    )
    assert chosen.status_code == 403, chosen.text  # carol has no role in churn


FIRST_SCRIPT = """
import mlflow
from mlflow.pyfunc import PythonModel

class Echo(PythonModel):
    def predict(self, context, model_input):
        return model_input

mlflow.set_experiment("first-steps")
with mlflow.start_run() as run:
    mlflow.log_param("alpha", 0.5)
    mlflow.log_metric("loss", 0.25)
    info = mlflow.pyfunc.log_model(name="model", python_model=Echo())
version = mlflow.register_model(info.model_uri, "first-model")
prompt = mlflow.genai.register_prompt(name="greeting", template="Hello {{name}}")
assert mlflow.genai.load_prompt("prompts:/greeting/1").template == "Hello {{name}}"
found = mlflow.get_experiment_by_name("first-steps")
print("OK", found.experiment_id, run.info.run_id, version.version)
"""


def test_a_new_users_first_script_runs_unchanged(world, tmp_path):
    import os
    import subprocess
    import sys

    server, actors, _ = world
    admin = actors["admin"].key
    for path, body in (
        ("users/create", {"name": "dave", "clearance": "internal"}),
        ("projects/set-member", {"project": "fraud", "role": "editor", "principal": "dave"}),
    ):
        response = server.api("POST", teams.API + path, admin, json=body)
        assert response.status_code == 200, response.text
    key = teams.make_key(server, admin, "dave")
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": server.url,
        "MLFLOW_TRACKING_TOKEN": key,
        "MLFLOW_SECURE_ALLOW_INSECURE_TRANSPORT": "true",
    }
    done = subprocess.run(
        [sys.executable, "-c", FIRST_SCRIPT],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1].startswith("OK"), done.stdout
    assert key not in done.stdout + done.stderr


def test_the_ui_asks_who_is_signed_in(world):
    _, actors, _ = world
    for name in ("alice", "admin"):
        me = actors[name].call("GET", "/2.0/mlflow/users/current", prefix="/ajax-api")
        assert me.status_code == 200, me.text
        assert me.json()["user"]["username"] == name
        assert me.json()["user"]["is_admin"] is (name == "admin")


def test_a_header_naming_a_resource_twice_is_refused(world):
    """MLflow reads the first `x-mlflow-experiment-id`; a decision on another copy of it
    would be a decision on a decoy."""
    server, actors, ids = world
    payload = json.dumps({"resourceSpans": []})
    for name, theirs, mine in (
        ("x-mlflow-experiment-id", ids["fraud"], ids["churn"]),
        ("x-mlflow-run-id", ids["fraud_run"], ids["churn_run"]),
    ):
        headers = [
            ("Authorization", f"Bearer {actors['bob'].key}"),
            ("Content-Type", "application/json"),
            ("x-mlflow-experiment-id", ids["churn"]) if name != "x-mlflow-experiment-id" else (),
            (name, theirs),
            (name, mine),
        ]
        response = httpx.post(
            server.url + "/v1/traces", content=payload, headers=[h for h in headers if h]
        )
        # under gunicorn the FastAPI-only OTLP route does not exist at all
        assert response.status_code == (404 if server.kind == "gunicorn" else 400), response.text


def test_refusals_word_what_was_asked_not_what_was_found(world):
    _, actors, ids = world
    bob = actors["bob"]
    named = bob.call("GET", "/2.0/mlflow/experiments/get-by-name?experiment_name=fraud-exp")
    absent = bob.call("GET", "/2.0/mlflow/experiments/get-by-name?experiment_name=no-such")
    assert_hidden(named)
    assert_hidden(absent)
    assert ids["fraud"] not in named.json()["message"].replace("fraud-exp", "")
    assert named.json()["message"].replace("fraud-exp", "X") == absent.json()["message"].replace(
        "no-such", "X"
    )
    created = actors["alice"].call(
        "POST",
        "/2.0/mlflow/registered-models/create",
        json={
            "name": "fraud-registered",
            "tags": [{"key": "mlflow.secure.project", "value": "fraud"}],
        },
    )
    assert created.status_code == 200, created.text
    theirs = {"name": "bobs", "source": "models:/fraud-registered/1"}
    nothing = {"name": "bobs", "source": "models:/no-such-model/1"}
    assert_hidden(bob.call("POST", "/2.0/mlflow/model-versions/create", json=theirs))
    assert_hidden(bob.call("POST", "/2.0/mlflow/model-versions/create", json=nothing))


def test_a_body_mlflow_could_only_partly_parse_is_refused(world):
    """MLflow parses into its message and, when that fails, goes on with what parsed: an
    experiment id of the wrong JSON type would reach it as no id at all (every issue)."""
    _, actors, ids = world
    for body in (
        {"experiment_id": int(ids["churn"])},
        {"max_results": "x", "experiment_id": ids["churn"]},
    ):
        response = actors["bob"].call("POST", "/3.0/mlflow/issues/search", json=body)
        assert response.status_code == 400, response.text
    head = actors["bob"].call("HEAD", f"/2.0/mlflow/experiments/get?experiment_id={ids['churn']}")
    assert head.status_code == 400
