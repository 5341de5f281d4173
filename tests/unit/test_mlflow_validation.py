"""A body that does not parse into its message is refused in MLflow's own words: the same
status, code and message as the installed MLflow's handler gives (run here in a Flask request
context; each case is refused before the handler would touch a store)."""

import json

import flask
import pytest
from mlflow.server import handlers

from mlflow_secure.request import authorship, canonical, mlflow_validation
from mlflow_secure.request.census import ROUTES

CREATE = ("/api/2.0/mlflow/experiments/create", "POST")
METRIC = ("/api/2.0/mlflow/runs/log-metric", "POST")
PARAM = ("/api/2.0/mlflow/runs/log-parameter", "POST")
TAG = ("/api/2.0/mlflow/runs/set-tag", "POST")
BATCH = ("/api/2.0/mlflow/runs/log-batch", "POST")
HANDLERS = {
    CREATE: handlers._create_experiment,
    METRIC: handlers._log_metric,
    PARAM: handlers._log_param,
    TAG: handlers._set_tag,
    BATCH: handlers._log_batch,
}
RUN = "0123456789abcdef0123456789abcdef"
CASES = [
    (CREATE, {"name": 123}),
    (CREATE, {"name": "e", "artifact_location": 9.0, "tags": [{"key": "k", "value": "v"}]}),
    (CREATE, {"name": "e", "artifact_location": "s3://b/p", "tags": "5"}),
    (METRIC, {"run_id": 31, "key": "metric", "value": 41, "timestamp": 59, "step": 26}),
    (METRIC, {"run_id": RUN, "key": 31, "value": 41, "timestamp": 59, "step": 26}),
    (METRIC, {"run_id": RUN, "key": "foo", "value": 31, "timestamp": 59, "step": "foo"}),
    (PARAM, {"run_id": 31, "key": "param", "value": 41}),
    (PARAM, {"run_id": RUN, "key": 31, "value": 41}),
    (TAG, {"run_id": 31, "key": "tag", "value": 41}),
    (TAG, {"run_id": RUN, "key": "tag", "value": 41}),
    (BATCH, {"run_id": RUN, "metrics": "foo"}),
    (BATCH, {"run_id": RUN, "params": "foo"}),
    (BATCH, {"run_id": RUN, "tags": "foo"}),
]


def _ours(key, body):
    raw = json.dumps(body).encode()
    path, method = key
    try:
        canonical.read(ROUTES[key], key, method, b"", raw, {})
        authorship.stamp_authorship(path, method, raw, "ann")
    except canonical.BadRequest as exc:
        return exc
    return None


def _mlflows(key, body):
    path, method = key
    with flask.Flask(__name__).test_request_context(path, method=method, json=body):
        response = HANDLERS[key]()
    return response.status_code, json.loads(response.get_data())


@pytest.mark.parametrize(("key", "body"), CASES)
def test_an_unparsable_body_is_refused_in_mlflows_words(key, body):
    status, payload = _mlflows(key, body)
    assert status == 400, payload
    ours = _ours(key, body)
    assert ours is not None
    assert {"error_code": ours.error_code, "message": str(ours), **ours.extra} == payload
    # the audit trail gets no value from the body (MLflow's words quote it)
    assert ours.reason.startswith("the body does not parse into ")
    assert ours.reason.endswith("(MLflow's schema refuses it)")


def test_the_schemas_are_read_from_mlflows_handlers():
    from mlflow.protos.service_pb2 import CreateExperiment, LogBatch

    found = mlflow_validation.schemas()
    assert len(found) > 100
    assert set(found[CreateExperiment]) == {"name", "artifact_location", "tags"}
    assert set(found[LogBatch]) == {"run_id", "metrics", "params", "tags"}  # local helpers


def test_a_body_mlflows_schema_accepts_keeps_our_wording():
    from mlflow.protos.service_pb2 import LogMetric

    assert mlflow_validation.refusal(LogMetric, {"run_id": RUN, "key": "k", "value": 1}) is None
