"""MLflow's own refusals that its handlers make before they read any store, made here first.

Resolution reads every id a request names, and a request that names none (or more than
resolution reads) would be refused in the plugin's words: "this run belongs to no project",
"names more than 100 resources". MLflow's clients and tests match on MLflow's words, and the
request changes nothing either way, so these checks, a pure function of the request, answer
first, exactly as the handler would (status, error code, message; a unit test compares each
with the installed MLflow's handler). They run after the canonical reading and before
resolution, and are recorded in the audit trail as refusals.

Each entry mirrors one handler's checks, in the handler's order, up to the first one that
needs the store; a check the handler makes later is left to it: its own checks before the
schema (`REFUSALS`), the schema of `_get_request_message` (mlflow_validation.py), then its
`..._impl`'s own checks before the store (`AFTER_SCHEMA`). Field names are proto names: the
canonical reading has folded their JSON aliases (`experimentIds`) already.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from mlflow_secure.request import mlflow_validation
from mlflow_secure.request.listings.core import JsonReply, mlflow_error

Check = Callable[[Mapping[str, Any]], str | None]  # the refusal's message, or None
SCHEMA_REASON = "the request does not pass MLflow's schema for it (MLflow's 400, in its words)"
SEE_DOCS = " See the API docs for more information about request parameters."


def _count(value: Any) -> int:
    if isinstance(value, list):
        return len(value)
    return 0 if value in (None, "") else 1


def required(field: str) -> Check:
    """`_get_request_message`'s `_assert_required`: absent, empty string or empty list."""
    return lambda params: (
        f"Missing value for required parameter '{field}'.{SEE_DOCS}"
        if _count(params.get(field)) == 0
        else None
    )


def given(field: str, message: str) -> Check:
    """A handler's own `if not value: raise ...` (absent, empty, empty list)."""
    return lambda params: message if _count(params.get(field)) == 0 else None


def absent(field: str, message: str) -> Check:
    """A handler's own `if value is None: raise ...` (an empty value passes)."""
    return lambda params: message if params.get(field) is None else None


def at_most(field: str, limit: int, message: str) -> Check:
    """A list longer than `limit`; `{n}` in the message is its length."""

    def check(params: Mapping[str, Any]) -> str | None:
        count = _count(params.get(field))
        return message.format(n=count) if count > limit else None

    return check


def safe_path(field: str) -> Check:
    """`validate_path_is_safe` on a path the handler joins to an artefact root (`..`,
    absolute paths, ...): MLflow checks it before it looks the resource up."""
    from mlflow.utils.uri import validate_path_is_safe

    def check(params: Mapping[str, Any]) -> str | None:
        value = params.get(field)
        if not isinstance(value, str):
            return None  # absent: the handler's own KeyError, after the look-up
        try:
            validate_path_is_safe(value)
        except MlflowException as exc:
            return exc.message
        return None

    return check


def _first(value: Any) -> Any:
    """What `request.args.get` gives for a repeated query parameter: its first value."""
    return value[0] if isinstance(value, list) and value else value


def step_range() -> Check:
    """`get_metric_history_bulk_interval_impl`: both steps or neither, in order (the schema
    has checked each is an integer)."""

    def check(params: Mapping[str, Any]) -> str | None:
        start, end = _first(params.get("start_step")), _first(params.get("end_step"))
        if start is not None and end is not None:
            if int(start) > int(end):
                return (
                    "end_step must be greater than start_step. "
                    f"Found start_step={int(start)} and end_step={int(end)}."
                )
            return None
        if start is not None or end is not None:
            return "If either start step or end step are specified, both must be specified."
        return None

    return check


_PROMPTLAB_FIELDS = (
    "experiment_id",
    "prompt_template",
    "prompt_parameters",
    "model_route",
    "model_input",
    "mlflow_version",
)

REFUSALS: dict[str, tuple[Check, ...]] = {
    "mlflow.experiments.search_datasets": (
        given("experiment_ids", "SearchDatasets request must specify at least one experiment_id."),
        at_most(
            "experiment_ids",
            20,
            "SearchDatasets request cannot specify more than 20 experiment_ids. "
            "Received {n} experiment_ids.",
        ),
    ),
    "mlflow.metrics.get_history_bulk": (
        given("run_id", "GetMetricHistoryBulk request must specify at least one run_id."),
        at_most(
            "run_id",
            100,
            "GetMetricHistoryBulk request cannot specify more than 100 run_ids. "
            "Received {n} run_ids.",
        ),
        absent("metric_key", "GetMetricHistoryBulk request must specify a metric_key."),
    ),
    "mlflow.metrics.get_history_bulk_interval": (
        required("run_ids"),
        at_most(
            "run_ids",
            100,
            "GetMetricHistoryBulkInterval request must specify at most 100 run_ids. "
            "Received {n} run_ids." + SEE_DOCS,
        ),
    ),
    "mlflow.runs.log_inputs": (required("run_id"),),
    "mlflow.artifacts.upload": (
        given("run_uuid", "Request must specify run_uuid."),
        given("path", "Request must specify path."),
    ),
    "mlflow.model_versions.get_artifact": (safe_path("path"),),
    "mlflow.runs.create_promptlab": tuple(
        given(field, f"CreatePromptlabRun request must specify {field}.")
        for field in _PROMPTLAB_FIELDS
    ),
}


# A handler's `..._impl` checks after the schema, before any store. Their messages may quote
# the request's values, so the audit trail records SCHEMA_REASON for them.
AFTER_SCHEMA: dict[str, tuple[Check, ...]] = {
    "mlflow.metrics.get_history_bulk_interval": (step_range(),),
}


def refused(endpoint: str, request: Any) -> tuple[JsonReply, str] | None:
    """MLflow's 400 for a canonical request its handler refuses before reading a store, with
    the audit reason (which never quotes a value), in the handler's order of checks."""
    invalid = refusal(endpoint, request.params)
    if invalid is not None:
        return invalid, invalid.reason()
    invalid = schema_refusal(request) or _checked(AFTER_SCHEMA.get(endpoint, ()), request.params)
    return (invalid, SCHEMA_REASON) if invalid is not None else None


def refusal(endpoint: str, params: Mapping[str, Any]) -> JsonReply | None:
    """MLflow's 400 for this request, if its handler refuses it before its schema."""
    return _checked(REFUSALS.get(endpoint, ()), params)


def _checked(checks: tuple[Check, ...], params: Mapping[str, Any]) -> JsonReply | None:
    for check in checks:
        message = check(params)
        if message is not None:
            return mlflow_error(MlflowException(message, error_code=INVALID_PARAMETER_VALUE))
    return None


def schema_refusal(request: Any) -> JsonReply | None:
    """MLflow's 400 for a canonical request its handler's schema refuses although it parses
    (mlflow_validation.schema_refusal: a required field missing, a value out of range)."""
    said = mlflow_validation.schema_refusal(request.message, request.message_json)
    if said is None:
        return None
    return JsonReply(400, json.dumps(said).encode())
