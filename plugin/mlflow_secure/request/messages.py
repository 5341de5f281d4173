"""Which protobuf request message MLflow's handler parses for each census route.

MLflow registers its proto-backed REST routes from its service descriptors (`get_endpoints`:
every rpc of MlflowService, ModelRegistryService, MlflowArtifactsService and WebhookService
carries its HTTP path and method); the handler parses the body into that rpc's request message
with `parse_dict`, which accepts a field under its proto name (`run_id`) or its lowerCamel JSON
name (`runId`), at every nesting level. To read a body exactly as the handler does, the front
door needs that message: it folds JSON names to proto names (`fold_json_names`), so resolution
and the policy see one spelling, and the body MLflow receives carries only that spelling.

The map is built once per process from the installed MLflow, so an upgrade that adds or moves
an rpc is followed automatically; the handful of proto routes registered outside the services
are listed in `_OUTSIDE_SERVICES` (a test fails when a proto route has no message).
"""

from __future__ import annotations

import functools
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from mlflow_secure.request.census import route_key

JsonObject = dict[str, Any]

# Proto-parsed routes whose handler is registered outside the service descriptors.
_OUTSIDE_SERVICES = {
    ("/api/2.0/mlflow/experiments/search-datasets", "POST"): ("service_pb2", "SearchDatasets"),
}


class AliasConflict(ValueError):
    """A body spelling one field both ways (MLflow refuses it too; so do we, before it)."""


@functools.cache
def request_messages() -> dict[tuple[str, str], type]:
    """Census key (path, METHOD) → the request message class the handler parses."""
    from mlflow.protos import (
        databricks_pb2,
        mlflow_artifacts_pb2,
        model_registry_pb2,
        service_pb2,
        webhooks_pb2,
    )
    from mlflow.server.handlers import _get_paths

    found: dict[tuple[str, str], type] = {}
    services = (
        service_pb2.MlflowService,
        model_registry_pb2.ModelRegistryService,
        mlflow_artifacts_pb2.MlflowArtifactsService,
        webhooks_pb2.WebhookService,
    )
    for service in services:
        for method in service.DESCRIPTOR.methods:
            for endpoint in method.GetOptions().Extensions[databricks_pb2.rpc].endpoints:
                for path in _get_paths(endpoint.path, version=endpoint.since.major):
                    key = route_key(path, endpoint.method)
                    found[key] = service().GetRequestClass(method)
    modules = {"service_pb2": service_pb2}
    for key, (module, name) in _OUTSIDE_SERVICES.items():
        found[key] = getattr(modules[module], name)
    return found


def message_for(key: tuple[str, str]) -> type | None:
    return request_messages().get(key)


def _is_plain_message(field: FieldDescriptor) -> bool:
    """A nested message whose keys are proto fields (not a map, not google.protobuf.*)."""
    if field.type != FieldDescriptor.TYPE_MESSAGE:
        return False
    nested = field.message_type
    return not (nested.GetOptions().map_entry or nested.full_name.startswith("google.protobuf."))


def fold_json_names(data: Any, descriptor: Descriptor) -> Any:
    """`data` with every lowerCamel JSON name replaced by the field's proto name, recursively.

    Values are left as they are; keys that are no field stay (MLflow ignores them). Both
    spellings of one field in one object are refused, as MLflow's handler refuses them."""
    if not isinstance(data, dict):
        return data
    folded: JsonObject = {}
    fields = {f.json_name: f for f in descriptor.fields} | {f.name: f for f in descriptor.fields}
    for key, value in data.items():
        field = fields.get(key)
        if field is None:
            folded[key] = value
            continue
        if field.name in folded:
            raise AliasConflict(f"field {field.name!r} is spelt both as proto and JSON name")
        if _is_plain_message(field):
            nested = field.message_type
            if isinstance(value, list):
                value = [fold_json_names(item, nested) for item in value]
            else:
                value = fold_json_names(value, nested)
        folded[field.name] = value
    return folded


def repeated_fields(message: type | None) -> frozenset[str]:
    """The top-level repeated fields: a GET reads them as lists (`args.getlist`)."""
    if message is None:
        return frozenset()
    return frozenset(f.name for f in message.DESCRIPTOR.fields if f.is_repeated)


def field_names(message: type | None) -> frozenset[str]:
    if message is None:
        return frozenset()
    return frozenset(f.name for f in message.DESCRIPTOR.fields)
