"""Authorship stamping: per-endpoint rules, fidelity against MLflow's own parsing and routing,
a census of MLflow's routes so an upgrade cannot add an unreviewed author field, and a round
trip through MLflow's real handlers and store."""

from __future__ import annotations

import gzip
import json
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.message import Message
from mlflow.protos import issues_pb2, model_registry_pb2, review_queues_pb2, service_pb2
from mlflow.utils.proto_json_utils import parse_dict
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from mlflow_secure.request.authorship import (
    ENDPOINTS,
    AuthorshipViolation,
    find_endpoint,
    refuse_otlp_authorship,
    stamp_authorship,
)
from mlflow_secure.request.canonical import BadRequest

ME = "alice"
FORGED = "bob"
USER = "mlflow.user"


def stamp(path: str, body: Any, method: str = "POST", principal: str = ME) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    out = stamp_authorship(path, method, raw, principal)
    return None if out is None else json.loads(out)


def tag(key: str, value: str) -> dict[str, str]:
    return {"key": key, "value": value}


def values(tags: list[dict[str, str]], key: str = USER) -> list[str]:
    return [t["value"] for t in tags if t["key"] == key]


# --------------------------------------------------------------------------------------------
# Runs
# --------------------------------------------------------------------------------------------

RUNS_CREATE = "/api/2.0/mlflow/runs/create"


def test_create_run_overwrites_forged_user_and_tag_and_keeps_everything_else() -> None:
    body = {
        "experiment_id": "7",
        "user_id": FORGED,
        "run_name": "r",
        "start_time": 1700000000000,
        "tags": [tag("team", "x"), tag(USER, FORGED), tag("mlflow.source.name", "train.py")],
        "unknown_field": {"kept": [1, 2.5, None, True]},
    }
    out = stamp(RUNS_CREATE, body)
    assert out["user_id"] == ME
    assert values(out["tags"]) == [ME]
    expected = {**body, "user_id": ME}
    expected["tags"] = [tag("team", "x"), tag(USER, ME), tag("mlflow.source.name", "train.py")]
    assert out == expected


def test_create_run_inserts_missing_user_and_tag() -> None:
    out = stamp(RUNS_CREATE, {"experiment_id": "7"})
    assert out == {"experiment_id": "7", "user_id": ME, "tags": [tag(USER, ME)]}


def test_create_run_camel_case_alias_is_stamped_in_place() -> None:
    out = stamp(RUNS_CREATE, {"experimentId": "7", "userId": FORGED, "tags": None})
    assert out == {"experimentId": "7", "userId": ME, "tags": [tag(USER, ME)]}


def test_create_run_refuses_both_spellings_of_user_id() -> None:
    with pytest.raises(AuthorshipViolation, match="both 'user_id' and 'userId'"):
        stamp(RUNS_CREATE, {"experiment_id": "7", "user_id": ME, "userId": FORGED})


def test_create_run_already_carrying_the_principal_passes_through() -> None:
    assert (
        stamp(RUNS_CREATE, {"experiment_id": "7", "user_id": ME, "tags": [tag(USER, ME)]}) is None
    )


@pytest.mark.parametrize("key", ["MLFLOW.USER", "mlflow.user ", "mlflöw.user", "\uff4dlflow.user"])
def test_look_alike_author_keys_are_refused(key: str) -> None:
    # Case-, accent- and padding-insensitive collations (MySQL, SQL Server) would store these
    # on the same row as `mlflow.user`.
    with pytest.raises(AuthorshipViolation, match="differ from a reserved authorship key"):
        stamp(RUNS_CREATE, {"experiment_id": "7", "tags": [tag(key, FORGED)]})


def test_promptlab_run_user_id_is_forced() -> None:
    path = "/api/2.0/mlflow/runs/create-promptlab-run"
    assert stamp(path, {"experiment_id": "1", "user_id": FORGED})["user_id"] == ME
    # The handler defaults a missing user_id to "unknown"; we record the caller instead.
    assert stamp(path, {"experiment_id": "1"}) == {"experiment_id": "1", "user_id": ME}


@pytest.mark.parametrize(
    "path",
    [
        "/api/2.0/mlflow/runs/set-tag",
        "/api/2.0/mlflow/experiments/set-experiment-tag",
        "/api/2.0/mlflow/registered-models/set-tag",
        "/api/2.0/mlflow/model-versions/set-tag",
        "/api/3.0/mlflow/gateway/endpoints/set-tag",
    ],
)
def test_set_tag_may_only_name_the_caller(path: str) -> None:
    with pytest.raises(AuthorshipViolation, match="Only the authenticated caller"):
        stamp(path, {"run_id": "r", "key": USER, "value": FORGED})
    with pytest.raises(AuthorshipViolation):
        stamp(path, {"run_id": "r", "key": USER})  # absent value is "" to MLflow
    assert stamp(path, {"run_id": "r", "key": USER, "value": ME}) is None
    assert stamp(path, {"run_id": "r", "key": "team", "value": FORGED}) is None


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PATCH", "/api/3.0/mlflow/traces/tr-1/tags"),
        ("PATCH", "/api/2.0/mlflow/traces/tr-1/tags"),
    ],
)
def test_set_trace_tag_may_only_name_the_caller(method: str, path: str) -> None:
    with pytest.raises(AuthorshipViolation):
        stamp(path, {"key": USER, "value": FORGED}, method)
    assert stamp(path, {"key": USER, "value": ME}, method) is None
    # `mlflow.trace.user` is the traced application's end user, not the author.
    assert stamp(path, {"key": "mlflow.trace.user", "value": FORGED}, method) is None


def test_log_batch_checks_tags_and_leaves_the_body_alone() -> None:
    path = "/api/2.0/mlflow/runs/log-batch"
    metrics = [{"key": "loss", "value": 0.1, "timestamp": 1, "step": 0}]
    assert stamp(path, {"run_id": "r", "metrics": metrics, "tags": [tag(USER, ME)]}) is None
    with pytest.raises(AuthorshipViolation):
        stamp(path, {"run_id": "r", "metrics": metrics, "tags": [tag("a", "b"), tag(USER, "x")]})


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/2.0/mlflow/runs/delete-tag"),
        ("POST", "/api/2.0/mlflow/experiments/delete-experiment-tag"),
        ("DELETE", "/api/2.0/mlflow/registered-models/delete-tag"),
        ("DELETE", "/api/2.0/mlflow/model-versions/delete-tag"),
        ("DELETE", "/api/3.0/mlflow/traces/tr-1/tags"),
        ("DELETE", "/api/2.0/mlflow/traces/tr-1/tags"),
        ("DELETE", "/api/3.0/mlflow/gateway/endpoints/delete-tag"),
    ],
)
def test_author_tag_cannot_be_deleted(method: str, path: str) -> None:
    with pytest.raises(AuthorshipViolation, match="cannot be deleted"):
        stamp(path, {"key": USER}, method)
    assert stamp(path, {"key": "team"}, method) is None


@pytest.mark.parametrize(
    "path", ["/api/2.0/mlflow/logged-models/m-1/tags/", "/api/3.0/mlflow/datasets/d-1/tags/"]
)
def test_author_tag_in_the_url_cannot_be_deleted(path: str) -> None:
    with pytest.raises(AuthorshipViolation, match="cannot be deleted"):
        stamp_authorship(path + USER, "DELETE", b"", ME)
    with pytest.raises(AuthorshipViolation):
        stamp_authorship(path + "MLflow.User", "DELETE", b"", ME)
    assert stamp_authorship(path + "team", "DELETE", b"", ME) is None


# --------------------------------------------------------------------------------------------
# Experiments, registered models, model versions, prompts, logged models
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/api/2.0/mlflow/model-versions/create", "/api/3.0/mlflow/prompt-optimization/jobs"],
)
def test_entities_without_a_native_author_have_forged_tags_overwritten_not_inserted(
    path: str,
) -> None:
    body = {"name": "p", "tags": [tag("mlflow.prompt.is_prompt", "true"), tag(USER, FORGED)]}
    assert stamp(path, body) == {
        "name": "p",
        "tags": [tag("mlflow.prompt.is_prompt", "true"), tag(USER, ME)],
    }
    assert stamp(path, {"name": "p", "tags": [tag("a", "b")]}) is None


@pytest.mark.parametrize(
    "path", ["/api/2.0/mlflow/experiments/create", "/api/2.0/mlflow/registered-models/create"]
)
def test_experiments_and_registered_models_record_their_creator_as_owner(path: str) -> None:
    forged = {"name": "p", "tags": [tag("a", "b"), tag(USER, FORGED)]}
    assert stamp(path, forged) == {"name": "p", "tags": [tag("a", "b"), tag(USER, ME)]}
    assert stamp(path, {"name": "p", "tags": [tag("a", "b")]}) == {
        "name": "p",
        "tags": [tag("a", "b"), tag(USER, ME)],
    }
    assert values(stamp(path, {"name": "p"})["tags"]) == [ME]


def test_logged_model_create_stamps_and_inserts_the_author_tag() -> None:
    path = "/api/2.0/mlflow/logged-models"
    out = stamp(path, {"experiment_id": "1", "tags": [tag(USER, FORGED)], "params": []})
    assert out == {"experiment_id": "1", "tags": [tag(USER, ME)], "params": []}
    assert values(stamp(path, {"experiment_id": "1"})["tags"]) == [ME]


def test_logged_model_set_tags_checks() -> None:
    path = "/api/2.0/mlflow/logged-models/m-1/tags"
    with pytest.raises(AuthorshipViolation):
        stamp(path, {"tags": [tag(USER, FORGED)]}, "PATCH")
    assert stamp(path, {"tags": [tag(USER, ME), tag("a", "b")]}, "PATCH") is None


# --------------------------------------------------------------------------------------------
# Traces and assessments
# --------------------------------------------------------------------------------------------

TRACES_V3 = "/api/3.0/mlflow/traces"


def trace_body(metadata: dict[str, str], tags: dict[str, str], assessments: list) -> dict:
    return {
        "trace": {
            "trace_info": {
                "trace_id": "tr-" + "a" * 32,
                "trace_location": {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {}},
                "request_time": "2025-01-01T00:00:00Z",
                "state": "OK",
                "trace_metadata": metadata,
                "tags": tags,
                "assessments": assessments,
            }
        }
    }


def human(source_id: str | None, source_type: Any = "HUMAN") -> dict:
    source = {"source_type": source_type}
    if source_id is not None:
        source["source_id"] = source_id
    return {"assessment_name": "ok", "source": source, "feedback": {"value": True}}


def test_start_trace_v3_stamps_author_metadata_tags_and_human_feedback() -> None:
    body = trace_body(
        {USER: FORGED, "mlflow.trace.user": "customer-42", "mlflow.auth.username": FORGED},
        {USER: FORGED, "team": "x"},
        [human(FORGED), human("gpt-4o", "LLM_JUDGE")],
    )
    out = stamp(TRACES_V3, body)["trace"]["trace_info"]
    assert out["trace_metadata"] == {
        USER: ME,
        "mlflow.trace.user": "customer-42",  # end user of the traced app: preserved
        "mlflow.auth.username": ME,
    }
    assert out["tags"] == {USER: ME, "team": "x"}
    assert out["assessments"][0]["source"] == {"source_type": "HUMAN", "source_id": ME}
    assert out["assessments"][1]["source"] == {"source_type": "LLM_JUDGE", "source_id": "gpt-4o"}


def test_start_trace_v3_inserts_author_metadata_only() -> None:
    out = stamp(TRACES_V3, trace_body({}, {}, []))["trace"]["trace_info"]
    assert out["trace_metadata"] == {USER: ME}
    assert out["tags"] == {}


def test_start_trace_v3_camel_case() -> None:
    body = {"trace": {"traceInfo": {"traceId": "tr-1", "traceMetadata": {USER: FORGED}}}}
    out = stamp(TRACES_V3, body)
    assert out == {"trace": {"traceInfo": {"traceId": "tr-1", "traceMetadata": {USER: ME}}}}


def test_start_trace_v3_refuses_both_spellings_and_auth_user_id() -> None:
    both = {"trace": {"trace_info": {"trace_metadata": {}, "traceMetadata": {USER: FORGED}}}}
    with pytest.raises(AuthorshipViolation, match="both"):
        stamp(TRACES_V3, both)
    with pytest.raises(AuthorshipViolation, match=r"mlflow\.auth\.userId"):
        stamp(TRACES_V3, trace_body({"mlflow.auth.userId": "7"}, {}, []))


@pytest.mark.parametrize("source_type", ["HUMAN", 1, "1"])
def test_create_assessment_human_source_is_the_caller(source_type: Any) -> None:
    path = "/api/3.0/mlflow/traces/tr-1/assessments"
    out = stamp(path, {"assessment": human(FORGED, source_type)})
    assert out["assessment"]["source"]["source_id"] == ME
    out = stamp(path, {"assessment": human(None, source_type)})
    assert out["assessment"]["source"]["source_id"] == ME


@pytest.mark.parametrize("source_type", ["LLM_JUDGE", "CODE", 2, "human", None])
def test_create_assessment_non_human_source_is_untouched(source_type: Any) -> None:
    path = "/api/3.0/mlflow/traces/tr-1/assessments"
    assert stamp(path, {"assessment": human("judge", source_type)}) is None


def test_start_trace_v2_and_end_trace_v2() -> None:
    body = {
        "experiment_id": "1",
        "request_metadata": [tag(USER, FORGED), tag("mlflow.trace.user", "c")],
        "tags": [tag(USER, FORGED)],
    }
    out = stamp("/api/2.0/mlflow/traces", body)
    assert out["request_metadata"] == [tag(USER, ME), tag("mlflow.trace.user", "c")]
    assert out["tags"] == [tag(USER, ME)]
    assert values(stamp("/api/2.0/mlflow/traces", {})["request_metadata"]) == [ME]

    end = stamp("/api/2.0/mlflow/traces/tr-1", body, "PATCH")
    assert end["request_metadata"] == [tag(USER, ME), tag("mlflow.trace.user", "c")]
    assert stamp("/api/2.0/mlflow/traces/tr-1", {"status": "OK"}, "PATCH") is None


# --------------------------------------------------------------------------------------------
# Evaluation datasets, issues, review queues, AI gateway
# --------------------------------------------------------------------------------------------


def test_dataset_create_stamps_json_encoded_tags() -> None:
    path = "/api/3.0/mlflow/datasets/create"
    out = stamp(path, {"name": "d", "created_by": FORGED, "tags": json.dumps({USER: FORGED})})
    assert out["created_by"] == ME
    assert json.loads(out["tags"]) == {USER: ME}
    out = stamp(path, {"name": "d"})
    assert out == {"name": "d", "tags": json.dumps({USER: ME})}
    with pytest.raises(AuthorshipViolation, match="malformed"):
        stamp(path, {"name": "d", "tags": "{not json"})
    with pytest.raises(AuthorshipViolation, match="malformed"):
        stamp(path, {"name": "d", "tags": json.dumps([USER])})


def test_dataset_set_tags_checks() -> None:
    path = "/api/3.0/mlflow/datasets/d-1/tags"
    with pytest.raises(AuthorshipViolation):
        stamp(path, {"tags": json.dumps({USER: FORGED})}, "PATCH")
    assert stamp(path, {"tags": json.dumps({USER: ME, "a": "b"})}, "PATCH") is None
    assert stamp(path, {"tags": json.dumps({USER: None})}, "PATCH") is None  # store skips None


def test_dataset_records_are_attributed_to_the_caller() -> None:
    path = "/api/3.0/mlflow/datasets/d-1/records"
    records = [{"inputs": {"q": 1}, "tags": {USER: FORGED, "k": "v"}}, {"inputs": {"q": 2}}]
    out = stamp(path, {"records": json.dumps(records), "updated_by": FORGED})
    assert out["updated_by"] == ME
    assert json.loads(out["records"]) == [
        {"inputs": {"q": 1}, "tags": {USER: ME, "k": "v"}},
        {"inputs": {"q": 2}, "tags": {USER: ME}},
    ]
    with pytest.raises(AuthorshipViolation, match="malformed"):
        stamp(path, {"records": json.dumps({"not": "a list"})})


def test_issue_created_by() -> None:
    path = "/api/3.0/mlflow/issues"
    assert stamp(path, {"name": "i", "created_by": FORGED})["created_by"] == ME
    assert stamp(path, {"name": "i", "createdBy": FORGED}) == {"name": "i", "createdBy": ME}
    assert stamp(path, {"name": "i"}) == {"name": "i", "created_by": ME}


def test_review_item_completed_by() -> None:
    path = "/api/3.0/mlflow/review-queues/items/set-status"
    out = stamp(path, {"queue_id": "q", "item_id": "i", "status": "COMPLETE", "completed_by": "x"})
    assert out["completed_by"] == ME
    assert stamp(path, {"queue_id": "q", "item_id": "i", "status": 3})["completed_by"] == ME
    # Reopening clears attribution; the store refuses any completed_by there.
    assert stamp(path, {"queue_id": "q", "item_id": "i", "status": "PENDING"}) is None


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/3.0/mlflow/gateway/secrets/create", "created_by"),
        ("/api/3.0/mlflow/gateway/secrets/update", "updated_by"),
        ("/api/3.0/mlflow/gateway/endpoints/create", "created_by"),
        ("/api/3.0/mlflow/gateway/endpoints/update", "updated_by"),
        ("/api/3.0/mlflow/gateway/model-definitions/create", "created_by"),
        ("/api/3.0/mlflow/gateway/model-definitions/update", "updated_by"),
        ("/api/3.0/mlflow/gateway/endpoints/models/attach", "created_by"),
        ("/api/3.0/mlflow/gateway/endpoints/bindings/create", "created_by"),
        ("/api/3.0/mlflow/gateway/budgets/create", "created_by"),
        ("/api/3.0/mlflow/gateway/budgets/update", "updated_by"),
    ],
)
def test_gateway_objects_record_the_caller(path: str, field: str) -> None:
    assert stamp(path, {field: FORGED})[field] == ME
    assert stamp(path, {})[field] == ME


# --------------------------------------------------------------------------------------------
# Body decoding and routing
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body", [b"{", b"[1, 2]", b"42", b'"not an object"', b"\xff\xfe{", b'{"tags": {"a": 1}}']
)
def test_malformed_body_on_a_recording_endpoint_is_refused(body: bytes) -> None:
    with pytest.raises(AuthorshipViolation, match="malformed"):
        stamp_authorship(RUNS_CREATE, "POST", body, ME)


def test_absurdly_nested_body_is_refused_not_crashed() -> None:
    body = b'{"experiment_id": "1", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(AuthorshipViolation, match="malformed"):
        stamp_authorship(RUNS_CREATE, "POST", body, ME)


def test_check_only_routes_do_not_reparse_large_bodies() -> None:
    # log-batch is the training-loop hot path: checking tags must not cost a proto parse, and
    # a body MLflow itself will judge passes through untouched.
    metrics = [{"key": "m", "value": "not-a-number", "timestamp": 1}] * 1000
    assert stamp("/api/2.0/mlflow/runs/log-batch", {"run_id": "r", "metrics": metrics}) is None


def test_body_that_mlflow_would_only_partly_parse_is_refused() -> None:
    # MLflow swallows ParseError and acts on the fields parsed before it; the stamp could be lost.
    with pytest.raises(AuthorshipViolation, match="not a valid CreateRun"):
        stamp(RUNS_CREATE, {"experiment_id": "1", "[ext.user]": 1})
    # where MLflow's schema for the message finds the fault, the refusal is in its words
    with pytest.raises(BadRequest, match="Invalid value \"x\" for parameter 'start_time'"):
        stamp(RUNS_CREATE, {"experiment_id": "1", "[ext.user]": 1, "start_time": "x"})


@pytest.mark.parametrize("body", [b"", b"  \n", b"null", b'"null"'])
def test_empty_body_is_the_empty_object_as_in_mlflow(body: bytes) -> None:
    assert stamp(RUNS_CREATE, body) == {"user_id": ME, "tags": [tag(USER, ME)]}


def test_double_encoded_body_is_decoded_like_mlflow() -> None:
    inner = json.dumps({"experiment_id": "1", "user_id": FORGED})
    assert stamp(RUNS_CREATE, json.dumps(inner).encode())["user_id"] == ME


def test_utf16_and_bom_bodies_decode_like_flask() -> None:
    body = json.dumps({"experiment_id": "1", "user_id": FORGED})
    assert stamp(RUNS_CREATE, body.encode("utf-16"))["user_id"] == ME
    assert stamp(RUNS_CREATE, b"\xef\xbb\xbf" + body.encode())["user_id"] == ME


def test_lower_case_method_is_routed_like_werkzeug() -> None:
    assert stamp(RUNS_CREATE, {"user_id": FORGED}, method="post")["user_id"] == ME


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/2.0/mlflow/runs/get"),
        ("GET", RUNS_CREATE),  # wrong method: Flask answers 405
        ("POST", "/api/2.0/mlflow/runs/log-metric"),
        ("POST", "/api/2.0/mlflow/runs/create/"),  # Werkzeug 404s a stray trailing slash
        ("POST", "/api/2.0/mlflow/unknown"),
        ("PATCH", "/api/2.0/mlflow/traces//tags"),  # empty segment never matches <param>
        ("POST", "/health"),
    ],
)
def test_unrelated_requests_pass_through_without_parsing(method: str, path: str) -> None:
    assert stamp_authorship(path, method, b"{definitely not json", ME) is None


def test_requires_a_principal() -> None:
    with pytest.raises(ValueError, match="principal"):
        stamp_authorship(RUNS_CREATE, "POST", b"{}", "")


# --------------------------------------------------------------------------------------------
# Fidelity: MLflow's own parser sees exactly what we stamped
# --------------------------------------------------------------------------------------------


def _meta(entries: Any, key: str = USER) -> list[str]:
    if hasattr(entries, "items"):
        return [v for k, v in entries.items() if k == key]
    return [e.value for e in entries if e.key == key]


def _trace_v3_authors(m: Any) -> list[str]:
    info = m.trace.trace_info
    human_ids = [a.source.source_id for a in info.assessments if a.source.source_type == 1]
    return [
        *_meta(info.trace_metadata),
        *_meta(info.trace_metadata, "mlflow.auth.username"),
        *_meta(info.tags),
        *human_ids,
    ]


def _dataset_records_authors(m: Any) -> list[str]:
    return [m.updated_by] + [r["tags"][USER] for r in json.loads(m.records)]


FIDELITY: list[tuple[str, str, str, dict, type[Message], Callable[[Any], list[str]], int]] = [
    # (id, method, path, forged body, request proto, authors MLflow will read, how many)
    (
        "create_run",
        "POST",
        RUNS_CREATE,
        {"experiment_id": "1", "user_id": FORGED, "tags": [tag(USER, FORGED)]},
        service_pb2.CreateRun,
        lambda m: [m.user_id, *_meta(m.tags)],
        2,
    ),
    (
        "create_run_empty",
        "POST",
        RUNS_CREATE,
        {"experiment_id": "1"},
        service_pb2.CreateRun,
        lambda m: [m.user_id, *_meta(m.tags)],
        2,
    ),
    (
        "create_experiment",
        "POST",
        "/api/2.0/mlflow/experiments/create",
        {"name": "e", "tags": [tag(USER, FORGED)]},
        service_pb2.CreateExperiment,
        lambda m: _meta(m.tags),
        1,
    ),
    (
        "create_registered_model",
        "POST",
        "/api/2.0/mlflow/registered-models/create",
        {"name": "p", "tags": [tag("mlflow.prompt.is_prompt", "true"), tag(USER, FORGED)]},
        model_registry_pb2.CreateRegisteredModel,
        lambda m: _meta(m.tags),
        1,
    ),
    (
        "create_model_version",
        "POST",
        "/api/2.0/mlflow/model-versions/create",
        {"name": "p", "source": "s", "tags": [tag(USER, FORGED)]},
        model_registry_pb2.CreateModelVersion,
        lambda m: _meta(m.tags),
        1,
    ),
    (
        "create_logged_model",
        "POST",
        "/api/2.0/mlflow/logged-models",
        {"experiment_id": "1", "source_run_id": "r"},
        service_pb2.CreateLoggedModel,
        lambda m: _meta(m.tags),
        1,
    ),
    (
        "start_trace_v3",
        "POST",
        TRACES_V3,
        trace_body({USER: FORGED, "mlflow.auth.username": FORGED}, {USER: FORGED}, [human(FORGED)]),
        service_pb2.StartTraceV3,
        _trace_v3_authors,
        4,
    ),
    (
        "create_assessment",
        "POST",
        "/api/3.0/mlflow/traces/tr-1/assessments",
        {"assessment": human(FORGED)},
        service_pb2.CreateAssessment,
        lambda m: [m.assessment.source.source_id],
        1,
    ),
    (
        "start_trace_v2",
        "POST",
        "/api/2.0/mlflow/traces",
        {"experiment_id": "1", "request_metadata": [], "tags": [tag(USER, FORGED)]},
        service_pb2.StartTrace,
        lambda m: [*_meta(m.request_metadata), *_meta(m.tags)],
        2,
    ),
    (
        "end_trace_v2",
        "PATCH",
        "/api/2.0/mlflow/traces/tr-1",
        {"request_metadata": [tag(USER, FORGED)], "tags": [tag(USER, FORGED)]},
        service_pb2.EndTrace,
        lambda m: [*_meta(m.request_metadata), *_meta(m.tags)],
        2,
    ),
    (
        "create_dataset",
        "POST",
        "/api/3.0/mlflow/datasets/create",
        {"name": "d", "created_by": FORGED, "tags": json.dumps({USER: FORGED})},
        service_pb2.CreateDataset,
        lambda m: [m.created_by, json.loads(m.tags)[USER]],
        2,
    ),
    (
        "upsert_dataset_records",
        "POST",
        "/api/3.0/mlflow/datasets/d-1/records",
        {"records": json.dumps([{"inputs": {"q": 1}}]), "updated_by": FORGED},
        service_pb2.UpsertDatasetRecords,
        _dataset_records_authors,
        2,
    ),
    (
        "create_issue",
        "POST",
        "/api/3.0/mlflow/issues",
        {"experiment_id": "1", "name": "i", "description": "d", "created_by": FORGED},
        issues_pb2.CreateIssue,
        lambda m: [m.created_by],
        1,
    ),
    (
        "review_item_status",
        "POST",
        "/api/3.0/mlflow/review-queues/items/set-status",
        {"queue_id": "q", "item_id": "i", "status": "COMPLETE", "completed_by": FORGED},
        review_queues_pb2.SetReviewQueueItemStatus,
        lambda m: [m.completed_by],
        1,
    ),
    (
        "gateway_secret",
        "POST",
        "/api/3.0/mlflow/gateway/secrets/create",
        {"secret_name": "s", "created_by": FORGED},
        service_pb2.CreateGatewaySecret,
        lambda m: [m.created_by],
        1,
    ),
    (
        "gateway_budget_update",
        "POST",
        "/api/3.0/mlflow/gateway/budgets/update",
        {"budget_policy_id": "b", "updated_by": FORGED},
        service_pb2.UpdateGatewayBudgetPolicy,
        lambda m: [m.updated_by],
        1,
    ),
    (
        "prompt_optimization_job",
        "POST",
        "/api/3.0/mlflow/prompt-optimization/jobs",
        {"experiment_id": "1", "tags": [tag(USER, FORGED)]},
        service_pb2.CreatePromptOptimizationJob,
        lambda m: _meta(m.tags),
        1,
    ),
]


def _camelize(value: Any) -> Any:
    """Every JSON key with an underscore in its lowerCamel proto JSON name (map keys in our
    fixtures have none, and the JSON-encoded string fields are left as they are)."""
    if isinstance(value, dict):
        return {
            re.sub(r"_([a-z])", lambda m: m.group(1).upper(), k): _camelize(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_camelize(v) for v in value]
    return value


@pytest.mark.parametrize("spelling", ["proto_name", "json_name"])
@pytest.mark.parametrize(
    ("method", "path", "body", "message", "authors", "count"),
    [case[1:] for case in FIDELITY],
    ids=[case[0] for case in FIDELITY],
)
def test_mlflow_parses_the_principal_from_the_stamped_body(
    spelling: str,
    method: str,
    path: str,
    body: dict,
    message: type[Message],
    authors: Callable[[Any], list[str]],
    count: int,
) -> None:
    from mlflow.server.handlers import _reject_conflicting_field_aliases

    sent = _camelize(body) if spelling == "json_name" else body
    out = stamp_authorship(path, method, json.dumps(sent).encode(), ME)
    assert out is not None
    stamped = json.loads(out)
    _reject_conflicting_field_aliases(stamped, message.DESCRIPTOR)  # MLflow accepts the body
    parsed = message()
    parse_dict(stamped, parsed)  # ... and parses all of it, as the handler does
    assert authors(parsed) == [ME] * count


def test_every_rewriting_endpoint_has_a_fidelity_case() -> None:
    covered = {(case[1], re.sub(r"tr-1|d-1", "*", case[2])) for case in FIDELITY}
    rewriting = {key for key, endpoint in ENDPOINTS.items() if endpoint.message and endpoint.stamps}
    gateway = {key for key in rewriting if "/gateway/" in key[1]}  # one shape, two cases
    assert rewriting - covered - gateway == set()


# --------------------------------------------------------------------------------------------
# Routing fidelity and census against the installed MLflow
# --------------------------------------------------------------------------------------------


def _concrete(path: str) -> str:
    return path.replace("*", "x-1")


RAW_HANDLERS = {
    "/api/2.0/mlflow/runs/create-promptlab-run": "serve_create_promptlab_run",
}


@pytest.mark.parametrize(("method", "path"), sorted(ENDPOINTS), ids=lambda v: str(v))
def test_table_routes_are_the_flask_routes_we_think_they_are(method: str, path: str) -> None:
    from mlflow.server import app
    from mlflow.server.handlers import HANDLERS

    by_message = {cls: handler.__name__ for cls, handler in HANDLERS.items()}
    urls = app.url_map.bind("localhost")
    endpoint = ENDPOINTS[(method, path)]
    twins = [_concrete(path).replace("/api/", "/ajax-api/", 1)]
    if path not in RAW_HANDLERS:
        twins.append(_concrete(path))
    for url in twins:
        name, _ = urls.match(url, method=method)
        if endpoint.message is None:
            assert name == RAW_HANDLERS[path]
        else:
            assert name == by_message[endpoint.message]


AUTHORISH = {"user_id", "created_by", "updated_by", "completed_by", "source_id", "user", "users"}
AUTHORISH |= {"new_owner", "tags", "trace_metadata", "request_metadata", "key", "records"}

# Routes whose request carries an author-looking field but needs no stamping, and why.
REVIEWED: dict[tuple[str, str], str] = {
    ("POST", "/api/2.0/mlflow/runs/log-metric"): "key is a metric name",
    ("POST", "/api/2.0/mlflow/runs/log-parameter"): "key is a param name",
    ("POST", "/api/2.0/mlflow/logged-models/<model_id>/params"): "key is a param name",
    ("POST", "/api/2.0/mlflow/runs/log-inputs"): "input tags (mlflow.data.context) only",
    ("PATCH", "/api/3.0/mlflow/traces/<trace_id>/assessments/<assessment_id>"): (
        "the store keeps the existing source; it cannot be changed"
    ),
    ("POST", "/api/3.0/mlflow/review-queues/create"): (
        "handler ignores created_by (uses flask.g.mlflow_authenticated_user)"
    ),
    ("POST", "/api/3.0/mlflow/review-queues/get-or-create-user"): (
        "user names whose queue it is: an authorisation question"
    ),
    ("POST", "/api/3.0/mlflow/review-queues/update"): "new_owner/users: authorisation",
    ("PUT", "/api/3.0/mlflow/scorers/online-config"): "no user field",
    ("POST", "/api/2.0mlflow/experiments/search-datasets"): "not implemented",
    ("POST", "/graphql"): "queries and search mutations only",
}


def _authorish_fields(descriptor: Any, seen: tuple[str, ...] = ()) -> set[str]:
    found = set()
    for field in descriptor.fields:
        if field.name in AUTHORISH:
            found.add(field.name)
        nested = field.message_type
        if (
            nested is not None
            and nested.full_name not in seen
            and not nested.full_name.startswith("google.protobuf.")
            and not nested.GetOptions().map_entry
        ):
            found |= _authorish_fields(nested, (*seen, nested.full_name))
    return found


def _mlflow_write_routes() -> Iterator[tuple[str, str, Any]]:
    from mlflow.server.handlers import HANDLERS, get_endpoints

    message_of = {handler: cls for cls, handler in HANDLERS.items()}
    for path, handler, methods in get_endpoints():
        if path.startswith("/ajax-api/"):
            continue
        for method in methods:
            if method != "GET":
                yield method, path, message_of.get(handler)


def test_census_every_author_bearing_mlflow_route_is_stamped_or_reviewed() -> None:
    unreviewed = []
    for method, path, message in _mlflow_write_routes():
        if message is not None and not _authorish_fields(message.DESCRIPTOR):
            continue
        if (method, path) in REVIEWED:
            continue
        if find_endpoint(re.sub(r"<(?:path:)?\w+>", "x-1", path), method) is None:
            unreviewed.append((method, path))
    assert unreviewed == []


# --------------------------------------------------------------------------------------------
# Round trip through MLflow's real handlers and a SQLite store
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mlflow_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    import mlflow.server.handlers as handlers
    from mlflow.server import app

    root: Path = tmp_path_factory.mktemp("mlflow")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("_MLFLOW_SERVER_FILE_STORE", f"sqlite:///{root / 'mlflow.db'}")
        patch.setenv("_MLFLOW_SERVER_ARTIFACT_ROOT", str(root / "artifacts"))
        patch.setattr(handlers, "_tracking_store", None)
        patch.setattr(handlers, "_model_registry_store", None)
        yield app.test_client()


def _send(client: Any, method: str, path: str, body: dict) -> Any:
    stamped = stamp_authorship(path, method, json.dumps(body).encode(), ME)
    data = stamped if stamped is not None else json.dumps(body).encode()
    response = client.open(path, method=method, data=data, content_type="application/json")
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


@pytest.fixture(scope="module")
def experiment_id(mlflow_client: Any) -> str:
    body = {"name": f"authorship-{uuid.uuid4().hex}"}
    return _send(mlflow_client, "POST", "/api/2.0/mlflow/experiments/create", body)["experiment_id"]


def test_store_records_the_principal_for_a_forged_run(mlflow_client: Any, experiment_id: str):
    body = {"experimentId": experiment_id, "userId": FORGED, "tags": [tag(USER, FORGED)]}
    run = _send(mlflow_client, "POST", RUNS_CREATE, body)["run"]
    assert run["info"]["user_id"] == ME
    assert values(run["data"]["tags"]) == [ME]


def test_store_records_the_principal_for_a_logged_model(mlflow_client: Any, experiment_id: str):
    body = {"experiment_id": experiment_id, "tags": [tag(USER, FORGED)]}
    model = _send(mlflow_client, "POST", "/api/2.0/mlflow/logged-models", body)["model"]
    assert values(model["info"]["tags"]) == [ME]


def test_store_records_the_principal_for_a_trace_and_human_feedback(
    mlflow_client: Any, experiment_id: str
) -> None:
    body = trace_body({USER: FORGED, "mlflow.trace.user": "customer-42"}, {}, [])
    trace_id = "tr-" + uuid.uuid4().hex
    info = body["trace"]["trace_info"]
    info["trace_id"] = trace_id
    info["trace_location"]["mlflow_experiment"]["experiment_id"] = experiment_id
    _send(mlflow_client, "POST", TRACES_V3, body)
    fetched = mlflow_client.get(f"/api/3.0/mlflow/traces/{trace_id}").get_json()
    metadata = fetched["trace"]["trace_info"]["trace_metadata"]
    assert metadata[USER] == ME
    assert metadata["mlflow.trace.user"] == "customer-42"

    path = f"/api/3.0/mlflow/traces/{trace_id}/assessments"
    created = _send(mlflow_client, "POST", path, {"assessment": human(FORGED)})
    assert created["assessment"]["source"] == {"source_type": "HUMAN", "source_id": ME}


def test_store_records_the_principal_for_a_dataset(mlflow_client: Any, experiment_id: str):
    body = {"name": "d", "experiment_ids": [experiment_id], "tags": json.dumps({USER: FORGED})}
    dataset = _send(mlflow_client, "POST", "/api/3.0/mlflow/datasets/create", body)["dataset"]
    assert dataset["created_by"] == ME
    path = f"/api/3.0/mlflow/datasets/{dataset['dataset_id']}/records"
    records = [{"inputs": {"q": "1"}, "tags": {USER: FORGED}}]
    _send(mlflow_client, "POST", path, {"records": json.dumps(records)})
    fetched = mlflow_client.get(f"/api/3.0/mlflow/datasets/{dataset['dataset_id']}").get_json()
    assert fetched["dataset"]["last_updated_by"] == ME


# --------------------------------------------------------------------------------------------
# OTLP ingestion (/v1/traces): refused, not rewritten
# --------------------------------------------------------------------------------------------


def otlp(attributes: dict[str, str]) -> ExportTraceServiceRequest:
    span = Span(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name="root")
    span.attributes.extend(
        KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in attributes.items()
    )
    scope = ScopeSpans(spans=[span])
    return ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[scope])])


@pytest.mark.parametrize("key", ["mlflow.traceTag.mlflow.user", "mlflow.traceTag.MLflow.User"])
def test_otlp_author_tag_attribute_is_refused(key: str) -> None:
    payload = otlp({key: FORGED}).SerializeToString()
    with pytest.raises(AuthorshipViolation, match=r"mlflow\.traceTag\.mlflow\.user"):
        refuse_otlp_authorship(payload, "application/x-protobuf", None)
    with pytest.raises(AuthorshipViolation):
        refuse_otlp_authorship(gzip.compress(payload), "application/x-protobuf", "GZIP")


def test_otlp_json_author_tag_attribute_is_refused() -> None:
    body = {
        "resourceSpans": [
            {
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": "01" * 16,
                                "spanId": "02" * 8,
                                "name": "root",
                                "attributes": [
                                    {
                                        "key": "mlflow.traceTag.mlflow.user",
                                        "value": {"stringValue": FORGED},
                                    }
                                ],
                            }
                        ]
                    }
                ]
            }
        ]
    }
    with pytest.raises(AuthorshipViolation):
        refuse_otlp_authorship(json.dumps(body).encode(), "application/json; charset=utf-8", None)


def test_otlp_end_user_and_ordinary_attributes_are_allowed() -> None:
    payload = otlp({"user.id": "customer-42", "mlflow.traceTag.team": "x"}).SerializeToString()
    refuse_otlp_authorship(payload, "application/x-protobuf", None)


@pytest.mark.parametrize(
    ("body", "content_type", "encoding"),
    [
        (b"\x00garbage", "application/x-protobuf", "gzip"),
        (b"{", "application/json", None),
        (b"{}", "text/plain", None),
        (b"{}", "application/json", "br"),
    ],
)
def test_otlp_payload_we_cannot_decode_is_refused(
    body: bytes, content_type: str, encoding: str | None
) -> None:
    with pytest.raises(AuthorshipViolation, match="malformed"):
        refuse_otlp_authorship(body, content_type, encoding)
