"""Server-stamped authorship: the authenticated principal, never the client, is the author.

MLflow records "who did this" from whatever the request body says: a run's ``user_id`` and
``mlflow.user`` tag, a trace's ``mlflow.user`` metadata, a human assessment's ``source_id``,
the ``created_by``/``updated_by`` fields of issues and AI-gateway objects, and so on. Any client
could therefore claim to be anyone. The front door has already authenticated the caller, so
before MLflow parses a body we rewrite it:

* requests that create (or complete the creation of) something are *stamped*: every author
  field and authorship tag is overwritten with the principal, and inserted where MLflow's own
  client always sends one, so the record can only ever name the caller;
* requests that set tags on something that already exists may write an authorship tag only
  with the principal as its value (re-asserting yourself is harmless; naming someone else is
  forgery), and may never delete one (that would erase the record);
* a body we cannot read the way MLflow will read it is refused, because a rewrite we cannot
  prove MLflow sees is no stamp at all.

Everything MLflow reads is mirrored: the body is decoded exactly as ``_get_request_message``
does (Flask ``get_json`` semantics plus the double-encoded-string fallback), proto fields are
matched under both their proto name and their lowerCamel JSON name (``ParseDict`` accepts
both; a body using both spellings is refused, as MLflow itself does), and a stamped body is
parsed with MLflow's own ``parse_dict`` into the handler's request message before it is let
through, so a field we stamped can never be silently dropped by a partial parse.

The rules for every endpoint live in one table, ``ENDPOINTS``; anything not in it is passed
through untouched after a dict lookup. See docs/authorship.md for what is stamped and why.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message
from mlflow.tracing.constant import SpanAttributeKey
from mlflow.utils.proto_json_utils import parse_dict

from mlflow_secure.request.authorship.rules import (
    AUTHOR_TAG,
    AuthorshipViolation,
    NoAuthorKey,
    Rule,
    Within,
    _fold,
    _malformed,
    _spelling,
)
from mlflow_secure.request.authorship.table import (
    ENDPOINTS,
    find_endpoint,
)
from mlflow_secure.request.canonical import in_mlflow_words
from mlflow_secure.request.otlp import OtlpError, decode_export

JsonObject = dict[str, Any]

# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def _decode_body(body: bytes) -> JsonObject:
    """The JSON object MLflow's `_get_normalized_request_json` would hand to the parser."""
    if not body.strip():
        return {}
    try:
        data = json.loads(body)  # Flask's get_json: bytes in, UTF-8/16/32 detected
        if isinstance(data, str):  # older clients double-encode; MLflow decodes again
            data = json.loads(data)
    except ValueError as exc:
        raise _malformed("JSON body") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise _malformed("JSON body")
    return data


def _containers(obj: JsonObject, path: tuple[str, ...], aliases: bool) -> Iterator[JsonObject]:
    if not path:
        yield obj
        return
    step, rest = path[0], path[1:]
    repeated = step.endswith("[]")
    name = step.removesuffix("[]")
    spelling = _spelling(obj, name, aliases)
    child = obj.get(spelling) if spelling else None
    if child is None:
        return
    if repeated and not isinstance(child, list):
        raise _malformed(f"'{name}' field")
    for item in child if repeated else [child]:
        if not isinstance(item, dict):
            raise _malformed(f"'{name}' field")
        yield from _containers(item, rest, aliases)


def _apply(
    rules: tuple[Rule | Within, ...], obj: JsonObject, principal: str, aliases: bool
) -> bool:
    changed = False
    for rule in rules:
        if isinstance(rule, Within):
            for container in _containers(obj, rule.path, aliases):
                changed |= _apply(rule.rules, container, principal, aliases)
        else:
            changed |= rule.apply(obj, principal, aliases)
    return changed


def _verify_parses(data: JsonObject, message: type[Message]) -> None:
    """Parse the body exactly as the MLflow handler will. MLflow swallows ParseError and acts
    on a partially filled message, which could drop a field we stamped; refuse instead."""
    try:
        parse_dict(data, message())
    except (json_format.Error, TypeError, ValueError) as exc:
        said = in_mlflow_words(message, data)  # MLflow's 400 for this body, if it has one
        if said is not None:
            raise said from exc
        raise AuthorshipViolation(
            f"The request body is not a valid {message.DESCRIPTOR.name} request, "
            "so its authorship cannot be recorded."
        ) from exc


def stamp_authorship(path: str, method: str, body: bytes, principal: str) -> bytes | None:
    """Return a rewritten JSON body carrying `principal` as the author, or None when the
    request records no authorship (pass the body through unchanged).

    `path` is the decoded request path with `/ajax-api/` folded to `/api/` and any static
    prefix removed. Raises AuthorshipViolation when the request tries to set authorship in a
    way we refuse: an authorship tag naming someone else on an existing entity, deleting one,
    both spellings of a field, near-miss spellings of a reserved key, or a body (or nested
    JSON string) MLflow would not parse completely on an endpoint that records a user.
    """
    found = find_endpoint(path, method)
    if found is None:
        return None
    endpoint, segments = found
    if not principal:
        raise ValueError("stamp_authorship needs the authenticated principal")
    if endpoint.path_key is not None:
        NoAuthorKey().apply({"key": segments[endpoint.path_key]}, principal, aliases=False)
    if not endpoint.rules:
        return None
    try:
        data = _decode_body(body)
        aliases = endpoint.message is not None
        changed = _apply(endpoint.rules, data, principal, aliases)
        if endpoint.message is not None and endpoint.stamps:
            _verify_parses(data, endpoint.message)
        return json.dumps(data).encode() if changed else None
    except RecursionError as exc:  # absurdly deep nesting: Flask would fail with a 500
        raise _malformed("JSON body") from exc


# --------------------------------------------------------------------------------------------
# OTLP (/v1/traces): protobuf or JSON, possibly compressed. We refuse rather than rewrite.
# --------------------------------------------------------------------------------------------

_OTLP_AUTHOR_ATTRIBUTE = SpanAttributeKey.TRACE_TAG_PREFIX + AUTHOR_TAG


def refuse_otlp_authorship(
    body: bytes, content_type: str | None, content_encoding: str | None
) -> None:
    """Raise AuthorshipViolation if an OTLP export (POST /v1/traces) carries a span attribute
    that MLflow turns into the trace's author tag: `mlflow.traceTag.mlflow.user` (and its
    collation look-alikes). MLflow's own exporter never sends `mlflow.*` tags that way, so a
    well-behaved client is unaffected; a payload we cannot decode as MLflow would is refused.
    `user.id` (which becomes `mlflow.trace.user`, the traced app's end user) is allowed."""
    try:
        request = decode_export(body, content_type, content_encoding)
    except OtlpError as exc:
        raise _malformed(str(exc)) from exc
    prefix = SpanAttributeKey.TRACE_TAG_PREFIX
    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                for attribute in span.attributes:
                    if attribute.key == _OTLP_AUTHOR_ATTRIBUTE or (
                        attribute.key.startswith(prefix)
                        and _fold(attribute.key[len(prefix) :]) == _fold(AUTHOR_TAG)
                    ):
                        raise AuthorshipViolation(
                            f"OTLP span attribute '{_OTLP_AUTHOR_ATTRIBUTE}' is recorded by "
                            "the server and cannot be supplied by the client."
                        )


__all__ = [
    "ENDPOINTS",
    "AuthorshipViolation",
    "find_endpoint",
    "refuse_otlp_authorship",
    "stamp_authorship",
]
