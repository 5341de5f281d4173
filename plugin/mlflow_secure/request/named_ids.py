"""Every id a request names besides its main resource, declared per endpoint (census data).

`RouteSpec.ids` says where a route names the resource it acts on. Many requests name others
too: a model version points at a run, a logged model and an artefact URI; a metric can be
logged against a logged model; a trace upsert names the trace it replaces. MLflow acts on each,
so each is resolved and decided with the access it needs, and the request goes ahead only if
every decision allows (resolution.py).

`SECONDARY[endpoint]` lists those ids; `HARMLESS[endpoint]` lists id-like fields that name no
resource of this server, each with the reason. A test walks every request message of the
installed MLflow and fails on any field ending in `_id`, `_ids`, `_uri`, `source`, `name` or
`location` that is neither a route's `ids`, nor here.

Field paths are proto field names, dotted into nested messages, with `[]` for each list.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NamedId:
    field: str  # where the request names it (proto names, dots, [] for lists)
    kind: str  # what it names: a resource type, or "source" (an artefact URI)
    access: str  # the access the request needs on it
    may_be_new: bool = False  # an upsert: decided only when it already exists


def _n(field: str, kind: str, access: str, may_be_new: bool = False) -> NamedId:
    return NamedId(field, kind, access, may_be_new)


SECONDARY: dict[str, tuple[NamedId, ...]] = {
    # a model version reads what it is made from: its artefacts become readable through it
    "mlflow.model_versions.create": (
        _n("run_id", "run", "read"),
        _n("model_id", "logged_model", "read"),
        _n("source", "source", "read"),
    ),
    "mlflow.logged_models.create": (_n("source_run_id", "run", "read"),),
    "mlflow.issues.create": (_n("source_run_id", "run", "read"),),
    # metrics logged against a logged model are written to that model too
    "mlflow.metrics.log": (_n("model_id", "logged_model", "write"),),
    "mlflow.runs.log_batch": (
        _n("metrics[].model_id", "logged_model", "write"),
        _n("metrics[].run_id", "run", "write"),
    ),
    "mlflow.runs.log_inputs": (_n("models[].model_id", "logged_model", "read"),),
    "mlflow.runs.log_outputs": (_n("models[].model_id", "logged_model", "write"),),
    "mlflow.traces.link_to_run": (_n("trace_ids", "trace", "write"),),
    "mlflow.traces.link_prompts": (_n("prompt_versions[].name", "prompt", "read"),),
    "mlflow.traces.delete": (_n("request_ids", "trace", "delete", may_be_new=True),),
    # StartTraceV3 is an upsert: an existing trace id is moved or overwritten by it
    "mlflow.traces.start": (
        _n("trace.trace_info.trace_id", "trace", "write", may_be_new=True),
        _n("trace.trace_info.assessments[].trace_id", "trace", "write", may_be_new=True),
    ),
    # the path names the trace MLflow uses; a different body value must be writable too
    "mlflow.assessments.create": (_n("assessment.trace_id", "trace", "write", may_be_new=True),),
    "mlflow.assessments.update": (_n("assessment.trace_id", "trace", "write", may_be_new=True),),
    # OTLP export into experiment E linked to run R: R is written too
    # and every trace its spans belong to: MLflow appends to an existing trace of that id
    "mlflow.otel.export_traces": (
        _n("header:x-mlflow-run-id", "run", "write"),
        _n("otlp:trace_ids[]", "trace", "write", may_be_new=True),
    ),
    "mlflow.datasets.add_experiments": (_n("experiment_ids", "experiment", "write"),),
    "mlflow.datasets.remove_experiments": (_n("experiment_ids", "experiment", "write"),),
    "mlflow.prompts.create_optimization_job": (
        _n("source_prompt_uri", "source", "read"),
        _n("config.dataset_id", "dataset", "read"),
    ),
    "mlflow.review_queues.create": (_n("schema_ids", "label_schema", "read"),),
    "mlflow.review_queues.update": (_n("schema_ids", "label_schema", "read"),),
    # a gateway endpoint logs its usage traces into this experiment
    "mlflow.gateway.create_endpoint": (_n("experiment_id", "experiment", "write"),),
    "mlflow.gateway.update_endpoint": (_n("experiment_id", "experiment", "write"),),
}

_NEW_NAME = "the name the request gives the object it creates or renames"
_AUTHOR = "authorship: stamped with the authenticated principal (authorship.py)"
_IN_PARENT = "names an object inside the resource the route already decides on"
_GATEWAY = "a gateway object; gateway routes need manage access on the server-wide gateway"
_ADMIN = "the route is for administrators only"
_DATA = "a client-supplied data reference recorded as given; the server never reads it"

HARMLESS: dict[str, dict[str, str]] = {
    "mlflow.artifacts.proxy_multipart_abort": {"upload_id": _IN_PARENT},
    "mlflow.artifacts.proxy_multipart_complete": {"upload_id": _IN_PARENT},
    "mlflow.experiments.create": {
        "name": _NEW_NAME,
        "artifact_location": "judged as the request's URI (uris.rego) and the own-tree rule",
    },
    "mlflow.logged_models.create": {"name": _NEW_NAME},
    "mlflow.registered_models.create": {
        "name": "the registered model being created: the resource itself",
        "deployment_job_id": "an opaque Databricks job reference, not an object of this server",
    },
    "mlflow.registered_models.update": {
        "deployment_job_id": "an opaque Databricks job reference, not an object of this server",
    },
    "mlflow.runs.create": {"user_id": _AUTHOR},
    "mlflow.runs.log_inputs": {
        "datasets[].dataset.name": "a dataset input is created inside the run's experiment",
        "datasets[].dataset.source": _DATA,
    },
    "mlflow.webhooks.create": {"name": _NEW_NAME},
    "mlflow.webhooks.update": {"name": _NEW_NAME},
    "mlflow.datasets.delete_records": {"dataset_record_ids": _IN_PARENT},
    "mlflow.datasets.create": {"name": _NEW_NAME, "source": _DATA},
    "mlflow.issues.create": {"name": _NEW_NAME},
    "mlflow.issues.update": {"name": _NEW_NAME},
    "mlflow.label_schemas.create": {"name": _NEW_NAME},
    "mlflow.label_schemas.get_by_name": {"name": _IN_PARENT},
    "mlflow.label_schemas.update": {"name": _NEW_NAME},
    "mlflow.review_queues.create": {"name": _NEW_NAME},
    "mlflow.review_queues.get_by_name": {"name": _IN_PARENT},
    "mlflow.review_queues.add_items": {"item_ids": _IN_PARENT},
    "mlflow.review_queues.remove_items": {"item_ids": _IN_PARENT},
    "mlflow.review_queues.set_item_status": {"item_id": _IN_PARENT},
    "mlflow.review_queues.list": {"item_id": "filters the queues of the named experiment"},
    "mlflow.review_queues.update": {
        "name": _NEW_NAME,
        "update_schema_ids": "a flag: whether schema_ids replaces the queue's schemas",
    },
    "mlflow.scorers.delete": {"name": _IN_PARENT},
    "mlflow.scorers.get": {"name": _IN_PARENT},
    "mlflow.scorers.register": {"name": _NEW_NAME},
    "mlflow.scorers.list_versions": {"name": _IN_PARENT},
    "mlflow.traces.start": {
        "trace.trace_info.client_request_id": "a client-chosen label of the new trace",
        "trace.trace_info.trace_location": "holds the experiment id the route decides on",
        "trace.trace_info.assessments[].assessment_id": _IN_PARENT,
        "trace.trace_info.assessments[].span_id": _IN_PARENT,
        "trace.trace_info.assessments[].source": _AUTHOR,
        "trace.trace_info.assessments[].source.source_id": _AUTHOR,
        "trace.spans[].trace_id": "span bytes MLflow ignores here (StartTraceV3 keeps no spans)",
        "trace.spans[].span_id": _IN_PARENT,
        "trace.spans[].parent_span_id": _IN_PARENT,
        "trace.spans[].name": "a span's display name",
        "trace.spans[].events[].name": "a span event's display name",
        "trace.spans[].links[].trace_id": "span data: MLflow stores the link, never reads it",
        "trace.spans[].links[].span_id": "span data: MLflow stores the link, never reads it",
    },
    "mlflow.traces.batch_get": {"experiment_ids": "narrowed: unreadable traces are dropped"},
    "mlflow.traces.batch_get_infos": {"experiment_ids": "narrowed: unreadable traces are dropped"},
    "mlflow.assessments.create": {
        "assessment.assessment_id": _IN_PARENT,
        "assessment.span_id": _IN_PARENT,
        "assessment.source": _AUTHOR,
        "assessment.source.source_id": _AUTHOR,
    },
    "mlflow.assessments.update": {
        "assessment.assessment_id": _IN_PARENT,
        "assessment.span_id": _IN_PARENT,
        "assessment.source": _AUTHOR,
        "assessment.source.source_id": _AUTHOR,
    },
    "mlflow.workspaces.create": {"name": _ADMIN, "trace_archival_config.location": _ADMIN},
    "mlflow.workspaces.update": {"trace_archival_config.location": _ADMIN},
    **{
        endpoint: dict.fromkeys(fields, _GATEWAY)
        for endpoint, fields in {
            "mlflow.gateway.create_binding": ("resource_id",),
            "mlflow.gateway.delete_binding": ("resource_id",),
            "mlflow.gateway.list_bindings": ("resource_id",),
            "mlflow.gateway.create_endpoint": ("name", "model_configs[].model_definition_id"),
            "mlflow.gateway.update_endpoint": ("name", "model_configs[].model_definition_id"),
            "mlflow.gateway.list_endpoints": ("secret_id",),
            "mlflow.gateway.attach_model": ("model_config.model_definition_id",),
            "mlflow.gateway.detach_model": ("model_definition_id",),
            "mlflow.gateway.add_guardrail": ("guardrail_id",),
            "mlflow.gateway.create_guardrail": ("name", "scorer_id", "action_endpoint_id"),
            "mlflow.gateway.remove_guardrail": ("guardrail_id",),
            "mlflow.gateway.update_guardrail_config": ("guardrail_id",),
            "mlflow.gateway.create_model_definition": ("name", "secret_id"),
            "mlflow.gateway.list_model_definitions": ("secret_id",),
            "mlflow.gateway.update_model_definition": ("name", "secret_id"),
        }.items()
    },
}


def secondary(endpoint: str) -> tuple[NamedId, ...]:
    return SECONDARY.get(endpoint, ())
