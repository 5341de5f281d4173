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

import gzip
import json
import unicodedata
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from mlflow.protos import issues_pb2, model_registry_pb2, review_queues_pb2, service_pb2
from mlflow.protos.assessments_pb2 import AssessmentSource
from mlflow.tracing.constant import SpanAttributeKey, TraceMetadataKey
from mlflow.utils.mlflow_tags import MLFLOW_USER
from mlflow.utils.proto_json_utils import parse_dict

JsonObject = dict[str, Any]

# The authorship keys. `mlflow.user` is the author tag of every MLflow entity (and, for traces,
# the author *metadata* key written by MLflow's tracing client). `mlflow.auth.username` and
# `mlflow.auth.userId` are trace metadata MLflow reserves for the server-authenticated caller;
# the AI gateway's per-user budgets count spend by `mlflow.auth.username`. We know the name but
# not MLflow-auth's numeric user id, so a client-supplied `mlflow.auth.userId` is refused.
# `mlflow.trace.user` is deliberately NOT here: MLflow documents it as the *end user of the
# traced application* (set by `mlflow.update_current_trace(user=...)`), which a service
# principal legitimately records on behalf of its own users. See docs/authorship.md.
AUTHOR_TAG = MLFLOW_USER
AUTH_USERNAME = TraceMetadataKey.AUTH_USERNAME
AUTH_USER_ID = TraceMetadataKey.AUTH_USER_ID
OTLP_TRACES_PATH = "/v1/traces"


class AuthorshipViolation(ValueError):
    """A request that tries to record authorship we refuse. The message is a fixed string
    naming only fields from our own table, so it is safe to return to the client in a 400."""


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def _fold(key: str) -> str:
    """Collapse the differences a database collation may ignore (case, accents, compatibility
    forms, padding), so `MLFLOW.USER ` cannot land on the same row as `mlflow.user` on MySQL
    or SQL Server while slipping past an exact-match check here."""
    decomposed = unicodedata.normalize("NFKD", key)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return stripped.casefold().strip()


def _authorship_key(key: object, keys: frozenset[str]) -> bool:
    """True if `key` is one of `keys`; refuse near-misses that a collation could equate."""
    if not isinstance(key, str):
        return False  # ParseDict rejects a non-string key, so it can never become a tag key
    if key in keys:
        return True
    if _fold(key) in {_fold(k) for k in keys}:
        raise AuthorshipViolation(
            "Tag or metadata keys that differ from a reserved authorship key "
            f"({', '.join(sorted(keys))}) only by case, accents or spacing are not allowed."
        )
    return False


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _spelling(obj: JsonObject, name: str, aliases: bool) -> str | None:
    """Which spelling of proto field `name` the client used, if any. ParseDict accepts both
    the proto name and the lowerCamel JSON name; MLflow refuses a body that uses both."""
    if not aliases or _camel(name) == name:
        return name if name in obj else None
    present = [spelling for spelling in (name, _camel(name)) if spelling in obj]
    if len(present) == 2:
        raise AuthorshipViolation(
            f"Request specifies both '{name}' and '{_camel(name)}'; provide only one of them."
        )
    return present[0] if present else None


def _malformed(what: str) -> AuthorshipViolation:
    return AuthorshipViolation(
        f"The request's {what} is malformed, so its authorship cannot be recorded."
    )


def _decode_json_text(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise _malformed(what) from exc


# --------------------------------------------------------------------------------------------
# Rules: each mutates one JSON object in place and reports whether it changed anything.
# --------------------------------------------------------------------------------------------

Mode = Literal["stamp", "check"]
Shape = Literal["list", "map", "json_map"]


@dataclass(frozen=True)
class AuthorField:
    """A dedicated author field (`user_id`, `created_by`, ...): always the principal.
    `insert` adds it when absent, for fields MLflow stores straight from the request."""

    name: str
    insert: bool = True
    stamps = True

    def apply(self, obj: JsonObject, principal: str, aliases: bool) -> bool:
        spelling = _spelling(obj, self.name, aliases)
        if spelling is None:
            if not self.insert:
                return False
            spelling = self.name
        if obj.get(spelling) == principal:
            return False
        obj[spelling] = principal
        return True


@dataclass(frozen=True)
class AuthorEntries:
    """Authorship keys inside a collection of tags or metadata.

    shape: `list` is a repeated {key, value} message (run tags, v2 trace metadata); `map` is a
    proto map, i.e. a JSON object (v3 trace metadata and tags); `json_map` is a string field
    holding a JSON-encoded object (evaluation-dataset tags), which MLflow `json.loads`.
    mode: `stamp` overwrites the value with the principal (and, with `insert`, adds the entry
    when missing); `check` leaves the body alone but refuses any value but the principal.
    refuse: keys that may not appear at all (we cannot stamp a truthful value for them).
    """

    name: str
    shape: Shape
    mode: Mode
    keys: frozenset[str] = frozenset({AUTHOR_TAG})
    insert: bool = False
    refuse: frozenset[str] = frozenset()

    @property
    def stamps(self) -> bool:
        return self.mode == "stamp"

    def apply(self, obj: JsonObject, principal: str, aliases: bool) -> bool:
        spelling = _spelling(obj, self.name, aliases) or self.name
        value = obj.get(spelling)
        if self.shape == "json_map":
            text = value
            if text is not None and not isinstance(text, str):
                raise _malformed(f"'{self.name}' field")
            value = _decode_json_text(text, f"'{self.name}' field") if text else None
            if value is not None and not isinstance(value, dict):
                raise _malformed(f"'{self.name}' field")
        elif value is not None and not isinstance(value, list if self.shape == "list" else dict):
            raise _malformed(f"'{self.name}' field")

        changed = self._apply_entries(value, principal)
        if self.insert and self.mode == "stamp" and not self._has_key(value):
            if value is None:
                value = [] if self.shape == "list" else {}
            if self.shape == "list":
                value.extend({"key": key, "value": principal} for key in sorted(self.keys))
            else:
                value.update(dict.fromkeys(sorted(self.keys), principal))
            changed = True
        if changed:
            obj[spelling] = json.dumps(value) if self.shape == "json_map" else value
        return changed

    def _entries(self, value: list | dict | None) -> Iterator[tuple[Any, Any, Callable]]:
        """(key, value, setter) for each entry that could carry a key."""
        if isinstance(value, dict):
            for key in value:
                yield key, value[key], lambda new, key=key: value.__setitem__(key, new)
        elif isinstance(value, list):
            for entry in value:
                if isinstance(entry, dict):
                    setter = lambda new, entry=entry: entry.__setitem__("value", new)  # noqa: E731
                    yield entry.get("key"), entry.get("value"), setter

    def _has_key(self, value: list | dict | None) -> bool:
        return any(key in self.keys for key, _, _ in self._entries(value))

    def _apply_entries(self, value: list | dict | None, principal: str) -> bool:
        changed = False
        for key, current, set_value in self._entries(value):
            if not _authorship_key(key, self.keys | self.refuse):
                continue
            if key in self.refuse:
                raise AuthorshipViolation(
                    f"'{key}' is recorded by the server and cannot be supplied by the client."
                )
            if self.mode == "check":
                # The store skips a None value in a JSON tag map, so it writes nothing.
                if current is None and self.shape == "json_map":
                    continue
                if current != principal or not isinstance(current, str):
                    raise AuthorshipViolation(
                        f"Only the authenticated caller may be recorded as '{key}'."
                    )
            elif current != principal or not isinstance(current, str):
                set_value(principal)
                changed = True
        return changed


@dataclass(frozen=True)
class AuthorTagPair:
    """A single {key, value} tag write on an existing entity (set-tag endpoints)."""

    keys: frozenset[str] = frozenset({AUTHOR_TAG})
    stamps = False

    def apply(self, obj: JsonObject, principal: str, aliases: bool) -> bool:
        if _authorship_key(obj.get("key"), self.keys):
            value = obj.get("value")
            if value != principal or not isinstance(value, str):
                raise AuthorshipViolation(
                    f"Only the authenticated caller may be recorded as '{obj['key']}'."
                )
        return False


@dataclass(frozen=True)
class NoAuthorKey:
    """A tag deletion (key in the body): the authorship record may not be erased."""

    keys: frozenset[str] = frozenset({AUTHOR_TAG})
    stamps = False

    def apply(self, obj: JsonObject, principal: str, aliases: bool) -> bool:
        if _authorship_key(obj.get("key"), self.keys):
            raise AuthorshipViolation(f"The '{obj['key']}' tag cannot be deleted.")
        return False


@dataclass(frozen=True)
class AuthorDatasetRecords:
    """`records` of UpsertDatasetRecords: a JSON-encoded list of record objects whose
    `tags["mlflow.user"]` becomes the record's created_by / last_updated_by in the store."""

    name: str = "records"
    stamps = True

    def apply(self, obj: JsonObject, principal: str, aliases: bool) -> bool:
        spelling = _spelling(obj, self.name, aliases)
        text = obj.get(spelling) if spelling else None
        if not text:
            return False  # MLflow requires records; nothing to attribute without them
        if not isinstance(text, str):
            raise _malformed("'records' field")
        records = _decode_json_text(text, "'records' field")
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise _malformed("'records' field")
        tags_rule = AuthorEntries("tags", "map", "stamp", insert=True)
        changed = False
        for record in records:
            changed |= tags_rule.apply(record, principal, aliases=False)
        if changed:
            obj[spelling] = json.dumps(records)
        return changed


def _enum_number(message: type[Message], field: str, value: object) -> int | None:
    """The enum number MLflow's parser makes of `value` (names, numbers, numeric strings...),
    or None where it would leave the field unset."""
    try:
        parsed = message()
        parse_dict({field: value}, parsed)
    except (json_format.Error, TypeError, ValueError):
        return None
    return getattr(parsed, field) if parsed.HasField(field) else None


@dataclass(frozen=True)
class HumanAssessmentSource:
    """An assessment's `source`: for HUMAN feedback the `source_id` is the person who gave it.
    LLM-judge and code sources name a model or script, not a person, and are left alone."""

    stamps = True

    def apply(self, obj: JsonObject, principal: str, aliases: bool) -> bool:
        spelling = _spelling(obj, "source", aliases)
        source = obj.get(spelling) if spelling else None
        if source is None:
            return False
        if not isinstance(source, dict):
            raise _malformed("assessment source")
        type_spelling = _spelling(source, "source_type", aliases)
        if type_spelling is None:
            return False
        number = _enum_number(AssessmentSource, "source_type", source[type_spelling])
        if number != AssessmentSource.HUMAN:
            return False
        return AuthorField("source_id").apply(source, principal, aliases)


@dataclass(frozen=True)
class ReviewCompletedBy:
    """`completed_by` of a review-queue item: the caller, unless the item is being reopened
    (PENDING), where the store itself refuses any completed_by."""

    stamps = True

    def apply(self, obj: JsonObject, principal: str, aliases: bool) -> bool:
        status = obj.get("status")
        number = _enum_number(review_queues_pb2.SetReviewQueueItemStatus, "status", status)
        if number == review_queues_pb2.PENDING:
            return False
        return AuthorField("completed_by").apply(obj, principal, aliases)


Rule = (
    AuthorField
    | AuthorEntries
    | AuthorTagPair
    | NoAuthorKey
    | AuthorDatasetRecords
    | HumanAssessmentSource
    | ReviewCompletedBy
)


@dataclass(frozen=True)
class Within:
    """Apply `rules` to the object(s) at `path` below the body. A step ending in `[]` is a
    repeated message (every element); a missing container means nothing to attribute there."""

    path: tuple[str, ...]
    rules: tuple[Rule, ...]

    @property
    def stamps(self) -> bool:
        return any(rule.stamps for rule in self.rules)


@dataclass(frozen=True)
class Endpoint:
    """What one route records. `message` is the request proto the MLflow handler parses the
    body into (None for a handler that reads raw JSON, which knows no camelCase aliases).
    `path_key` is the index of a URL segment naming a tag to delete."""

    rules: tuple[Rule | Within, ...] = ()
    message: type[Message] | None = None
    path_key: int | None = None

    @property
    def stamps(self) -> bool:
        """Whether this route may rewrite the body (and so must prove MLflow parses it)."""
        return any(rule.stamps for rule in self.rules)


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


def _otlp_payload(body: bytes, content_type: str | None, content_encoding: str | None) -> Any:
    """Decode an OTLP export the way `mlflow.server.otel_api.export_traces` does."""
    from mlflow.server.otel_api import _convert_otlp_json_ids_to_base64
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    media_type = content_type.split(";")[0].strip() if content_type else None
    if media_type not in ("application/json", "application/x-protobuf"):
        raise _malformed("content type")
    encoding = content_encoding.lower() if content_encoding else ""
    if encoding not in ("", "gzip", "deflate"):
        raise _malformed("content encoding")
    request = ExportTraceServiceRequest()
    try:
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            try:
                body = zlib.decompress(body)
            except zlib.error:
                body = zlib.decompress(body, -zlib.MAX_WBITS)
        if media_type == "application/json":
            body = _convert_otlp_json_ids_to_base64(body)
            json_format.Parse(body, request, ignore_unknown_fields=True)
        else:
            request.ParseFromString(body)
    except (
        OSError,
        EOFError,
        zlib.error,
        DecodeError,
        json_format.Error,
        ValueError,
        TypeError,
        AttributeError,
    ) as exc:
        raise _malformed("OTLP payload") from exc
    return request


def refuse_otlp_authorship(
    body: bytes, content_type: str | None, content_encoding: str | None
) -> None:
    """Raise AuthorshipViolation if an OTLP export (POST /v1/traces) carries a span attribute
    that MLflow turns into the trace's author tag: `mlflow.traceTag.mlflow.user` (and its
    collation look-alikes). MLflow's own exporter never sends `mlflow.*` tags that way, so a
    well-behaved client is unaffected; a payload we cannot decode as MLflow would is refused.
    `user.id` (which becomes `mlflow.trace.user`, the traced app's end user) is allowed."""
    request = _otlp_payload(body, content_type, content_encoding)
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
