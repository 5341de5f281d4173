"""One canonical reading of an MLflow request, and the request MLflow receives rebuilt from it.

What is judged is what runs: the front door reads a request's parameters once, exactly as the
census says MLflow's handler for that route reads them, and then replaces the query string and
the JSON body MLflow will see with a re-encoding of that one reading. Whatever MLflow's parser
would have made of the original bytes (a double-encoded body, a camelCase alias, a parameter in
the query of a route that reads the body, a repeated query parameter, odd percent-encoding),
MLflow now parses the canonical bytes, which say exactly what resolution, the policy,
narrowing, authorship and the audit event saw.

How each census parse mode is read (MLflow's own helpers in mlflow/server/handlers.py):
  proto          `_get_request_message`: a GET with a query string reads the query, by proto
                 field name only, repeated fields as lists; anything else reads the JSON body
                 (`_get_normalized_request_json`: decoded a second time when it is a JSON
                 string), where `parse_dict` accepts proto and JSON names at every level: JSON
                 names are folded to proto names (messages.py).
  query_or_json  `_get_validated_flask_request_json`: as proto, literal names, no folding.
  json           the JSON body (decoded the same way), literal names. A GET has no body here
                 (refused), so its query is read: GraphQL's narrower rebuilds it as a body.
  query          `request.args` only; the body (an artefact's bytes) is never read here.
  fastapi        FastAPI binding: path, query and JSON body fields by name; a name in both the
                 query and the body is ambiguous. A non-JSON body (OTLP protobuf) is left as is.
  none           path variables only; the query is re-encoded as parsed.

Refused with 400 (nothing reaches MLflow): a body that is not a JSON object, duplicate keys,
both spellings of one field, a repeated query parameter that is not a list, a query parameter
naming a field on a route that reads the body (or a body on one that reads the query), a
compressed JSON body, and a path variable the request contradicts.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote

from google.protobuf.descriptor import FieldDescriptor

from mlflow_secure.request import messages, mlflow_validation
from mlflow_secure.request.census import RouteSpec

JsonObject = dict[str, Any]


class AmbiguousRequest(ValueError):
    """Answered with 400; the message names the parameter, never its value."""


class BadRequest(ValueError):
    """A request this layer refuses outright (400, the message as it is)."""

    def __init__(
        self,
        message: str,
        error_code: str | None = None,
        reason: str = "",
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.error_code = error_code  # MLflow's, when the words are MLflow's
        self.reason = reason or message  # for the audit trail: never a value from the body
        self.extra = dict(extra or {})  # more of MLflow's answer (error_class, sqlstate)


def in_mlflow_words(message: type, payload: Any) -> BadRequest | None:
    """The refusal of a body that does not parse into `message`, in MLflow's words, when its
    handler's schema says something (mlflow_validation.py). MLflow's words may quote the
    value; the audit trail gets a reason without it."""
    said = mlflow_validation.refusal(message, payload)
    if said is None:
        return None
    reason = f"the body does not parse into {message.__name__} (MLflow's schema refuses it)"
    words, code = str(said.pop("message", "")), said.pop("error_code", None)
    return BadRequest(words, code or "INVALID_PARAMETER_VALUE", reason, said)


# Query parameters read as lists by handlers without a proto message to say so: repeated proto
# fields outside any message we know, and get-history-bulk's `run_id` (`request.args.getlist`).
LIST_PARAMS = frozenset(
    {
        "experiment_ids",
        "run_ids",
        "trace_ids",
        "scorer_ids",
        "item_ids",
        "schema_ids",
        "dataset_record_ids",
        "metric_keys",
        "order_by",
    }
)
LIST_PARAMS_BY_ENDPOINT = {"mlflow.metrics.get_history_bulk": frozenset({"run_id"})}
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_BODY_MODES = frozenset({"proto", "query_or_json", "json"})


@dataclass
class CanonicalRequest:
    """The one reading of a request that every later step uses."""

    params: JsonObject  # what the handler reads, path variables and id headers included
    query: bytes  # the query string MLflow receives
    body: bytes | None = None  # the body MLflow receives (None: the original, unread)
    payload: JsonObject | None = None  # the JSON object `body` encodes (None: no JSON body)
    path_params: Mapping[str, Any] = field(default_factory=dict)
    # The proto message the handler reads, and the JSON it validates against its schema
    # (`_get_request_message`: the body, or a GET's message fields); None without a message.
    message: type | None = None
    message_json: JsonObject | None = None

    def with_payload(self, payload: JsonObject) -> CanonicalRequest:
        """The same request with a new JSON body (a stamped author, a default project)."""
        params = {k: v for k, v in self.params.items() if k not in (self.payload or {})}
        params.update({k: v for k, v in payload.items() if ":" not in str(k)})
        _merge_path(params, self.path_params)
        return CanonicalRequest(
            params=params,
            query=self.query,
            body=encode_json(payload),
            payload=payload,
            path_params=self.path_params,
            message=self.message,
            message_json=payload if self.message is not None else None,
        )


def encode_json(payload: JsonObject) -> bytes:
    try:
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: valid JSON, no text MLflow could store
        raise BadRequest("The request body holds text that is not valid Unicode.") from None


def check_parses(payload: JsonObject, message: type) -> None:
    """MLflow's handler parses the body into its message and, when that fails, quietly goes
    on with the fields parsed before the failure (`_get_request_message`): an id of the wrong
    type then reaches MLflow as an empty value (a search of everything). Refused here."""
    from google.protobuf.json_format import ParseDict, ParseError

    try:
        ParseDict(payload, message(), ignore_unknown_fields=True)
    except (ParseError, TypeError, ValueError) as exc:
        said = in_mlflow_words(message, payload)
        raise said or BadRequest(f"The request does not match {message.__name__}: {exc}") from None


def encode_query(pairs: list[tuple[str, str]]) -> bytes:
    """Percent-encode every byte that is not unreserved: Werkzeug and Starlette decode it back
    to exactly these strings."""
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs).encode("ascii")


def list_params(spec: RouteSpec | None, message: type | None = None) -> frozenset[str]:
    lists = LIST_PARAMS | messages.repeated_fields(message)
    if spec is not None:
        lists |= LIST_PARAMS_BY_ENDPOINT.get(spec.endpoint, frozenset())
    return lists


def reads_body(spec: RouteSpec, method: str, content_type: str | None) -> bool:
    """Whether the handler reads a JSON body (so the front door must buffer and rebuild it)."""
    if spec.parse in _BODY_MODES:
        return method not in _READ_METHODS
    if spec.parse == "fastapi":
        return method not in _READ_METHODS and fastapi_reads_json(content_type)
    return False


def fastapi_reads_json(content_type: str | None) -> bool:
    """FastAPI parses a body as JSON when the content type is absent, `application/json` or
    any `application/*+json`; otherwise its handlers get the bytes (OTLP protobuf)."""
    media = (content_type or "").split(";")[0].strip().lower()
    if not media:
        return True
    main, _, sub = media.partition("/")
    return main == "application" and (sub == "json" or sub.endswith("+json"))


def parse_query(query: bytes, lists: frozenset[str]) -> tuple[JsonObject, list[tuple[str, str]]]:
    """Query parameters by name (lists where the handler reads a list) and the pairs in order."""
    pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    params: JsonObject = {}
    for name, value in pairs:
        if name in lists:
            params.setdefault(name, []).append(value)
        elif name in params:
            raise AmbiguousRequest(f"query parameter {name!r} is given more than once")
        else:
            params[name] = value
    return params, pairs


def _no_duplicates(pairs: list[tuple[str, Any]]) -> JsonObject:
    result: JsonObject = {}
    for name, value in pairs:
        if name in result:
            raise AmbiguousRequest(f"field {name!r} appears more than once in the body")
        result[name] = value
    return result


def decode_json_body(body: bytes) -> JsonObject:
    """The JSON object MLflow's `_get_normalized_request_json` hands the parser: an empty body
    is {}, a JSON string is decoded a second time. Anything else that is not an object is
    refused (MLflow would quietly read it as an empty request)."""
    if not body.strip():
        return {}
    try:
        data = json.loads(body, object_pairs_hook=_no_duplicates)
        if isinstance(data, str):
            data = json.loads(data, object_pairs_hook=_no_duplicates)
    except AmbiguousRequest:
        raise
    except ValueError:
        raise BadRequest("The request body is not valid JSON.") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise BadRequest("The request body must be a JSON object.")
    return data


def _as_message_json(query: JsonObject, message: type) -> JsonObject:
    """The query as `_get_request_message` hands it to the parser: message fields only, and
    booleans spelt `true`/`false` in any case (MLflow itself refuses any other spelling)."""
    fields = {f.name: f for f in message.DESCRIPTOR.fields}
    found: JsonObject = {}
    for name, value in query.items():
        field = fields.get(name)
        if field is None:
            continue
        if field.type == FieldDescriptor.TYPE_BOOL and isinstance(value, str):
            if value.lower() not in ("true", "false"):
                continue  # MLflow answers this with its own 400
            value = value.lower() == "true"
        found[name] = value
    return found


def _merge_path(params: JsonObject, path_params: Mapping[str, Any]) -> None:
    for name, value in path_params.items():
        if name in params and str(params[name]) != str(value):
            raise AmbiguousRequest(f"{name!r} in the URL contradicts the request")
        params[name] = value


def read(
    spec: RouteSpec,
    key: tuple[str, str] | None,
    method: str,
    query: bytes,
    body: bytes | None,
    path_params: Mapping[str, Any],
    content_encoding: str | None = None,
) -> CanonicalRequest:
    """Read the request once, as the handler for `spec` will. `body` is None when the front
    door did not buffer it (`reads_body` said the handler does not read it as JSON)."""
    message = messages.message_for(key) if key is not None and spec.parse == "proto" else None
    lists = list_params(spec, message)
    query_params, pairs = parse_query(query, lists)
    canonical_query = encode_query(pairs)
    if body is not None and (content_encoding or "identity").lower() != "identity":
        raise BadRequest("A compressed JSON body is not accepted here; send it uncompressed.")
    payload: JsonObject | None = None
    if body is not None:
        payload = decode_json_body(body)
        if message is not None:
            try:
                payload = messages.fold_json_names(payload, message.DESCRIPTOR)
            except messages.AliasConflict as exc:
                raise AmbiguousRequest(str(exc)) from None

    message_json: JsonObject | None = None
    if message is not None and payload is not None:
        message_json = payload
    elif message is not None and spec.parse == "proto":
        message_json = _as_message_json(query_params, message)
    if message is not None and message_json is not None:
        check_parses(message_json, message)
    if spec.parse in _BODY_MODES and payload is not None:
        # The handler reads the body; a field in the query would be a second, unread value.
        named = messages.field_names(message) | set(spec.ids) | set(payload)
        stray = sorted(n for n in query_params if n in named or n.split(".")[0] in named)
        if stray:
            raise AmbiguousRequest(
                f"{stray[0]!r} is read from the JSON body for this endpoint, not the query"
            )
        params = dict(payload)
    elif spec.parse == "fastapi" and payload is not None:
        both = sorted(set(query_params) & set(payload))
        if both:
            raise AmbiguousRequest(f"{both[0]!r} is given in both the query and the body")
        params = {**query_params, **payload}
    elif spec.parse == "none":
        params = {}
    else:
        params = dict(query_params)
    _merge_path(params, path_params)
    return CanonicalRequest(
        params=params,
        query=canonical_query,
        body=encode_json(payload) if payload is not None else None,
        payload=payload,
        path_params=path_params,
        message=message if message_json is not None else None,
        message_json=message_json,
    )
