"""The kinds of authorship rule an endpoint can have, and the violations they raise."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from google.protobuf import json_format
from google.protobuf.message import Message
from mlflow.protos import review_queues_pb2
from mlflow.protos.assessments_pb2 import AssessmentSource
from mlflow.tracing.constant import TraceMetadataKey
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
