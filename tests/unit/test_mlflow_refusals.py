"""MLflow's own refusals, answered before resolution: the same status, code and message as the
installed MLflow's handler gives for the same request (the handler runs here in a Flask
request context; every case is refused before it would touch a store)."""

import json
from urllib.parse import urlencode

import flask
import pytest
from mlflow.server import handlers

from mlflow_secure.request import canonical, mlflow_refusals
from mlflow_secure.request.census import ROUTES

BULK = ("/api/2.0/mlflow/metrics/get-history-bulk", "GET")
INTERVAL = ("/api/2.0/mlflow/metrics/get-history-bulk-interval", "GET")
LOG_INPUTS = ("/api/2.0/mlflow/runs/log-inputs", "POST")
UPLOAD = ("/api/2.0/mlflow/upload-artifact", "POST")
PROMPTLAB = ("/api/2.0/mlflow/runs/create-promptlab-run", "POST")
DATASETS = ("/api/2.0/mlflow/experiments/search-datasets", "POST")
VERSION_FILE = ("/model-versions/get-artifact", "GET")

HANDLERS = {
    BULK: handlers.get_metric_history_bulk_handler,
    INTERVAL: handlers.get_metric_history_bulk_interval_handler,
    LOG_INPUTS: handlers._log_inputs,
    UPLOAD: handlers.upload_artifact_handler,
    PROMPTLAB: handlers.create_promptlab_run_handler,
    DATASETS: handlers._search_datasets_handler,
    VERSION_FILE: handlers.get_model_version_artifact_handler,
}
many = [f"id_{i}" for i in range(1000)]
PROMPT = {"experiment_id": "123", "prompt_template": "t", "prompt_parameters": [{"key": "k"}]}
REFUSED = [
    (BULK, {"metric_key": "key"}, None),
    (BULK, {"run_id": many, "metric_key": "key"}, None),
    (INTERVAL, {"metric_key": "key"}, None),
    (INTERVAL, {"run_ids": many, "metric_key": "key"}, None),
    # the handler's schema, checked although the request parses
    (INTERVAL, {"run_ids": ["123"], "metric_key": "key", "max_results": 0}, None),
    (INTERVAL, {"run_ids": ["123"], "metric_key": ""}, None),
    (INTERVAL, {"run_ids": ["123"], "max_results": 5}, None),
    (BULK, {"run_id": ["r1"]}, None),
    # the handler's own checks after the schema, before the store
    (INTERVAL, {"run_ids": ["123"], "metric_key": "key", "start_step": 1, "end_step": 0}, None),
    (INTERVAL, {"run_ids": ["123"], "metric_key": "key", "start_step": 1}, None),
    (INTERVAL, {"run_ids": ["123"], "metric_key": "key", "end_step": 3}, None),
    # the schema comes first
    (INTERVAL, {"run_ids": ["1"], "metric_key": "k", "start_step": 1, "max_results": 0}, None),
    (LOG_INPUTS, {}, {"datasets": []}),
    (UPLOAD, {}, None),
    (UPLOAD, {"run_uuid": "r1"}, None),
    (UPLOAD, {"run_uuid": "r1", "path": ""}, None),
    (PROMPTLAB, {}, {}),
    (PROMPTLAB, {}, {"experiment_id": "123"}),
    (PROMPTLAB, {}, {"experiment_id": "123", "prompt_template": "t"}),
    (PROMPTLAB, {}, PROMPT),
    (PROMPTLAB, {}, {**PROMPT, "model_route": "r"}),
    (PROMPTLAB, {}, {**PROMPT, "model_route": "r", "model_input": "i"}),
    (DATASETS, {}, {}),
    (DATASETS, {}, {"experiment_ids": [str(i) for i in range(21)]}),
    (DATASETS, {}, {"experimentIds": [str(i) for i in range(1000)]}),
    (VERSION_FILE, {"name": "m", "version": "1", "path": "../path"}, None),
    (VERSION_FILE, {"name": "m", "version": "1", "path": "/etc/passwd"}, None),
    (VERSION_FILE, {"name": "m", "version": "1", "path": "a/../../b"}, None),
]
# Requests MLflow's handler takes on to the store: nothing is answered early.
PASSED_ON = [
    (BULK, {"run_id": ["r1"], "metric_key": "key"}, None),
    (INTERVAL, {"run_ids": ["r1", "r2"], "metric_key": "key"}, None),
    (INTERVAL, {"run_ids": ["r1"], "metric_key": "key", "start_step": 2, "end_step": 2}, None),
    (LOG_INPUTS, {}, {"run_id": "r1"}),
    (UPLOAD, {"run_uuid": "r1", "path": "a.txt"}, None),
    (PROMPTLAB, {}, {**PROMPT, "model_route": "r", "model_input": "i", "mlflow_version": "3"}),
    (DATASETS, {}, {"experiment_ids": ["1", "2"]}),
    (VERSION_FILE, {"name": "m", "version": "1", "path": "model/MLmodel"}, None),
    (VERSION_FILE, {"name": "m", "version": "1"}, None),
]


def _query(params):
    return urlencode(params, doseq=True).encode()


def _ours(key, params, body):
    raw = json.dumps(body).encode() if body is not None else None
    reads_json = canonical.reads_body(ROUTES[key], key[1], "application/json")
    request = canonical.read(
        ROUTES[key], key, key[1], _query(params), raw if reads_json else None, {}
    )
    found = mlflow_refusals.refused(ROUTES[key].endpoint, request)
    return found[0] if found is not None else None


def _mlflows(key, params, body):
    app = flask.Flask(__name__)
    options = {"json": body} if body is not None else {}
    path, method = key
    with app.test_request_context(
        path, method=method, query_string=_query(params).decode(), **options
    ):
        response = HANDLERS[key]()
    return response.status_code, json.loads(response.get_data())


@pytest.mark.parametrize(("key", "params", "body"), REFUSED)
def test_refused_in_mlflows_words(key, params, body):
    status, payload = _mlflows(key, params, body)
    assert status == 400, payload  # the case is one MLflow refuses before any store
    ours = _ours(key, params, body)
    assert ours is not None
    assert (ours.status, json.loads(ours.body())) == (status, payload)


@pytest.mark.parametrize(("key", "params", "body"), PASSED_ON)
def test_requests_mlflow_takes_on_are_not_answered_early(key, params, body):
    assert _ours(key, params, body) is None


def test_every_entry_is_a_census_endpoint():
    endpoints = {spec.endpoint for spec in ROUTES.values()}
    assert set(mlflow_refusals.REFUSALS) <= endpoints
    assert set(mlflow_refusals.AFTER_SCHEMA) <= endpoints


def test_a_refusal_that_quotes_values_is_audited_without_them():
    key = INTERVAL
    params = {"run_ids": ["123"], "metric_key": "key", "start_step": 41, "end_step": 7}
    request = canonical.read(ROUTES[key], key, key[1], _query(params), None, {})
    reply, reason = mlflow_refusals.refused(ROUTES[key].endpoint, request)
    assert "41" in json.loads(reply.body())["message"]
    assert reason == mlflow_refusals.SCHEMA_REASON
