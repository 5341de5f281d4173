"""Every id-like field of every request message MLflow's handlers parse is declared.

The walk covers the installed MLflow: a new field that names a run, a model, a trace or a
URI fails here until the census decides it (`named_ids.SECONDARY`) or says why it names no
resource (`named_ids.HARMLESS`).
"""

import re

import pytest
from google.protobuf.descriptor import FieldDescriptor

from mlflow_secure.request.census import ACCESS_LEVELS, RESOURCE_TYPES, ROUTES
from mlflow_secure.request.messages import request_messages
from mlflow_secure.request.named_ids import HARMLESS, SECONDARY
from mlflow_secure.request.resolution import LOOKUPS

ID_LIKE = re.compile(r"(_id|_ids|_uri|^source|^name|location)$")
MAX_DEPTH = 6


def _nested(field):
    if field.type != FieldDescriptor.TYPE_MESSAGE:
        return None
    message = field.message_type
    if message.GetOptions().map_entry or message.full_name.startswith("google.protobuf."):
        return None
    return message


def id_fields(descriptor, prefix="", seen=()):
    """(path, field) of every id-like field, dotted, `[]` after each repeated message."""
    for field in descriptor.fields:
        path = prefix + field.name
        if ID_LIKE.search(field.name):
            yield path
        nested = _nested(field)
        if nested is not None and len(seen) < MAX_DEPTH and nested.full_name not in seen:
            marker = "[]." if field.is_repeated else "."
            yield from id_fields(nested, path + marker, (*seen, nested.full_name))


def proto_routes():
    messages = request_messages()
    return [
        (key, spec, messages[key])
        for key, spec in sorted(ROUTES.items())
        if spec.parse == "proto" and key in messages
    ]


def declared(spec):
    fields = set(spec.ids)
    fields |= {named.field for named in SECONDARY.get(spec.endpoint, ())}
    fields |= set(HARMLESS.get(spec.endpoint, {}))
    return fields


def test_every_proto_route_has_the_message_its_handler_parses():
    messages = request_messages()
    missing = [key for key, spec in ROUTES.items() if spec.parse == "proto" and key not in messages]
    assert missing == []


def test_every_id_like_field_is_declared_or_harmless():
    undeclared = [
        f"{spec.endpoint}: {path}"
        for _, spec, message in proto_routes()
        for path in id_fields(message.DESCRIPTOR)
        if path not in declared(spec)
    ]
    assert undeclared == [], "declare in request/named_ids.py:\n" + "\n".join(undeclared)


def test_declarations_name_real_endpoints_and_fields():
    """No stale entry: each declared field exists in a message of its endpoint (header and
    front-door names aside), and each names a known kind and access."""
    endpoints = {spec.endpoint for spec in ROUTES.values()}
    fields_by_endpoint: dict[str, set[str]] = {}
    for _, spec, message in proto_routes():
        walked = set(id_fields(message.DESCRIPTOR))
        fields_by_endpoint.setdefault(spec.endpoint, set()).update(walked)
    for endpoint, named in SECONDARY.items():
        assert endpoint in endpoints, endpoint
        for item in named:
            assert item.kind in LOOKUPS, item
            assert item.access in ACCESS_LEVELS, item
            if ":" not in item.field:
                assert item.field in fields_by_endpoint.get(endpoint, set()), item
    for endpoint, fields in HARMLESS.items():
        assert endpoint in endpoints, endpoint
        for field, reason in fields.items():
            assert reason, (endpoint, field)
            assert field in fields_by_endpoint.get(endpoint, set()), (endpoint, field)


@pytest.mark.parametrize("kind", sorted({n.kind for v in SECONDARY.values() for n in v}))
def test_secondary_kinds_are_resource_types_or_uris(kind):
    assert kind in RESOURCE_TYPES or kind in {"source", "label_schema"}
