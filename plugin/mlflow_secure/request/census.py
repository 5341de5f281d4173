"""The route census: every route of the installed MLflow, mapped to what it does and touches.

The front door decides every request from a `RouteSpec`: which logical endpoint it is, the
access it needs, and where the resource it touches is named. A route missing from the table
cannot be decided, so it is denied at run time and, more usefully, stops start-up
(`require_complete`): an MLflow upgrade that adds a route fails loudly instead of leaving a
door nobody looked at. The table is literal data, written by reading each handler, never
guessed from handler names at run time.

Keys. `route_key` folds a live rule to the key the table uses: the `--static-prefix` is
stripped, `/ajax-api/` becomes `/api/` (MLflow registers most REST routes twice, and both
spellings run the same handler), and the method is upper-cased. Rules keep the spelling of
the router that owns them: Werkzeug's `<model_id>` for Flask, Starlette's `{job_id}` for the
FastAPI-native routes. HEAD on a rule that also has GET, and Flask's automatic OPTIONS
answer, are covered by the rule's other methods and never have entries of their own (see
`live_methods`); a HEAD or OPTIONS a view declares itself must be mapped like any method.

Ids. `RouteSpec.ids` names the request parameters that name the resource, in the order the
handler reads them:
- a bare name is a request parameter read the way `parse` says, or a URL path variable when
  the rule has one of that name (the path wins in MLflow's handlers, except where `note`
  says otherwise: a body that contradicts the path must be refused);
- `header:<name>` is an HTTP header;
- dots walk into nested JSON objects and `[]` marks a list (`locations[].mlflow_experiment.x`);
- several names are alternatives for one value, the first non-empty one winning as in
  MLflow's `run_id or run_uuid` (`ALIASES`); the one exception is `model_version`, named by
  `name` + `version` together.
Empty ids mean a listing, or a create whose parent is not named. Ids naming a parent or a
sub-object (`issue_id`, `queue_id`, `schema_id`, `endpoint_id`...) are explained in `note`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

ACCESS_LEVELS = ("public", "read", "write", "delete", "manage", "admin")
RESOURCE_TYPES = (
    "none",
    "server",
    "experiment",
    "run",
    "logged_model",
    "trace",
    "dataset",
    "registered_model",
    "model_version",
    "prompt",
    "artifact",
    "scorer",
    "gateway",
    "job",
    "webhook",
    "workspace",
    "assistant",
    "mcp",
    "ui",
)
# How the handler reads its parameters, so the resolver reads exactly the same values:
#   proto          MLflow's `_get_request_message`: a GET with a query string reads the query
#                  (proto field names only); anything else reads the JSON body, where a field
#                  may also be spelled by its camelCase JSON name (MLflow rejects both
#                  spellings of one field in one body). A GET without a query reads the body.
#   query_or_json  `_get_validated_flask_request_json`: as `proto`, literal names only.
#   query          `request.args` only.        json      the JSON body only, literal names.
#   fastapi        FastAPI binding: path, query, pydantic body fields and headers by name.
#   none           the handler reads no parameter that names a resource (path vars aside).
PARSE_MODES = ("proto", "query_or_json", "query", "json", "fastapi", "none")
# Legacy spellings MLflow accepts as alternatives for one value (the canonical name wins).
ALIASES = {"run_uuid": "run_id"}
# The one resource type whose ids are the parts of one key rather than alternatives.
COMPOSITE_IDS = {"model_version": ("name", "version")}
# Request headers that name resources (`header:<name>` ids), lower-case: the OTLP exporter's
# experiment, and the run its traces are linked to (which must be writable too).
ID_HEADERS = frozenset({"x-mlflow-experiment-id", "x-mlflow-run-id"})
# The plugin's own API: mapped by `mlflow_secure.request.actions`, reported apart by the census.
PLUGIN_API_PREFIX = "/api/2.0/mlflow-secure/"
# Set by `mlflow server --static-prefix`; most MLflow routes are registered under it.
STATIC_PREFIX_ENV_VAR = "_MLFLOW_STATIC_PREFIX"


@dataclass(frozen=True)
class RouteSpec:
    """What one route is: the action, and where the resource it touches is named."""

    endpoint: str  # stable logical name, "mlflow.<family>.<verb>"
    access: str  # one of ACCESS_LEVELS ("public" only for health and the UI's static assets)
    resource: str  # one of RESOURCE_TYPES: what the request touches
    ids: tuple[str, ...] = ()  # where the resource is named (see the module docstring)
    listing: bool = False  # the results hold many items and must be filtered per item
    note: str = ""  # what else the resolver must know
    parse: str = "proto"  # one of PARSE_MODES


# Routes that exist only under some configuration; their absence is not staleness.
CONDITIONAL: frozenset[tuple[str, str]] = frozenset({("/metrics", "GET")})

_NOT_IMPLEMENTED = (
    "MLflow answers 404 (`_not_implemented`); admin-only so that an upgrade which implements "
    "it cannot open it silently"
)
_PROXY_PATH = (
    "a path under the served artifact root (workspaces/<name>/... when workspaces are on); by "
    "default <experiment_id>/<run_id>/artifacts/..., but the layout follows each experiment's "
    "client-chosen artifact_location: find the owner by matching run and model artifact URIs, "
    "never by trusting the first segment"
)
_LLM_JOB = "runs a server-side job that calls LLMs with the server's credentials"
_SCORER_CODE = (
    "serialized scorers are code-bearing payloads (decorator scorers are exec()'d when "
    "MLFLOW_SERVER_ENABLE_CUSTOM_SCORERS is set)"
)
_POLICY_TAGS = "the tag key may be a policy tag (mlflow.secure.*): classification changes"
_ISSUE = "issue_id names an issue; its experiment is the resource"
_SCHEMA = "schema_id names a label schema; its experiment is the resource"
_QUEUE = "queue_id names a review queue; its experiment is the resource"
_GATEWAY_CALL = "spends the endpoint's provider credentials and budget"
_BY_MODEL = "the body's `model` is the gateway endpoint name; " + _GATEWAY_CALL
_ASSISTANT = "the assistant runs tools (Bash) on the server host or its sandbox"


def _s(endpoint: str, access: str, resource: str, *ids: str, **extra: Any) -> RouteSpec:
    return RouteSpec(endpoint, access, resource, tuple(ids), **extra)


# fmt: off
ROUTES: dict[tuple[str, str], RouteSpec] = {
    # ---------------------------------------------------------------- UI and server
    ("/", "GET"): _s("mlflow.ui.index", "public", "ui", parse="none",
                     note="the UI's index.html; holds no data"),
    ("/static-files/<path:path>", "GET"): _s("mlflow.ui.static", "public", "ui", parse="none"),
    ("/build/<path:filename>", "GET"): _s(
        "mlflow.ui.build", "public", "ui", parse="none",
        note="Flask's own static route over the UI bundle (js/build); never static-prefixed"),
    ("/health", "GET"): _s("mlflow.server.health", "public", "none", parse="none"),
    ("/version", "GET"): _s("mlflow.server.version", "read", "server", parse="none"),
    ("/api/3.0/mlflow/server-info", "GET"): _s("mlflow.server.info", "read", "server",
                                               parse="none"),
    ("/metrics", "GET"): _s(
        "mlflow.server.prometheus", "read", "server", parse="none",
        note="only with --expose-prometheus (prometheus_flask_exporter); per-route statistics"),
    ("/graphql", "GET"): _s(
        "mlflow.graphql.query", "read", "server", listing=True, parse="json",
        note="GraphQL reads runs, experiments, metric histories, artifacts, model versions and "
             "datasets by ids inside the query (mutations are searches too); authorise every "
             "object it names and filter what it returns (listings/graphql.py); MLflow reads "
             "the JSON body even on GET"),
    ("/graphql", "POST"): _s(
        "mlflow.graphql.query", "read", "server", listing=True, parse="json",
        note="see GET /graphql"),
    ("/api/3.0/mlflow/ui-telemetry", "GET"): _s("mlflow.ui.telemetry_config", "read", "ui",
                                                parse="none"),
    ("/api/3.0/mlflow/ui-telemetry", "POST"): _s(
        "mlflow.ui.telemetry_record", "write", "ui", parse="json",
        note="records are forwarded to MLflow's telemetry service (outbound from the server)"),
    ("/api/3.0/mlflow/demo/generate", "POST"): _s(
        "mlflow.server.demo_generate", "admin", "server", parse="json",
        note="creates the shared demo experiment and its data"),
    ("/api/3.0/mlflow/demo/delete", "POST"): _s(
        "mlflow.server.demo_delete", "admin", "server", parse="none",
        note="hard-deletes the demo experiment and everything in it"),
    ("/api/2.0/mlflow/get-online-trace-details", "GET"): _s(
        "mlflow.traces.online_details", "admin", "server", parse="none", note=_NOT_IMPLEMENTED),
    ("/api/2.0/mlflow/unified-traces", "GET"): _s(
        "mlflow.traces.unified_search", "admin", "server", parse="none", note=_NOT_IMPLEMENTED),
    ("/api/2.0mlflow/experiments/search-datasets", "POST"): _s(
        "mlflow.experiments.unrouted_search_datasets", "admin", "server", parse="none",
        note="MLflow's own misspelt path (no slash after 2.0); " + _NOT_IMPLEMENTED),

    # ---------------------------------------------------------------- experiments
    ("/api/2.0/mlflow/experiments/create", "POST"): _s(
        "mlflow.experiments.create", "write", "experiment",
        note="artifact_location is a client-supplied storage URI (MLflow checks the scheme)"),
    ("/api/2.0/mlflow/experiments/get", "GET"): _s(
        "mlflow.experiments.get", "read", "experiment", "experiment_id"),
    ("/api/2.0/mlflow/experiments/get-by-name", "GET"): _s(
        "mlflow.experiments.get_by_name", "read", "experiment", "experiment_name",
        note="named by name, not id"),
    ("/api/2.0/mlflow/experiments/search", "GET"): _s(
        "mlflow.experiments.search", "read", "experiment", listing=True),
    ("/api/2.0/mlflow/experiments/search", "POST"): _s(
        "mlflow.experiments.search", "read", "experiment", listing=True),
    ("/api/2.0/mlflow/experiments/update", "POST"): _s(
        "mlflow.experiments.update", "write", "experiment", "experiment_id",
        note="renames (new_name)"),
    ("/api/2.0/mlflow/experiments/set-experiment-tag", "POST"): _s(
        "mlflow.experiments.set_tag", "write", "experiment", "experiment_id", note=_POLICY_TAGS),
    ("/api/2.0/mlflow/experiments/delete-experiment-tag", "POST"): _s(
        "mlflow.experiments.delete_tag", "write", "experiment", "experiment_id",
        note=_POLICY_TAGS),
    ("/api/2.0/mlflow/experiments/delete", "POST"): _s(
        "mlflow.experiments.delete", "delete", "experiment", "experiment_id"),
    ("/api/2.0/mlflow/experiments/restore", "POST"): _s(
        "mlflow.experiments.restore", "delete", "experiment", "experiment_id"),
    ("/api/2.0/mlflow/experiments/search-datasets", "POST"): _s(
        "mlflow.experiments.search_datasets", "read", "experiment", "experiment_ids",
        listing=True, note="experiment_ids is a list (1 to 20)"),

    # ---------------------------------------------------------------- runs, metrics, params, tags
    ("/api/2.0/mlflow/runs/create", "POST"): _s(
        "mlflow.runs.create", "write", "experiment", "experiment_id",
        note="user_id and the mlflow.user tag are client-supplied authorship"),
    ("/api/2.0/mlflow/runs/create-promptlab-run", "POST"): _s(
        "mlflow.runs.create_promptlab", "write", "experiment", "experiment_id", parse="json",
        note="user_id is client-supplied authorship"),
    ("/api/2.0/mlflow/runs/get", "GET"): _s(
        "mlflow.runs.get", "read", "run", "run_id", "run_uuid"),
    ("/api/2.0/mlflow/runs/search", "POST"): _s(
        "mlflow.runs.search", "read", "experiment", "experiment_ids", listing=True,
        note="experiment_ids is a list; results are runs of those experiments"),
    ("/api/2.0/mlflow/runs/update", "POST"): _s(
        "mlflow.runs.update", "write", "run", "run_id", "run_uuid"),
    ("/api/2.0/mlflow/runs/delete", "POST"): _s("mlflow.runs.delete", "delete", "run", "run_id"),
    ("/api/2.0/mlflow/runs/restore", "POST"): _s(
        "mlflow.runs.restore", "delete", "run", "run_id"),
    ("/api/2.0/mlflow/runs/log-batch", "POST"): _s(
        "mlflow.runs.log_batch", "write", "run", "run_id",
        note="params and tags may carry secrets (scanned by the data-protection step)"),
    ("/api/2.0/mlflow/runs/log-inputs", "POST"): _s(
        "mlflow.runs.log_inputs", "write", "run", "run_id",
        note="models[].model_id names logged models linked as inputs"),
    ("/api/2.0/mlflow/runs/outputs", "POST"): _s(
        "mlflow.runs.log_outputs", "write", "run", "run_id",
        note="models[].model_id names logged models linked as outputs"),
    ("/api/2.0/mlflow/runs/log-model", "POST"): _s(
        "mlflow.runs.log_model", "write", "run", "run_id"),
    ("/api/2.0/mlflow/runs/log-metric", "POST"): _s(
        "mlflow.metrics.log", "write", "run", "run_id", "run_uuid",
        note="model_id optionally links a logged model"),
    ("/api/2.0/mlflow/runs/log-parameter", "POST"): _s(
        "mlflow.params.log", "write", "run", "run_id", "run_uuid"),
    ("/api/2.0/mlflow/runs/set-tag", "POST"): _s(
        "mlflow.tags.set", "write", "run", "run_id", "run_uuid"),
    ("/api/2.0/mlflow/runs/delete-tag", "POST"): _s(
        "mlflow.tags.delete", "write", "run", "run_id"),
    ("/api/2.0/mlflow/metrics/get-history", "GET"): _s(
        "mlflow.metrics.get_history", "read", "run", "run_id", "run_uuid"),
    ("/api/2.0/mlflow/metrics/get-history-bulk", "GET"): _s(
        "mlflow.metrics.get_history_bulk", "read", "run", "run_id", parse="query",
        note="run_id is repeated: a list of up to 100 runs, every one must be readable"),
    ("/api/2.0/mlflow/metrics/get-history-bulk-interval", "GET"): _s(
        "mlflow.metrics.get_history_bulk_interval", "read", "run", "run_ids",
        note="run_ids is a list; every run must be readable"),

    # ---------------------------------------------------------------- run artifacts
    ("/api/2.0/mlflow/artifacts/list", "GET"): _s(
        "mlflow.artifacts.list", "read", "run", "run_id", "run_uuid",
        note=" a directory inside the run's artifacts"),
    ("/get-artifact", "GET"): _s(
        "mlflow.artifacts.get", "read", "run", "run_id", "run_uuid", parse="query",
        note="path (query): a file inside the run's artifacts"),
    ("/api/2.0/mlflow/upload-artifact", "POST"): _s(
        "mlflow.artifacts.upload", "write", "run", "run_uuid", parse="query",
        note="run_uuid only (no run_id); path (query) inside the run's artifacts; "
             "the body is the file (at most 10 MB)"),
    ("/api/2.0/mlflow/artifacts/presigned-download-url", "POST"): _s(
        "mlflow.artifacts.presigned_download_url", "read", "run", "run_id",
        note="returns a bearer URL into the object store, valid up to 7 days (expiration): "
             "the grant outlives any later revocation"),
    ("/api/2.0/mlflow/artifacts/presigned-upload-url", "POST"): _s(
        "mlflow.artifacts.presigned_upload_url", "write", "run", "run_id", "model_id",
        note="exactly one of run_id (a run) or model_id (a logged_model); returns a bearer "
             "upload URL (expiration)"),

    # ---------------------------------------------------------------- served (proxied) artifacts
    ("/api/2.0/mlflow-artifacts/artifacts", "GET"): _s(
        "mlflow.artifacts.proxy_list", "read", "artifact", "path",
        note=_PROXY_PATH + "; without path the root (every experiment) is listed"),
    ("/api/2.0/mlflow-artifacts/artifacts/<path:artifact_path>", "GET"): _s(
        "mlflow.artifacts.proxy_download", "read", "artifact", "artifact_path",
        parse="none", note=_PROXY_PATH),
    ("/api/2.0/mlflow-artifacts/artifacts/<path:artifact_path>", "PUT"): _s(
        "mlflow.artifacts.proxy_upload", "write", "artifact", "artifact_path",
        parse="none", note=_PROXY_PATH),
    ("/api/2.0/mlflow-artifacts/artifacts/<path:artifact_path>", "DELETE"): _s(
        "mlflow.artifacts.proxy_delete", "delete", "artifact", "artifact_path",
        note=_PROXY_PATH),
    ("/api/2.0/mlflow-artifacts/artifacts/{artifact_path:path}", "GET"): _s(
        "mlflow.artifacts.proxy_download", "read", "artifact", "artifact_path",
        parse="none", note="FastAPI streaming twin of the Flask route; " + _PROXY_PATH),
    ("/api/2.0/mlflow-artifacts/artifacts/{artifact_path:path}", "PUT"): _s(
        "mlflow.artifacts.proxy_upload", "write", "artifact", "artifact_path",
        parse="none", note="FastAPI streaming twin of the Flask route; " + _PROXY_PATH),
    ("/api/2.0/mlflow-artifacts/presigned/<path:artifact_path>", "GET"): _s(
        "mlflow.artifacts.proxy_presigned_download", "read", "artifact", "artifact_path",
        parse="none", note="returns a bearer URL into the object store; " + _PROXY_PATH),
    ("/api/2.0/mlflow-artifacts/mpu/create/<path:artifact_path>", "POST"): _s(
        "mlflow.artifacts.proxy_multipart_create", "write", "artifact", "artifact_path",
        note="body path is the file name inside artifact_path; returns presigned part URLs; "
             + _PROXY_PATH),
    ("/api/2.0/mlflow-artifacts/mpu/complete/<path:artifact_path>", "POST"): _s(
        "mlflow.artifacts.proxy_multipart_complete", "write", "artifact", "artifact_path",
        note="body path and upload_id name the upload; " + _PROXY_PATH),
    ("/api/2.0/mlflow-artifacts/mpu/abort/<path:artifact_path>", "POST"): _s(
        "mlflow.artifacts.proxy_multipart_abort", "write", "artifact", "artifact_path",
        note="body path and upload_id name the upload; " + _PROXY_PATH),

    # ---------------------------------------------------------------- logged models
    ("/api/2.0/mlflow/logged-models", "POST"): _s(
        "mlflow.logged_models.create", "write", "experiment", "experiment_id",
        note="source_run_id optionally names a run the model comes from"),
    ("/api/2.0/mlflow/logged-models/search", "POST"): _s(
        "mlflow.logged_models.search", "read", "experiment", "experiment_ids", listing=True,
        note="experiment_ids is a list; results are logged models of those experiments"),
    ("/api/2.0/mlflow/logged-models/<model_id>", "GET"): _s(
        "mlflow.logged_models.get", "read", "logged_model", "model_id", parse="none",
        note="allow_deleted (query) also returns deleted models"),
    ("/api/2.0/mlflow/logged-models/<model_id>", "PATCH"): _s(
        "mlflow.logged_models.finalize", "write", "logged_model", "model_id",
        note="the handler finalizes the BODY's model_id and ignores the path variable: resolve "
             "the body value and reject a request whose path and body disagree"),
    ("/api/2.0/mlflow/logged-models/<model_id>", "DELETE"): _s(
        "mlflow.logged_models.delete", "delete", "logged_model", "model_id", parse="none"),
    ("/api/2.0/mlflow/logged-models/<model_id>/params", "POST"): _s(
        "mlflow.logged_models.log_params", "write", "logged_model", "model_id",
        note="the body also requires model_id; the handler uses the path variable"),
    ("/api/2.0/mlflow/logged-models/<model_id>/tags", "PATCH"): _s(
        "mlflow.logged_models.set_tags", "write", "logged_model", "model_id"),
    ("/api/2.0/mlflow/logged-models/<model_id>/tags/<tag_key>", "DELETE"): _s(
        "mlflow.logged_models.delete_tag", "write", "logged_model", "model_id",
        parse="none"),
    ("/api/2.0/mlflow/logged-models/<model_id>/artifacts/directories", "GET"): _s(
        "mlflow.logged_models.list_artifacts", "read", "logged_model", "model_id",
        note="artifact_directory_path: a directory inside the model's artifacts"),
    ("/api/2.0/mlflow/logged-models/<model_id>/artifacts/files", "GET"): _s(
        "mlflow.logged_models.get_artifact", "read", "logged_model", "model_id",
        parse="query", note="artifact_file_path (query): a file inside the model's artifacts"),

    # ---------------------------------------------------------------- registered models, prompts
    ("/api/2.0/mlflow/registered-models/create", "POST"): _s(
        "mlflow.registered_models.create", "write", "registered_model",
        note="prompts are registered models tagged mlflow.prompt.is_prompt=true"),
    ("/api/2.0/mlflow/registered-models/get", "GET"): _s(
        "mlflow.registered_models.get", "read", "registered_model", "name"),
    ("/api/2.0/mlflow/registered-models/search", "GET"): _s(
        "mlflow.registered_models.search", "read", "registered_model", listing=True,
        note="results include prompts unless the filter excludes them"),
    ("/api/2.0/mlflow/registered-models/get-latest-versions", "GET"): _s(
        "mlflow.registered_models.get_latest_versions", "read", "registered_model", "name"),
    ("/api/2.0/mlflow/registered-models/get-latest-versions", "POST"): _s(
        "mlflow.registered_models.get_latest_versions", "read", "registered_model", "name"),
    ("/api/2.0/mlflow/registered-models/update", "PATCH"): _s(
        "mlflow.registered_models.update", "write", "registered_model", "name"),
    ("/api/2.0/mlflow/registered-models/rename", "POST"): _s(
        "mlflow.registered_models.rename", "write", "registered_model", "name",
        note="new_name: the model's new name"),
    ("/api/2.0/mlflow/registered-models/set-tag", "POST"): _s(
        "mlflow.registered_models.set_tag", "write", "registered_model", "name",
        note=_POLICY_TAGS),
    ("/api/2.0/mlflow/registered-models/delete-tag", "DELETE"): _s(
        "mlflow.registered_models.delete_tag", "write", "registered_model", "name",
        note=_POLICY_TAGS),
    ("/api/2.0/mlflow/registered-models/alias", "POST"): _s(
        "mlflow.registered_models.set_alias", "write", "registered_model", "name",
        note="points alias at version"),
    ("/api/2.0/mlflow/registered-models/alias", "DELETE"): _s(
        "mlflow.registered_models.delete_alias", "write", "registered_model", "name"),
    ("/api/2.0/mlflow/registered-models/alias", "GET"): _s(
        "mlflow.model_versions.get_by_alias", "read", "registered_model", "name",
        note="alias selects the version returned"),
    ("/api/2.0/mlflow/registered-models/delete", "DELETE"): _s(
        "mlflow.registered_models.delete", "delete", "registered_model", "name"),

    # ---------------------------------------------------------------- model versions
    ("/api/2.0/mlflow/model-versions/create", "POST"): _s(
        "mlflow.model_versions.create", "write", "registered_model", "name",
        note="source is a client-supplied artifact URI; run_id / model_id name the run or "
             "logged model it comes from, which must be readable (MLflow checks the lineage)"),
    ("/api/2.0/mlflow/model-versions/get", "GET"): _s(
        "mlflow.model_versions.get", "read", "model_version", "name", "version"),
    ("/api/2.0/mlflow/model-versions/search", "GET"): _s(
        "mlflow.model_versions.search", "read", "model_version", listing=True),
    ("/api/2.0/mlflow/model-versions/update", "PATCH"): _s(
        "mlflow.model_versions.update", "write", "model_version", "name", "version"),
    ("/api/2.0/mlflow/model-versions/transition-stage", "POST"): _s(
        "mlflow.model_versions.transition_stage", "manage", "model_version", "name", "version",
        note="promotes a version; archive_existing_versions also archives the model's others"),
    ("/api/2.0/mlflow/model-versions/set-tag", "POST"): _s(
        "mlflow.model_versions.set_tag", "write", "model_version", "name", "version"),
    ("/api/2.0/mlflow/model-versions/delete-tag", "DELETE"): _s(
        "mlflow.model_versions.delete_tag", "write", "model_version", "name", "version"),
    ("/api/2.0/mlflow/model-versions/delete", "DELETE"): _s(
        "mlflow.model_versions.delete", "delete", "model_version", "name", "version"),
    ("/api/2.0/mlflow/model-versions/get-download-uri", "GET"): _s(
        "mlflow.model_versions.get_download_uri", "read", "model_version", "name", "version",
        note="returns the storage URI of the version's artifacts"),
    ("/model-versions/get-artifact", "GET"): _s(
        "mlflow.model_versions.get_artifact", "read", "model_version", "name", "version",
        parse="query", note="path (query): a file inside the version's artifacts"),

    # ---------------------------------------------------------------- traces (v2, deprecated)
    ("/api/2.0/mlflow/traces", "POST"): _s(
        "mlflow.traces.start_v2", "write", "experiment", "experiment_id"),
    ("/api/2.0/mlflow/traces", "GET"): _s(
        "mlflow.traces.search_v2", "read", "experiment", "experiment_ids", listing=True,
        note="experiment_ids is a list"),
    ("/api/2.0/mlflow/traces/<request_id>", "PATCH"): _s(
        "mlflow.traces.end_v2", "write", "trace", "request_id"),
    ("/api/2.0/mlflow/traces/<request_id>/info", "GET"): _s(
        "mlflow.traces.get_info_v2", "read", "trace", "request_id", parse="none"),
    ("/api/2.0/mlflow/traces/<request_id>/tags", "PATCH"): _s(
        "mlflow.traces.set_tag", "write", "trace", "request_id"),
    ("/api/2.0/mlflow/traces/<request_id>/tags", "DELETE"): _s(
        "mlflow.traces.delete_tag", "write", "trace", "request_id"),
    ("/api/2.0/mlflow/traces/delete-traces", "POST"): _s(
        "mlflow.traces.delete", "delete", "experiment", "experiment_id",
        note="request_ids (a list) or max_timestamp_millis/max_traces select many traces"),
    ("/api/2.0/mlflow/traces/link-to-run", "POST"): _s(
        "mlflow.traces.link_to_run", "write", "run", "run_id",
        note="trace_ids is a list of traces that must be writable too"),
    ("/api/2.0/mlflow/traces/link-prompts", "POST"): _s(
        "mlflow.traces.link_prompts", "write", "trace", "trace_id",
        note="prompt_versions[].name/version name prompts (registered models) to read"),
    ("/api/2.0/mlflow/get-trace-artifact", "GET"): _s(
        "mlflow.traces.get_artifact", "read", "trace", "request_id", parse="query",
        note="path (query): an attachment; without it the trace data"),

    # ---------------------------------------------------------------- traces (v3) and OTLP
    ("/api/3.0/mlflow/traces", "POST"): _s(
        "mlflow.traces.start", "write", "experiment",
        "trace.trace_info.trace_location.mlflow_experiment.experiment_id"),
    ("/api/3.0/mlflow/traces/<trace_id>", "GET"): _s(
        "mlflow.traces.get_info", "read", "trace", "trace_id", parse="none"),
    ("/api/3.0/mlflow/traces/get", "GET"): _s(
        "mlflow.traces.get", "read", "trace", "trace_id"),
    ("/api/3.0/mlflow/traces/search", "POST"): _s(
        "mlflow.traces.search", "read", "experiment",
        "locations[].mlflow_experiment.experiment_id", listing=True,
        note="locations is a list; results are traces of those experiments"),
    ("/api/3.0/mlflow/traces/batchGet", "GET"): _s(
        "mlflow.traces.batch_get", "read", "trace", "trace_ids", listing=True,
        note="trace_ids is a list; experiment_ids (a list) optionally scopes the lookup"),
    ("/api/3.0/mlflow/traces/batchGetInfos", "POST"): _s(
        "mlflow.traces.batch_get_infos", "read", "trace", "trace_ids", listing=True,
        note="trace_ids is a list; experiment_ids (a list) optionally scopes the lookup"),
    ("/api/3.0/mlflow/traces/calculate-filter-correlation", "POST"): _s(
        "mlflow.traces.filter_correlation", "read", "experiment", "experiment_ids",
        note="experiment_ids is a list; returns aggregates over their traces"),
    ("/api/3.0/mlflow/traces/metrics", "POST"): _s(
        "mlflow.traces.query_metrics", "read", "experiment", "experiment_ids",
        note="experiment_ids is a list; returns aggregates over their traces"),
    ("/api/3.0/mlflow/traces/delete-traces", "POST"): _s(
        "mlflow.traces.delete", "delete", "experiment", "experiment_id",
        note="request_ids (a list) or max_timestamp_millis/max_traces select many traces"),
    ("/api/3.0/mlflow/traces/<trace_id>/tags", "PATCH"): _s(
        "mlflow.traces.set_tag", "write", "trace", "trace_id"),
    ("/api/3.0/mlflow/traces/<trace_id>/tags", "DELETE"): _s(
        "mlflow.traces.delete_tag", "write", "trace", "trace_id"),
    ("/api/3.0/mlflow/get-trace-artifact", "GET"): _s(
        "mlflow.traces.get_artifact", "read", "trace", "request_id", parse="query",
        note="path (query): an attachment; without it the trace data"),
    ("/v1/traces", "POST"): _s(
        "mlflow.otel.export_traces", "write", "experiment", "header:x-mlflow-experiment-id",
        parse="fastapi",
        note="OTLP protobuf or JSON; header x-mlflow-run-id (optional) links the traces to "
             "that run, which must be writable too"),

    # ---------------------------------------------------------------- assessments
    ("/api/3.0/mlflow/traces/<trace_id>/assessments", "POST"): _s(
        "mlflow.assessments.create", "write", "trace", "trace_id",
        note="the path overrides the body's assessment.trace_id"),
    ("/api/3.0/mlflow/traces/<trace_id>/assessments/<assessment_id>", "GET"): _s(
        "mlflow.assessments.get", "read", "trace", "trace_id", parse="none"),
    ("/api/3.0/mlflow/traces/<trace_id>/assessments/<assessment_id>", "PATCH"): _s(
        "mlflow.assessments.update", "write", "trace", "trace_id"),
    ("/api/3.0/mlflow/traces/<trace_id>/assessments/<assessment_id>", "DELETE"): _s(
        "mlflow.assessments.delete", "delete", "trace", "trace_id", parse="none"),

    # ---------------------------------------------------------------- issues, labels, review queues
    ("/api/3.0/mlflow/issues", "POST"): _s(
        "mlflow.issues.create", "write", "experiment", "experiment_id",
        note="source_run_id optionally names a run"),
    ("/api/3.0/mlflow/issues/<issue_id>", "GET"): _s(
        "mlflow.issues.get", "read", "experiment", "issue_id", parse="none", note=_ISSUE),
    ("/api/3.0/mlflow/issues/<issue_id>", "PATCH"): _s(
        "mlflow.issues.update", "write", "experiment", "issue_id",
        note=_ISSUE + "; the body's issue_id is required but ignored"),
    ("/api/3.0/mlflow/issues/search", "POST"): _s(
        "mlflow.issues.search", "read", "experiment", "experiment_id", listing=True,
        note="experiment_id is optional: without it every issue is searched"),
    ("/api/3.0/mlflow/issues/invoke", "POST"): _s(
        "mlflow.issues.detect", "write", "experiment", "experiment_id", parse="query_or_json",
        note="trace_ids is a list (MLflow checks they belong to the experiment); provider, "
             "model, secret_id or endpoint_name pick the LLM credentials used; " + _LLM_JOB),
    ("/api/3.0/mlflow/label-schemas/create", "POST"): _s(
        "mlflow.label_schemas.create", "write", "experiment", "experiment_id"),
    ("/api/3.0/mlflow/label-schemas/get", "GET"): _s(
        "mlflow.label_schemas.get", "read", "experiment", "schema_id", note=_SCHEMA),
    ("/api/3.0/mlflow/label-schemas/get-by-name", "GET"): _s(
        "mlflow.label_schemas.get_by_name", "read", "experiment", "experiment_id",
        note="name selects the schema"),
    ("/api/3.0/mlflow/label-schemas/list", "GET"): _s(
        "mlflow.label_schemas.list", "read", "experiment", "experiment_id", listing=True),
    ("/api/3.0/mlflow/label-schemas/update", "PATCH"): _s(
        "mlflow.label_schemas.update", "write", "experiment", "schema_id", note=_SCHEMA),
    ("/api/3.0/mlflow/label-schemas/delete", "DELETE"): _s(
        "mlflow.label_schemas.delete", "delete", "experiment", "schema_id", note=_SCHEMA),
    ("/api/3.0/mlflow/review-queues/create", "POST"): _s(
        "mlflow.review_queues.create", "write", "experiment", "experiment_id",
        note="users and schema_ids are lists; the owner is stamped from the caller"),
    ("/api/3.0/mlflow/review-queues/get-or-create-user", "POST"): _s(
        "mlflow.review_queues.get_or_create_user", "write", "experiment", "experiment_id",
        note="user: may create a queue owned by another user"),
    ("/api/3.0/mlflow/review-queues/get", "GET"): _s(
        "mlflow.review_queues.get", "read", "experiment", "queue_id", note=_QUEUE),
    ("/api/3.0/mlflow/review-queues/get-by-name", "GET"): _s(
        "mlflow.review_queues.get_by_name", "read", "experiment", "experiment_id",
        note="name selects the queue"),
    ("/api/3.0/mlflow/review-queues/list", "GET"): _s(
        "mlflow.review_queues.list", "read", "experiment", "experiment_id", listing=True,
        note="user and item_id filter the queues"),
    ("/api/3.0/mlflow/review-queues/update", "POST"): _s(
        "mlflow.review_queues.update", "manage", "experiment", "queue_id",
        note=_QUEUE + "; users and new_owner change who may review and who owns it"),
    ("/api/3.0/mlflow/review-queues/delete", "POST"): _s(
        "mlflow.review_queues.delete", "delete", "experiment", "queue_id", note=_QUEUE),
    ("/api/3.0/mlflow/review-queues/items/add", "POST"): _s(
        "mlflow.review_queues.add_items", "write", "experiment", "queue_id",
        note=_QUEUE + "; item_ids is a list of traces (MLflow checks their experiment)"),
    ("/api/3.0/mlflow/review-queues/items/remove", "POST"): _s(
        "mlflow.review_queues.remove_items", "write", "experiment", "queue_id", note=_QUEUE),
    ("/api/3.0/mlflow/review-queues/items/list", "GET"): _s(
        "mlflow.review_queues.list_items", "read", "experiment", "queue_id", listing=True,
        note=_QUEUE),
    ("/api/3.0/mlflow/review-queues/items/set-status", "POST"): _s(
        "mlflow.review_queues.set_item_status", "write", "experiment", "queue_id",
        note=_QUEUE + "; completed_by is stamped from the caller when auth is on"),

    # ---------------------------------------------------------------- evaluation datasets
    ("/api/3.0/mlflow/datasets/create", "POST"): _s(
        "mlflow.datasets.create", "write", "experiment", "experiment_ids",
        note="experiment_ids is a list of experiments the dataset is linked to (may be empty)"),
    ("/api/3.0/mlflow/datasets/search", "GET"): _s(
        "mlflow.datasets.search", "read", "experiment", "experiment_ids", listing=True,
        note="experiment_ids is an optional list; results are datasets"),
    ("/api/3.0/mlflow/datasets/search", "POST"): _s(
        "mlflow.datasets.search", "read", "experiment", "experiment_ids", listing=True,
        note="experiment_ids is an optional list; results are datasets"),
    ("/api/3.0/mlflow/datasets/<dataset_id>", "GET"): _s(
        "mlflow.datasets.get", "read", "dataset", "dataset_id", parse="none"),
    ("/api/3.0/mlflow/datasets/<dataset_id>", "DELETE"): _s(
        "mlflow.datasets.delete", "delete", "dataset", "dataset_id", parse="none"),
    ("/api/3.0/mlflow/datasets/<dataset_id>/experiment-ids", "GET"): _s(
        "mlflow.datasets.get_experiment_ids", "read", "dataset", "dataset_id",
        parse="none"),
    ("/api/3.0/mlflow/datasets/<dataset_id>/add-experiments", "POST"): _s(
        "mlflow.datasets.add_experiments", "write", "dataset", "dataset_id",
        note="experiment_ids is a list of experiments that must be writable too"),
    ("/api/3.0/mlflow/datasets/<dataset_id>/remove-experiments", "POST"): _s(
        "mlflow.datasets.remove_experiments", "write", "dataset", "dataset_id",
        note="experiment_ids is a list of experiments that must be writable too"),
    ("/api/3.0/mlflow/datasets/<dataset_id>/records", "GET"): _s(
        "mlflow.datasets.get_records", "read", "dataset", "dataset_id"),
    ("/api/3.0/mlflow/datasets/<dataset_id>/records", "POST"): _s(
        "mlflow.datasets.upsert_records", "write", "dataset", "dataset_id",
        note="updated_by is client-supplied authorship"),
    ("/api/3.0/mlflow/datasets/<dataset_id>/records", "DELETE"): _s(
        "mlflow.datasets.delete_records", "delete", "dataset", "dataset_id",
        note="dataset_record_ids is a list"),
    ("/api/3.0/mlflow/datasets/<dataset_id>/tags", "PATCH"): _s(
        "mlflow.datasets.set_tags", "write", "dataset", "dataset_id"),
    ("/api/3.0/mlflow/datasets/<dataset_id>/tags/<key>", "DELETE"): _s(
        "mlflow.datasets.delete_tag", "write", "dataset", "dataset_id", parse="none"),

    # ---------------------------------------------------------------- scorers and evaluation
    ("/api/3.0/mlflow/scorers/register", "POST"): _s(
        "mlflow.scorers.register", "write", "experiment", "experiment_id", note=_SCORER_CODE),
    ("/api/3.0/mlflow/scorers/list", "GET"): _s(
        "mlflow.scorers.list", "read", "experiment", "experiment_id", "experiment_ids",
        listing=True,
        note="either experiment_id or experiment_ids (a list), not both; neither lists every "
             "experiment of the workspace"),
    ("/api/3.0/mlflow/scorers/versions", "GET"): _s(
        "mlflow.scorers.list_versions", "read", "scorer", "experiment_id",
        note="name selects the scorer in the experiment"),
    ("/api/3.0/mlflow/scorers/get", "GET"): _s(
        "mlflow.scorers.get", "read", "scorer", "experiment_id",
        note="name and version (optional: the latest) select the scorer in the experiment"),
    ("/api/3.0/mlflow/scorers/delete", "DELETE"): _s(
        "mlflow.scorers.delete", "delete", "scorer", "experiment_id",
        note="name and version select the scorer; without version every version goes"),
    ("/api/3.0/mlflow/scorers/online-configs", "GET"): _s(
        "mlflow.scorers.get_online_configs", "read", "scorer", "scorer_ids",
        listing=True, parse="query_or_json",
        note="scorer_ids is a list of opaque scorer ids (not experiment/name keys)"),
    ("/api/3.0/mlflow/scorers/online-config", "PUT"): _s(
        "mlflow.scorers.upsert_online_config", "write", "scorer", "experiment_id",
        parse="query_or_json",
        note="name selects the scorer; turns on server-side scoring of new traces; " + _LLM_JOB),
    ("/api/3.0/mlflow/scorer/invoke", "POST"): _s(
        "mlflow.scorers.invoke", "write", "experiment", "experiment_id", parse="json",
        note="trace_ids is a list (MLflow checks they belong to the experiment); "
             + _SCORER_CODE + "; " + _LLM_JOB),
    ("/api/3.0/mlflow/genai/evaluate/invoke", "POST"): _s(
        "mlflow.scorers.evaluate", "write", "experiment", "experiment_id",
        parse="query_or_json",
        note="trace_ids is a list (MLflow checks they belong to the experiment); creates a run; "
             + _SCORER_CODE + "; " + _LLM_JOB),

    # ---------------------------------------------------------------- prompt optimisation jobs
    ("/api/3.0/mlflow/prompt-optimization/jobs", "POST"): _s(
        "mlflow.prompts.create_optimization_job", "write", "experiment", "experiment_id",
        note="source_prompt_uri (prompts:/name/version) names a prompt to read and to which "
             "the job registers a new version; config.dataset_id names a dataset; " + _LLM_JOB),
    ("/api/3.0/mlflow/prompt-optimization/jobs/search", "GET"): _s(
        "mlflow.prompts.search_optimization_jobs", "read", "experiment", "experiment_id",
        listing=True),
    ("/api/3.0/mlflow/prompt-optimization/jobs/search", "POST"): _s(
        "mlflow.prompts.search_optimization_jobs", "read", "experiment", "experiment_id",
        listing=True),
    ("/api/3.0/mlflow/prompt-optimization/jobs/<job_id>", "GET"): _s(
        "mlflow.prompts.get_optimization_job", "read", "job", "job_id", parse="none",
        note="the job's params name its experiment and run"),
    ("/api/3.0/mlflow/prompt-optimization/jobs/<job_id>/cancel", "POST"): _s(
        "mlflow.prompts.cancel_optimization_job", "write", "job", "job_id", parse="none",
        note="also kills the job's run"),
    ("/api/3.0/mlflow/prompt-optimization/jobs/<job_id>", "DELETE"): _s(
        "mlflow.prompts.delete_optimization_job", "delete", "job", "job_id",
        parse="none", note="also deletes the job's run"),

    # ---------------------------------------------------------------- jobs
    ("/api/3.0/mlflow/jobs/<job_id>", "GET"): _s(
        "mlflow.jobs.get", "read", "job", "job_id", parse="none",
        note="returns the job's result"),
    ("/api/3.0/mlflow/jobs/cancel/<job_id>", "PATCH"): _s(
        "mlflow.jobs.cancel", "write", "job", "job_id", parse="none"),
    ("/api/3.0/jobs/{job_id}", "GET"): _s(
        "mlflow.jobs.get", "read", "job", "job_id", parse="none",
        note="returns the job's params and result"),
    ("/api/3.0/jobs/", "POST"): _s(
        "mlflow.jobs.submit", "admin", "job", parse="fastapi",
        note="job_name picks any registered server-side job function and params go to it "
             "unchecked; the creator is stamped from request.state.username"),
    ("/api/3.0/jobs/cancel/{job_id}", "PATCH"): _s(
        "mlflow.jobs.cancel", "write", "job", "job_id", parse="none"),
    ("/api/3.0/jobs/search", "POST"): _s(
        "mlflow.jobs.search", "read", "job", listing=True, parse="fastapi",
        note="job_name, params and statuses filter every job of the server"),

    # ---------------------------------------------------------------- webhooks
    ("/api/2.0/mlflow/webhooks", "GET"): _s(
        "mlflow.webhooks.list", "read", "webhook", listing=True),
    ("/api/2.0/mlflow/webhooks", "POST"): _s(
        "mlflow.webhooks.create", "admin", "webhook",
        note="url is client-supplied: the server POSTs registry events there (SSRF, and events "
             "about every model leave the server); secret signs them"),
    ("/api/2.0/mlflow/webhooks/<webhook_id>", "GET"): _s(
        "mlflow.webhooks.get", "read", "webhook", "webhook_id", parse="none"),
    ("/api/2.0/mlflow/webhooks/<webhook_id>", "PATCH"): _s(
        "mlflow.webhooks.update", "admin", "webhook", "webhook_id",
        note="url is client-supplied (see create)"),
    ("/api/2.0/mlflow/webhooks/<webhook_id>", "DELETE"): _s(
        "mlflow.webhooks.delete", "admin", "webhook", "webhook_id", parse="none"),
    ("/api/2.0/mlflow/webhooks/<webhook_id>/test", "POST"): _s(
        "mlflow.webhooks.test", "admin", "webhook", "webhook_id",
        note="the server sends a request to the webhook's URL now"),

    # ---------------------------------------------------------------- workspaces
    ("/api/3.0/mlflow/workspaces", "GET"): _s(
        "mlflow.workspaces.list", "read", "workspace", listing=True, parse="none"),
    ("/api/3.0/mlflow/workspaces", "POST"): _s(
        "mlflow.workspaces.create", "admin", "workspace",
        note="default_artifact_root and trace_archival_config.location are client-supplied "
             "storage URIs"),
    ("/api/3.0/mlflow/workspaces/<workspace_name>", "GET"): _s(
        "mlflow.workspaces.get", "read", "workspace", "workspace_name", parse="none"),
    ("/api/3.0/mlflow/workspaces/<workspace_name>", "PATCH"): _s(
        "mlflow.workspaces.update", "admin", "workspace", "workspace_name",
        note="default_artifact_root and trace_archival_config.location are client-supplied "
             "storage URIs"),
    ("/api/3.0/mlflow/workspaces/<workspace_name>", "DELETE"): _s(
        "mlflow.workspaces.delete", "admin", "workspace", "workspace_name",
        note="mode (query) chooses what happens to the workspace's resources"),

    # ---------------------------------------------------------------- gateway configuration
    ("/api/3.0/mlflow/gateway/secrets/create", "POST"): _s(
        "mlflow.gateway.create_secret", "admin", "gateway",
        note="secret_value holds provider API keys; auth_config may carry an api_base (SSRF)"),
    ("/api/3.0/mlflow/gateway/secrets/get", "GET"): _s(
        "mlflow.gateway.get_secret", "read", "gateway", "secret_id",
        note="masked secret metadata"),
    ("/api/3.0/mlflow/gateway/secrets/list", "GET"): _s(
        "mlflow.gateway.list_secrets", "read", "gateway", listing=True,
        note="masked secret metadata; provider filters"),
    ("/api/3.0/mlflow/gateway/secrets/update", "POST"): _s(
        "mlflow.gateway.update_secret", "admin", "gateway", "secret_id",
        note="replaces provider API keys; auth_config may carry an api_base (SSRF)"),
    ("/api/3.0/mlflow/gateway/secrets/delete", "DELETE"): _s(
        "mlflow.gateway.delete_secret", "admin", "gateway", "secret_id"),
    ("/api/3.0/mlflow/gateway/secrets/config", "GET"): _s(
        "mlflow.gateway.secrets_config", "read", "gateway", parse="none",
        note="tells whether the default key-encryption passphrase is in use"),
    ("/api/3.0/mlflow/gateway/supported-providers", "GET"): _s(
        "mlflow.gateway.supported_providers", "read", "gateway", parse="none"),
    ("/api/3.0/mlflow/gateway/supported-models", "GET"): _s(
        "mlflow.gateway.supported_models", "read", "gateway", parse="query"),
    ("/api/3.0/mlflow/gateway/provider-config", "GET"): _s(
        "mlflow.gateway.provider_config", "read", "gateway", parse="query"),
    ("/api/3.0/mlflow/gateway/endpoints/create", "POST"): _s(
        "mlflow.gateway.create_endpoint", "manage", "gateway",
        note="model_configs reference model definitions (and their secrets); experiment_id "
             "receives usage traces"),
    ("/api/3.0/mlflow/gateway/endpoints/get", "GET"): _s(
        "mlflow.gateway.get_endpoint", "read", "gateway", "endpoint_id", "name",
        note="either endpoint_id or name names the endpoint"),
    ("/api/3.0/mlflow/gateway/endpoints/list", "GET"): _s(
        "mlflow.gateway.list_endpoints", "read", "gateway", listing=True,
        note="provider and secret_id filter"),
    ("/api/3.0/mlflow/gateway/endpoints/update", "POST"): _s(
        "mlflow.gateway.update_endpoint", "manage", "gateway", "endpoint_id",
        note="model_configs reference model definitions (and their secrets); experiment_id "
             "receives usage traces"),
    ("/api/3.0/mlflow/gateway/endpoints/delete", "DELETE"): _s(
        "mlflow.gateway.delete_endpoint", "manage", "gateway", "endpoint_id"),
    ("/api/3.0/mlflow/gateway/endpoints/set-tag", "POST"): _s(
        "mlflow.gateway.set_endpoint_tag", "manage", "gateway", "endpoint_id"),
    ("/api/3.0/mlflow/gateway/endpoints/delete-tag", "DELETE"): _s(
        "mlflow.gateway.delete_endpoint_tag", "manage", "gateway", "endpoint_id"),
    ("/api/3.0/mlflow/gateway/endpoints/models/attach", "POST"): _s(
        "mlflow.gateway.attach_model", "manage", "gateway", "endpoint_id",
        note="model_config references a model definition"),
    ("/api/3.0/mlflow/gateway/endpoints/models/detach", "POST"): _s(
        "mlflow.gateway.detach_model", "manage", "gateway", "endpoint_id"),
    ("/api/3.0/mlflow/gateway/endpoints/bindings/create", "POST"): _s(
        "mlflow.gateway.create_binding", "manage", "gateway", "endpoint_id",
        note="resource_type/resource_id name the MLflow resource bound to the endpoint"),
    ("/api/3.0/mlflow/gateway/endpoints/bindings/delete", "DELETE"): _s(
        "mlflow.gateway.delete_binding", "manage", "gateway", "endpoint_id",
        note="resource_type/resource_id name the bound MLflow resource"),
    ("/api/3.0/mlflow/gateway/endpoints/bindings/list", "GET"): _s(
        "mlflow.gateway.list_bindings", "read", "gateway", "endpoint_id", listing=True,
        note="endpoint_id, resource_type and resource_id are optional filters"),
    ("/api/3.0/mlflow/gateway/model-definitions/create", "POST"): _s(
        "mlflow.gateway.create_model_definition", "manage", "gateway",
        note="secret_id names the secret the model will use"),
    ("/api/3.0/mlflow/gateway/model-definitions/get", "GET"): _s(
        "mlflow.gateway.get_model_definition", "read", "gateway", "model_definition_id"),
    ("/api/3.0/mlflow/gateway/model-definitions/list", "GET"): _s(
        "mlflow.gateway.list_model_definitions", "read", "gateway", listing=True),
    ("/api/3.0/mlflow/gateway/model-definitions/update", "POST"): _s(
        "mlflow.gateway.update_model_definition", "manage", "gateway", "model_definition_id",
        note="secret_id names the secret the model will use"),
    ("/api/3.0/mlflow/gateway/model-definitions/delete", "DELETE"): _s(
        "mlflow.gateway.delete_model_definition", "manage", "gateway", "model_definition_id"),
    ("/api/3.0/mlflow/gateway/guardrails/create", "POST"): _s(
        "mlflow.gateway.create_guardrail", "manage", "gateway",
        note="scorer_id/scorer_version name a scorer; action_endpoint_id a gateway endpoint"),
    ("/api/3.0/mlflow/gateway/guardrails/get", "GET"): _s(
        "mlflow.gateway.get_guardrail", "read", "gateway", "guardrail_id"),
    ("/api/3.0/mlflow/gateway/guardrails/list", "GET"): _s(
        "mlflow.gateway.list_guardrails", "read", "gateway", listing=True),
    ("/api/3.0/mlflow/gateway/guardrails/delete", "DELETE"): _s(
        "mlflow.gateway.delete_guardrail", "manage", "gateway", "guardrail_id"),
    ("/api/3.0/mlflow/gateway/guardrails/add-to-endpoint", "POST"): _s(
        "mlflow.gateway.add_guardrail", "manage", "gateway", "endpoint_id",
        note="guardrail_id names the guardrail"),
    ("/api/3.0/mlflow/gateway/guardrails/remove-from-endpoint", "DELETE"): _s(
        "mlflow.gateway.remove_guardrail", "manage", "gateway", "endpoint_id",
        note="guardrail_id names the guardrail"),
    ("/api/3.0/mlflow/gateway/guardrails/update-config", "PATCH"): _s(
        "mlflow.gateway.update_guardrail_config", "manage", "gateway", "endpoint_id",
        note="guardrail_id names the guardrail"),
    ("/api/3.0/mlflow/gateway/guardrails/list-for-endpoint", "GET"): _s(
        "mlflow.gateway.list_endpoint_guardrails", "read", "gateway", "endpoint_id",
        listing=True),
    ("/api/3.0/mlflow/gateway/budgets/create", "POST"): _s(
        "mlflow.gateway.create_budget", "manage", "gateway",
        note="target_scope/target_value name what the budget limits (endpoint, user, ...)"),
    ("/api/3.0/mlflow/gateway/budgets/get", "GET"): _s(
        "mlflow.gateway.get_budget", "read", "gateway", "budget_policy_id"),
    ("/api/3.0/mlflow/gateway/budgets/list", "GET"): _s(
        "mlflow.gateway.list_budgets", "read", "gateway", listing=True),
    ("/api/3.0/mlflow/gateway/budgets/update", "POST"): _s(
        "mlflow.gateway.update_budget", "manage", "gateway", "budget_policy_id"),
    ("/api/3.0/mlflow/gateway/budgets/delete", "DELETE"): _s(
        "mlflow.gateway.delete_budget", "manage", "gateway", "budget_policy_id"),
    ("/api/3.0/mlflow/gateway/budgets/windows", "GET"): _s(
        "mlflow.gateway.list_budget_windows", "read", "gateway", listing=True,
        note="current spend per budget"),

    # ---------------------------------------------------------------- gateway invocation
    ("/api/2.0/mlflow/gateway-proxy", "GET"): _s(
        "mlflow.gateway.proxy_list", "read", "gateway", parse="query",
        note="lists the endpoints of MLFLOW_DEPLOYMENTS_TARGET (server-side request)"),
    ("/api/2.0/mlflow/gateway-proxy", "POST"): _s(
        "mlflow.gateway.proxy_invoke", "write", "gateway", "gateway_path", parse="json",
        note="gateway_path 'gateway/<name>/invocations' names the deployments endpoint; "
             "json_data is forwarded to MLFLOW_DEPLOYMENTS_TARGET"),
    ("/gateway/{endpoint_name}/mlflow/invocations", "POST"): _s(
        "mlflow.gateway.invoke", "write", "gateway", "endpoint_name", parse="fastapi",
        note=_GATEWAY_CALL),
    ("/gateway/mlflow/v1/chat/completions", "POST"): _s(
        "mlflow.gateway.chat_completions", "write", "gateway", "model", parse="json",
        note=_BY_MODEL),
    ("/gateway/mlflow/v1/models", "GET"): _s(
        "mlflow.gateway.list_models", "read", "gateway", listing=True, parse="none",
        note="every gateway endpoint name"),
    ("/gateway/openai/v1/chat/completions", "POST"): _s(
        "mlflow.gateway.openai_chat", "write", "gateway", "model", parse="json", note=_BY_MODEL),
    ("/gateway/openai/v1/embeddings", "POST"): _s(
        "mlflow.gateway.openai_embeddings", "write", "gateway", "model", parse="json",
        note=_BY_MODEL),
    ("/gateway/openai/v1/responses", "POST"): _s(
        "mlflow.gateway.openai_responses", "write", "gateway", "model", parse="json",
        note=_BY_MODEL),
    ("/gateway/openai/v1/responses/compact", "POST"): _s(
        "mlflow.gateway.openai_responses_compact", "write", "gateway", "model", parse="json",
        note=_BY_MODEL),
    ("/gateway/anthropic/v1/messages", "POST"): _s(
        "mlflow.gateway.anthropic_messages", "write", "gateway", "model", parse="json",
        note=_BY_MODEL),
    ("/gateway/typesafe/v1/systemone", "POST"): _s(
        "mlflow.gateway.typesafe_system_one", "write", "gateway", "model", parse="json",
        note=_BY_MODEL),
    ("/gateway/gemini/v1beta/models/{endpoint_name}:generateContent", "POST"): _s(
        "mlflow.gateway.gemini_generate", "write", "gateway", "endpoint_name",
        parse="fastapi", note=_GATEWAY_CALL),
    ("/gateway/gemini/v1beta/models/{endpoint_name}:streamGenerateContent", "POST"): _s(
        "mlflow.gateway.gemini_stream_generate", "write", "gateway", "endpoint_name",
        parse="fastapi", note=_GATEWAY_CALL),
    ("/gateway/proxy/{endpoint_name}/{path:path}", "POST"): _s(
        "mlflow.gateway.raw_proxy", "write", "gateway", "endpoint_name", parse="fastapi",
        note="the path variable `path` is appended to the provider's base URL and the body "
             "forwarded as-is (SSRF surface; MLflow enables connect-time protection); "
             + _GATEWAY_CALL),

    # ---------------------------------------------------------------- assistant
    ("/api/3.0/mlflow/assistant/message", "POST"): _s(
        "mlflow.assistant.send_message", "admin", "assistant", "session_id", parse="fastapi",
        note="starts or continues an agent session; experiment_id picks a project directory "
             "on the server; " + _ASSISTANT),
    ("/api/3.0/mlflow/assistant/sessions/{session_id}/stream", "GET"): _s(
        "mlflow.assistant.stream", "admin", "assistant", "session_id", parse="none",
        note="runs the pending turn; " + _ASSISTANT),
    ("/api/3.0/mlflow/assistant/sessions/{session_id}", "PATCH"): _s(
        "mlflow.assistant.cancel_session", "admin", "assistant", "session_id",
        parse="fastapi"),
    ("/api/3.0/mlflow/assistant/sessions/{session_id}/permission", "POST"): _s(
        "mlflow.assistant.resolve_permission", "admin", "assistant", "session_id",
        parse="fastapi", note="approves or denies a paused tool call; " + _ASSISTANT),
    ("/api/3.0/mlflow/assistant/sessions/{session_id}/tool-result", "POST"): _s(
        "mlflow.assistant.tool_result", "admin", "assistant", "session_id",
        parse="fastapi", note="feeds a client tool's output into the agent"),
    ("/api/3.0/mlflow/assistant/providers", "GET"): _s(
        "mlflow.assistant.list_providers", "read", "assistant", parse="none"),
    ("/api/3.0/mlflow/assistant/providers/{provider}/health", "GET"): _s(
        "mlflow.assistant.provider_health", "read", "assistant", "provider", parse="none",
        note="probes the provider's CLI/API from the server"),
    ("/api/3.0/mlflow/assistant/providers/{provider}/models", "GET"): _s(
        "mlflow.assistant.provider_models", "read", "assistant", "provider",
        parse="fastapi"),
    ("/api/3.0/mlflow/assistant/config", "GET"): _s(
        "mlflow.assistant.get_config", "read", "assistant", parse="none",
        note="MLflow redacts it for remote callers"),
    ("/api/3.0/mlflow/assistant/config", "PUT"): _s(
        "mlflow.assistant.update_config", "admin", "assistant", parse="fastapi",
        note="providers carry API keys (stored as gateway secrets); projects map experiment "
             "ids to server filesystem paths"),
    ("/api/3.0/mlflow/assistant/skills/install", "POST"): _s(
        "mlflow.assistant.install_skills", "admin", "assistant", parse="fastapi",
        note="writes files on the server: custom_path is any directory the caller names"),

    # ---------------------------------------------------------------- MCP server registry
    ("/api/3.0/mlflow/mcp-servers", "GET"): _s(
        "mlflow.mcp.search_servers", "read", "mcp", listing=True, parse="fastapi"),
    ("/api/3.0/mlflow/mcp-servers", "POST"): _s(
        "mlflow.mcp.create_server", "write", "mcp", parse="fastapi",
        note="name in the body is the new server's name"),
    ("/api/3.0/mlflow/mcp-servers/endpoints", "GET"): _s(
        "mlflow.mcp.search_all_endpoints", "read", "mcp", listing=True, parse="fastapi"),
    ("/api/3.0/mlflow/mcp-servers/{name:path}", "GET"): _s(
        "mlflow.mcp.get_server", "read", "mcp", "name", parse="none"),
    ("/api/3.0/mlflow/mcp-servers/{name:path}", "PATCH"): _s(
        "mlflow.mcp.update_server", "write", "mcp", "name", parse="fastapi",
        note="icons carry client-supplied URLs"),
    ("/api/3.0/mlflow/mcp-servers/{name:path}", "DELETE"): _s(
        "mlflow.mcp.delete_server", "delete", "mcp", "name", parse="none"),
    ("/api/3.0/mlflow/mcp-servers/{name:path}/tags", "POST"): _s(
        "mlflow.mcp.set_tag", "write", "mcp", "name", parse="fastapi"),
    ("/api/3.0/mlflow/mcp-servers/{name:path}/tags/{key:path}", "DELETE"): _s(
        "mlflow.mcp.delete_tag", "write", "mcp", "name", parse="none"),
    ("/api/3.0/mlflow/mcp-servers/{name:path}/aliases", "POST"): _s(
        "mlflow.mcp.set_alias", "write", "mcp", "name", parse="fastapi"),
    ("/api/3.0/mlflow/mcp-servers/{name:path}/aliases/{alias:path}", "GET"): _s(
        "mlflow.mcp.get_version_by_alias", "read", "mcp", "name", parse="none"),
    ("/api/3.0/mlflow/mcp-servers/{name:path}/aliases/{alias:path}", "DELETE"): _s(
        "mlflow.mcp.delete_alias", "write", "mcp", "name", parse="none"),
    ("/api/3.0/mlflow/mcp-servers/{name:path}/versions", "GET"): _s(
        "mlflow.mcp.search_versions", "read", "mcp", "name", listing=True,
        parse="fastapi"),
    ("/api/3.0/mlflow/mcp-servers/{name:path}/versions", "POST"): _s(
        "mlflow.mcp.create_version", "write", "mcp", "name", parse="fastapi",
        note="server_json carries package and remote URLs clients will connect to"),
    ("/api/3.0/mlflow/mcp-servers/{name:path}/versions/{version:path}", "GET"): _s(
        "mlflow.mcp.get_version", "read", "mcp", "name", parse="none"),
    ("/api/3.0/mlflow/mcp-servers/{name:path}/versions/{version:path}", "PATCH"): _s(
        "mlflow.mcp.update_version", "write", "mcp", "name", parse="fastapi"),
    ("/api/3.0/mlflow/mcp-servers/{name:path}/versions/{version:path}", "DELETE"): _s(
        "mlflow.mcp.delete_version", "delete", "mcp", "name", parse="none"),
    ("/api/3.0/mlflow/mcp-servers/{name:path}/versions/{version:path}/tags", "POST"): _s(
        "mlflow.mcp.set_version_tag", "write", "mcp", "name", parse="fastapi"),
    ("/api/3.0/mlflow/mcp-servers/{name:path}/versions/{version:path}/tags/{key:path}",
     "DELETE"): _s("mlflow.mcp.delete_version_tag", "write", "mcp", "name", parse="none"),
    ("/api/3.0/mlflow/mcp-servers/{name:path}/endpoints", "GET"): _s(
        "mlflow.mcp.search_endpoints", "read", "mcp", "name", listing=True,
        parse="fastapi"),
    ("/api/3.0/mlflow/mcp-servers/{name:path}/endpoints", "POST"): _s(
        "mlflow.mcp.create_endpoint", "write", "mcp", "name", parse="fastapi",
        note="url is a client-supplied address published to MCP clients"),
    ("/api/3.0/mlflow/mcp-servers/{name:path}/endpoints/{endpoint_id}", "GET"): _s(
        "mlflow.mcp.get_endpoint", "read", "mcp", "name", parse="none"),
    ("/api/3.0/mlflow/mcp-servers/{name:path}/endpoints/{endpoint_id}", "PATCH"): _s(
        "mlflow.mcp.update_endpoint", "write", "mcp", "name", parse="fastapi",
        note="url is a client-supplied address published to MCP clients"),
    ("/api/3.0/mlflow/mcp-servers/{name:path}/endpoints/{endpoint_id}", "DELETE"): _s(
        "mlflow.mcp.delete_endpoint", "delete", "mcp", "name", parse="none"),
}
# fmt: on

PUBLIC_ROUTES: frozenset[tuple[str, str]] = frozenset(
    key for key, spec in ROUTES.items() if spec.access == "public"
)


def route_key(rule: str, method: str, static_prefix: str = "") -> tuple[str, str]:
    """The table's key for a live rule: static prefix stripped, `/ajax-api/` folded to `/api/`.

    Only an exact prefix segment is stripped, so `/api/...` under prefix `/ap` is left alone;
    rules MLflow never prefixes (Flask's `/build/...`, the FastAPI artifact routes) pass as is.
    """
    prefix = static_prefix.rstrip("/")
    if prefix and (rule == prefix or rule.startswith(prefix + "/")):
        rule = rule[len(prefix) :] or "/"
    if rule.startswith("/ajax-api/"):
        rule = "/api/" + rule[len("/ajax-api/") :]
    return rule, method.upper()


def lookup(rule: str, method: str, static_prefix: str = "") -> RouteSpec | None:
    """The spec for a matched rule, HEAD answered by the GET entry; None means deny."""
    path, method = route_key(rule, method, static_prefix)
    spec = ROUTES.get((path, method))
    if spec is None and method == "HEAD":
        spec = ROUTES.get((path, "GET"))
    return spec


def live_methods(methods: Iterable[str], automatic_options: bool = False) -> set[str]:
    """The methods a rule needs table entries for.

    HEAD is dropped when the rule also has GET (Werkzeug and Starlette add it and run the GET
    handler), and OPTIONS when the router answers it itself (Flask's automatic OPTIONS, which
    only lists the allowed methods). Anything else, HEAD or OPTIONS included, must be mapped.
    """
    wanted = {method.upper() for method in methods}
    if "GET" in wanted:
        wanted.discard("HEAD")
    if automatic_options:
        wanted.discard("OPTIONS")
    return wanted


@dataclass(frozen=True)
class Census:
    """Every route of the live apps, sorted into mapped, unmapped and plugin-owned."""

    mapped: dict[tuple[str, str], RouteSpec]  # live (rule, method), as spelt live → spec
    unmapped: list[tuple[str, str]]  # live (rule, method) pairs the table does not know
    stale: list[tuple[str, str]]  # table keys no live route has (only with both apps)
    flask_rules: int  # Flask url_map rules, /api and /ajax-api twins counted apart
    fastapi_routes: int  # FastAPI-native routes (the mounted Flask app not counted)
    plugin: list[tuple[str, str]] = field(default_factory=list)  # mapped by routes.py
    static_prefix: str = ""

    @property
    def table_entries(self) -> int:
        return len(ROUTES)

    def summary(self) -> str:
        keys = {route_key(rule, method, self.static_prefix) for rule, method in self.mapped}
        return (
            f"{self.flask_rules} Flask rules, {self.fastapi_routes} FastAPI routes, "
            f"{len(self.mapped)} (rule, method) pairs mapped onto {len(keys)} table keys "
            f"({self.table_entries} table entries), {len(self.plugin)} plugin routes, "
            f"{len(self.unmapped)} unmapped, {len(self.stale)} stale"
        )


class UnmappedRoutes(RuntimeError):
    """Start-up stops here: a route nobody classified would be unreachable or, worse, open."""

    def __init__(self, routes: Iterable[tuple[str, str]]) -> None:
        self.routes = sorted(set(routes))
        listed = "\n".join(f"  {method} {rule}" for rule, method in self.routes)
        super().__init__(
            f"{len(self.routes)} route(s) of the installed MLflow are not in the route census "
            f"(mlflow_secure/request/census.py); map each before serving:\n{listed}"
        )


def require_complete(census: Census) -> None:
    if census.unmapped:
        raise UnmappedRoutes(census.unmapped)


def take_census(
    flask_app: Any, fastapi_app: Any = None, static_prefix: str | None = None
) -> Census:
    """Enumerate the live apps and sort every (rule, method) against the table.

    `static_prefix` defaults to what `mlflow server --static-prefix` exported. The Flask app
    mounted at "/" inside the FastAPI app is the only route skipped, its rules coming from
    `url_map`; any other mount, websocket or host route is reported unmapped.
    """
    if static_prefix is None:
        static_prefix = os.environ.get(STATIC_PREFIX_ENV_VAR, "")
    live: list[tuple[str, str]] = []
    flask_rules = 0
    for rule in flask_app.url_map.iter_rules():
        flask_rules += 1
        automatic = bool(getattr(rule, "provide_automatic_options", False))
        live.extend((rule.rule, m) for m in live_methods(rule.methods or (), automatic))
    fastapi_routes = 0
    if fastapi_app is not None:
        for route in _native_routes(fastapi_app, flask_app):
            fastapi_routes += 1
            live.extend(_route_pairs(route))

    mapped: dict[tuple[str, str], RouteSpec] = {}
    unmapped: list[tuple[str, str]] = []
    plugin: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for rule, method in live:
        key = route_key(rule, method, static_prefix)
        if key[0].startswith(PLUGIN_API_PREFIX):
            plugin.append((rule, method))
        elif key in ROUTES:
            mapped[(rule, method)] = ROUTES[key]
            seen.add(key)
        else:
            unmapped.append((rule, method))
    stale = sorted(set(ROUTES) - seen - CONDITIONAL) if fastapi_app is not None else []
    return Census(
        mapped=mapped,
        unmapped=sorted(set(unmapped)),
        stale=stale,
        flask_rules=flask_rules,
        fastapi_routes=fastapi_routes,
        plugin=sorted(set(plugin)),
        static_prefix=static_prefix,
    )


def _native_routes(fastapi_app: Any, flask_app: Any) -> Iterator[Any]:
    """FastAPI's routes with included routers flattened, minus the Flask catch-all mount."""
    try:  # FastAPI >= 0.165 keeps included routers lazy; this is how its OpenAPI walks them.
        from fastapi.routing import iter_route_contexts
    except ImportError:
        routes: Iterable[Any] = fastapi_app.routes
    else:
        routes = iter_route_contexts(fastapi_app.routes)
    for route in routes:
        if _is_flask_mount(route, flask_app):
            continue
        yield route


def _is_flask_mount(route: Any, flask_app: Any) -> bool:
    app = getattr(route, "app", None)
    return getattr(route, "path", None) in ("", "/") and getattr(app, "app", None) is flask_app


def _route_pairs(route: Any) -> list[tuple[str, str]]:
    """(path, method) pairs of one native route; method-less routes keep their kind instead."""
    path = getattr(route, "path", None) or repr(route)
    methods = getattr(route, "methods", None)
    if not methods:
        kind = type(getattr(route, "original_route", route)).__name__.upper()
        return [(path, kind)]
    return [(path, method) for method in live_methods(methods)]
