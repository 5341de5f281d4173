"""The authorship rules of every MLflow endpoint that records a user (one table)."""

from __future__ import annotations

from typing import Any

from mlflow.protos import issues_pb2, model_registry_pb2, review_queues_pb2, service_pb2

from mlflow_secure.request.authorship.rules import (
    AUTH_USER_ID,
    AUTH_USERNAME,
    AuthorDatasetRecords,
    AuthorEntries,
    AuthorField,
    AuthorTagPair,
    Endpoint,
    HumanAssessmentSource,
    NoAuthorKey,
    ReviewCompletedBy,
    Within,
)

JsonObject = dict[str, Any]

# --------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------

_TRACE_METADATA = (
    # Where MLflow's tracing client records the trace's author.
    AuthorEntries("trace_metadata", "map", "stamp", insert=True),
    AuthorEntries(
        "trace_metadata",
        "map",
        "stamp",
        keys=frozenset({AUTH_USERNAME}),
        refuse=frozenset({AUTH_USER_ID}),
    ),
    AuthorEntries("tags", "map", "stamp"),
)
_V2_TRACE_START = (
    AuthorEntries("request_metadata", "list", "stamp", insert=True),
    AuthorEntries(
        "request_metadata",
        "list",
        "stamp",
        keys=frozenset({AUTH_USERNAME}),
        refuse=frozenset({AUTH_USER_ID}),
    ),
    AuthorEntries("tags", "list", "stamp"),
)
# EndTrace re-sends start-time metadata and tags; stamp rather than refuse so v2 clients that
# echo their original `mlflow.user` keep working, while still only ever recording the caller.
_V2_TRACE_END = (
    AuthorEntries("request_metadata", "list", "stamp"),
    AuthorEntries(
        "request_metadata",
        "list",
        "stamp",
        keys=frozenset({AUTH_USERNAME}),
        refuse=frozenset({AUTH_USER_ID}),
    ),
    AuthorEntries("tags", "list", "stamp"),
)
_STAMP_TAGS = AuthorEntries("tags", "list", "stamp")
# Experiments and registered models get their creator recorded: the policy's notion of the
# owner of an experiment outside any project (MLflow itself records no author for them).
_OWNER_TAGS = AuthorEntries("tags", "list", "stamp", insert=True)
_CHECK_TAGS = AuthorEntries("tags", "list", "check")
_CREATED_BY = AuthorField("created_by")
_UPDATED_BY = AuthorField("updated_by")

# (method, path) -> rules. A `*` segment is one non-empty URL segment (a Flask <param>).
ENDPOINTS: dict[tuple[str, str], Endpoint] = {
    # Runs: user_id column (write-once) and the mlflow.user tag the UI shows.
    ("POST", "/api/2.0/mlflow/runs/create"): Endpoint(
        (AuthorField("user_id"), AuthorEntries("tags", "list", "stamp", insert=True)),
        service_pb2.CreateRun,
    ),
    # UI-only (ajax) route; raw JSON handler, `user_id` defaults to "unknown".
    ("POST", "/api/2.0/mlflow/runs/create-promptlab-run"): Endpoint((AuthorField("user_id"),)),
    ("POST", "/api/2.0/mlflow/runs/set-tag"): Endpoint((AuthorTagPair(),), service_pb2.SetTag),
    ("POST", "/api/2.0/mlflow/runs/log-batch"): Endpoint((_CHECK_TAGS,), service_pb2.LogBatch),
    ("POST", "/api/2.0/mlflow/runs/delete-tag"): Endpoint((NoAuthorKey(),), service_pb2.DeleteTag),
    # Experiments: MLflow records no author; a forged mlflow.user tag is still refused.
    ("POST", "/api/2.0/mlflow/experiments/create"): Endpoint(
        (_OWNER_TAGS,), service_pb2.CreateExperiment
    ),
    ("POST", "/api/2.0/mlflow/experiments/set-experiment-tag"): Endpoint(
        (AuthorTagPair(),), service_pb2.SetExperimentTag
    ),
    ("POST", "/api/2.0/mlflow/experiments/delete-experiment-tag"): Endpoint(
        (NoAuthorKey(),), service_pb2.DeleteExperimentTag
    ),
    # Registered models, model versions, and prompts (stored as both).
    ("POST", "/api/2.0/mlflow/registered-models/create"): Endpoint(
        (_OWNER_TAGS,), model_registry_pb2.CreateRegisteredModel
    ),
    ("POST", "/api/2.0/mlflow/registered-models/set-tag"): Endpoint(
        (AuthorTagPair(),), model_registry_pb2.SetRegisteredModelTag
    ),
    ("DELETE", "/api/2.0/mlflow/registered-models/delete-tag"): Endpoint(
        (NoAuthorKey(),), model_registry_pb2.DeleteRegisteredModelTag
    ),
    ("POST", "/api/2.0/mlflow/model-versions/create"): Endpoint(
        (_STAMP_TAGS,), model_registry_pb2.CreateModelVersion
    ),
    ("POST", "/api/2.0/mlflow/model-versions/set-tag"): Endpoint(
        (AuthorTagPair(),), model_registry_pb2.SetModelVersionTag
    ),
    ("DELETE", "/api/2.0/mlflow/model-versions/delete-tag"): Endpoint(
        (NoAuthorKey(),), model_registry_pb2.DeleteModelVersionTag
    ),
    # Logged models: MLflow's client always sends the mlflow.user tag.
    ("POST", "/api/2.0/mlflow/logged-models"): Endpoint(
        (AuthorEntries("tags", "list", "stamp", insert=True),), service_pb2.CreateLoggedModel
    ),
    ("PATCH", "/api/2.0/mlflow/logged-models/*/tags"): Endpoint(
        (_CHECK_TAGS,), service_pb2.SetLoggedModelTags
    ),
    ("DELETE", "/api/2.0/mlflow/logged-models/*/tags/*"): Endpoint(
        message=service_pb2.DeleteLoggedModelTag, path_key=-1
    ),
    # Traces, v3. StartTraceV3 is an upsert (it merges into an existing trace id).
    ("POST", "/api/3.0/mlflow/traces"): Endpoint(
        (
            Within(("trace", "trace_info"), _TRACE_METADATA),
            Within(("trace", "trace_info", "assessments[]"), (HumanAssessmentSource(),)),
        ),
        service_pb2.StartTraceV3,
    ),
    ("PATCH", "/api/3.0/mlflow/traces/*/tags"): Endpoint(
        (AuthorTagPair(),), service_pb2.SetTraceTagV3
    ),
    ("DELETE", "/api/3.0/mlflow/traces/*/tags"): Endpoint(
        (NoAuthorKey(),), service_pb2.DeleteTraceTagV3
    ),
    ("POST", "/api/3.0/mlflow/traces/*/assessments"): Endpoint(
        (Within(("assessment",), (HumanAssessmentSource(),)),), service_pb2.CreateAssessment
    ),
    # Traces, v2 (deprecated, still served).
    ("POST", "/api/2.0/mlflow/traces"): Endpoint(_V2_TRACE_START, service_pb2.StartTrace),
    ("PATCH", "/api/2.0/mlflow/traces/*"): Endpoint(_V2_TRACE_END, service_pb2.EndTrace),
    ("PATCH", "/api/2.0/mlflow/traces/*/tags"): Endpoint(
        (AuthorTagPair(),), service_pb2.SetTraceTag
    ),
    ("DELETE", "/api/2.0/mlflow/traces/*/tags"): Endpoint(
        (NoAuthorKey(),), service_pb2.DeleteTraceTag
    ),
    # Evaluation datasets: the store derives created_by / last_updated_by from mlflow.user in
    # the JSON-encoded tags; the proto's created_by / updated_by are ignored today.
    ("POST", "/api/3.0/mlflow/datasets/create"): Endpoint(
        (
            AuthorField("created_by", insert=False),
            AuthorEntries("tags", "json_map", "stamp", insert=True),
        ),
        service_pb2.CreateDataset,
    ),
    ("PATCH", "/api/3.0/mlflow/datasets/*/tags"): Endpoint(
        (AuthorEntries("tags", "json_map", "check"),), service_pb2.SetDatasetTags
    ),
    ("DELETE", "/api/3.0/mlflow/datasets/*/tags/*"): Endpoint(
        message=service_pb2.DeleteDatasetTag, path_key=-1
    ),
    ("POST", "/api/3.0/mlflow/datasets/*/records"): Endpoint(
        (AuthorField("updated_by", insert=False), AuthorDatasetRecords()),
        service_pb2.UpsertDatasetRecords,
    ),
    # Issues and review queues.
    ("POST", "/api/3.0/mlflow/issues"): Endpoint((_CREATED_BY,), issues_pb2.CreateIssue),
    ("POST", "/api/3.0/mlflow/review-queues/items/set-status"): Endpoint(
        (ReviewCompletedBy(),), review_queues_pb2.SetReviewQueueItemStatus
    ),
    # AI gateway configuration objects, stored with the client's created_by / updated_by.
    ("POST", "/api/3.0/mlflow/gateway/secrets/create"): Endpoint(
        (_CREATED_BY,), service_pb2.CreateGatewaySecret
    ),
    ("POST", "/api/3.0/mlflow/gateway/secrets/update"): Endpoint(
        (_UPDATED_BY,), service_pb2.UpdateGatewaySecret
    ),
    ("POST", "/api/3.0/mlflow/gateway/endpoints/create"): Endpoint(
        (_CREATED_BY,), service_pb2.CreateGatewayEndpoint
    ),
    ("POST", "/api/3.0/mlflow/gateway/endpoints/update"): Endpoint(
        (_UPDATED_BY,), service_pb2.UpdateGatewayEndpoint
    ),
    ("POST", "/api/3.0/mlflow/gateway/model-definitions/create"): Endpoint(
        (_CREATED_BY,), service_pb2.CreateGatewayModelDefinition
    ),
    ("POST", "/api/3.0/mlflow/gateway/model-definitions/update"): Endpoint(
        (_UPDATED_BY,), service_pb2.UpdateGatewayModelDefinition
    ),
    ("POST", "/api/3.0/mlflow/gateway/endpoints/models/attach"): Endpoint(
        (_CREATED_BY,), service_pb2.AttachModelToGatewayEndpoint
    ),
    ("POST", "/api/3.0/mlflow/gateway/endpoints/bindings/create"): Endpoint(
        (_CREATED_BY,), service_pb2.CreateGatewayEndpointBinding
    ),
    ("POST", "/api/3.0/mlflow/gateway/budgets/create"): Endpoint(
        (_CREATED_BY,), service_pb2.CreateGatewayBudgetPolicy
    ),
    ("POST", "/api/3.0/mlflow/gateway/budgets/update"): Endpoint(
        (_UPDATED_BY,), service_pb2.UpdateGatewayBudgetPolicy
    ),
    ("POST", "/api/3.0/mlflow/gateway/endpoints/set-tag"): Endpoint(
        (AuthorTagPair(),), service_pb2.SetGatewayEndpointTag
    ),
    ("DELETE", "/api/3.0/mlflow/gateway/endpoints/delete-tag"): Endpoint(
        (NoAuthorKey(),), service_pb2.DeleteGatewayEndpointTag
    ),
    ("POST", "/api/3.0/mlflow/prompt-optimization/jobs"): Endpoint(
        (_STAMP_TAGS,), service_pb2.CreatePromptOptimizationJob
    ),
}


def _index(
    table: dict[tuple[str, str], Endpoint],
) -> tuple[
    dict[tuple[str, str], Endpoint],
    dict[tuple[str, int], tuple[tuple[tuple[str, ...], Endpoint], ...]],
]:
    """Split the table into exact routes and, keyed by (method, segment count), the few
    parameterised ones, so the per-request cost is one or two dict lookups."""
    static: dict[tuple[str, str], Endpoint] = {}
    dynamic: dict[tuple[str, int], list[tuple[tuple[str, ...], Endpoint]]] = {}
    for (method, path), endpoint in table.items():
        segments = tuple(path.split("/"))
        if "*" in segments:
            dynamic.setdefault((method, len(segments)), []).append((segments, endpoint))
        else:
            static[(method, path)] = endpoint
    return static, {key: tuple(routes) for key, routes in dynamic.items()}


_STATIC, _DYNAMIC = _index(ENDPOINTS)
_METHODS = frozenset(method for method, _ in ENDPOINTS)


def find_endpoint(path: str, method: str) -> tuple[Endpoint, list[str]] | None:
    """The table entry for this route and the path's segments, or None. Exact routes win over
    parameterised ones, as in Werkzeug's router."""
    method = method.upper()  # Werkzeug upper-cases the method before routing; so must we
    if method not in _METHODS:
        return None
    endpoint = _STATIC.get((method, path))
    if endpoint is not None:
        return endpoint, path.split("/")
    routes = _DYNAMIC.get((method, path.count("/") + 1))
    if routes is None:
        return None
    segments = path.split("/")
    for pattern, endpoint in routes:
        if all(p == s or (p == "*" and s) for p, s in zip(pattern, segments, strict=True)):
            return endpoint, segments
    return None
