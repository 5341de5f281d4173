"""The canonical request: one reading per census parse mode, and the bytes MLflow receives."""

import json
from urllib.parse import parse_qsl

import pytest

from mlflow_secure.request import canonical
from mlflow_secure.request.canonical import AmbiguousRequest, BadRequest
from mlflow_secure.request.census import ROUTES

SET_TAG = ("/api/2.0/mlflow/experiments/set-experiment-tag", "POST")
GET_RUN = ("/api/2.0/mlflow/runs/get", "GET")
START_TRACE = ("/api/3.0/mlflow/traces", "POST")
UPLOAD = ("/api/2.0/mlflow/upload-artifact", "POST")
FINALIZE = ("/api/2.0/mlflow/logged-models/<model_id>", "PATCH")


def read(key, method, query=b"", body=None, path_params=None, **kwargs):
    spec = ROUTES[key]
    return canonical.read(spec, key, method, query, body, path_params or {}, **kwargs)


def test_a_double_encoded_body_is_decoded_as_mlflow_does_and_sent_once_encoded():
    inner = {"experiment_id": "7", "key": "k", "value": "v"}
    request = read(SET_TAG, "POST", body=json.dumps(json.dumps(inner)).encode())
    assert request.params == inner
    assert json.loads(request.body) == inner  # MLflow receives a plain object now


def test_json_names_are_folded_to_proto_names_at_every_level():
    body = {
        "trace": {
            "traceInfo": {
                "traceId": "tr-1",
                "traceLocation": {"mlflowExperiment": {"experimentId": "3"}},
            }
        }
    }
    request = read(START_TRACE, "POST", body=json.dumps(body).encode())
    info = request.params["trace"]["trace_info"]
    assert info["trace_id"] == "tr-1"
    assert info["trace_location"]["mlflow_experiment"]["experiment_id"] == "3"
    assert b"traceInfo" not in request.body


@pytest.mark.parametrize(
    "body",
    [
        b'{"experiment_id": "1", "experimentId": "2"}',
        b'{"experiment_id": "1", "experiment_id": "2"}',
        b'{"trace": {"trace_info": {"trace_id": "a", "traceId": "b"}}}',
    ],
)
def test_one_field_given_twice_is_ambiguous(body):
    key = START_TRACE if b"trace" in body else SET_TAG
    with pytest.raises(AmbiguousRequest):
        read(key, "POST", body=body)


def test_a_field_in_the_query_of_a_body_route_is_refused():
    body = json.dumps({"experiment_id": "7", "key": "k", "value": "v"}).encode()
    with pytest.raises(AmbiguousRequest, match="read from the JSON body"):
        read(SET_TAG, "POST", query=b"experiment_id=8", body=body)


@pytest.mark.parametrize("body", [b"[1, 2]", b'"not an object"', b"{nope", b"42"])
def test_a_body_that_is_no_json_object_is_refused(body):
    with pytest.raises(BadRequest):
        read(SET_TAG, "POST", body=body)


def test_a_compressed_json_body_is_refused():
    with pytest.raises(BadRequest, match="compressed"):
        read(SET_TAG, "POST", body=b"{}", content_encoding="gzip")


def test_a_get_reads_its_query_by_proto_name_and_rebuilds_it():
    request = read(GET_RUN, "GET", query=b"run_id=a%20b&runId=decoy")
    assert request.params["run_id"] == "a b"
    assert request.body is None
    assert parse_qsl(request.query.decode()) == [("run_id", "a b"), ("runId", "decoy")]
    with pytest.raises(AmbiguousRequest, match="more than once"):
        read(GET_RUN, "GET", query=b"run_id=a&run_id=b")


def test_a_query_route_never_reads_the_body():
    request = read(UPLOAD, "POST", query=b"run_uuid=r1&path=x.txt", body=None)
    assert request.params["run_uuid"] == "r1"
    assert not canonical.reads_body(ROUTES[UPLOAD], "POST", "application/json")


def test_the_path_and_the_body_must_agree():
    body = json.dumps({"model_id": "m-2"}).encode()
    with pytest.raises(AmbiguousRequest, match="URL contradicts"):
        read(FINALIZE, "PATCH", body=body, path_params={"model_id": "m-1"})
    same = read(FINALIZE, "PATCH", body=b'{"model_id": "m-1"}', path_params={"model_id": "m-1"})
    assert same.params["model_id"] == "m-1"


def test_a_new_payload_keeps_path_variables_and_drops_front_door_names():
    request = read(SET_TAG, "POST", body=b'{"experiment_id": "7"}')
    changed = request.with_payload({"experiment_id": "7", "header:x": "forged", "key": "k"})
    assert "header:x" not in changed.params
    assert json.loads(changed.body)["key"] == "k"


def test_booleans_in_a_query_are_read_as_mlflow_reads_them():
    """MLflow's own client sends `allow_partial=True`; MLflow accepts any case."""
    key = ("/api/3.0/mlflow/traces/get", "GET")
    assert read(key, "GET", query=b"trace_id=tr-1&allow_partial=True").params["trace_id"] == "tr-1"
