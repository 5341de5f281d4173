"""What every narrowed listing shares: the request it sees, the replies it makes, page tokens,
and one batched filter call over distinct attribute groups.

A listing is narrowed in one of three ways, chosen per endpoint:

* `Rewrite`: the request is rewritten before MLflow sees it (runs search names its
  experiments; only the readable ones are left), so MLflow's own paging stays exact;
* `JsonReply`: the front door answers itself from MLflow's store (experiment search, where
  MLflow's query cannot be told which experiments to keep);
* `None`: nothing to narrow (MLflow will refuse the request itself).

The policy is asked ONCE per request (`ListingRequest.allowed` refuses a second call): items
are described by the attributes the policy reads (project, classification, owner, policy
tags), and items that look alike are asked about once, as one group. A group's resource has a
synthetic id (`group-<n>`) and `"group": true`, so a rule written about one particular id
never matches a listing: it fails closed, hiding the item, never showing another.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Hashable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any

from mlflow.exceptions import MlflowException

Allowed = Callable[[list[dict[str, Any]]], AbstractSet[str]]
DEFAULT_MAX_RESULTS = 1000
MAX_RESULTS_LIMIT = 50_000
MAX_OFFSET = 2**40


class ListingError(ValueError):
    """A malformed listing request: answered with 400."""


@dataclass
class ListingRequest:
    """One listing request as the handler will read it, and the one filter call it may make."""

    params: Mapping[str, Any]
    method: str
    resolver: Any  # ResourceResolver
    filter_call: Allowed
    # Partial evaluation for listings pushed into the store query (pushdown.py): OPA's
    # Compile API, and the subject and action it is asked about. None: batched filter only.
    compile_call: Any = None
    subject_and_action: Mapping[str, Any] = field(default_factory=dict)
    revision: str | None = None  # the policy revision the residual may be cached under
    _used: bool = field(default=False, repr=False)

    def allowed(self, resources: list[dict[str, Any]]) -> AbstractSet[str]:
        if self._used:
            raise RuntimeError("a listing asks the policy once per request")
        self._used = True
        return self.filter_call(resources) if resources else frozenset()


@dataclass(frozen=True)
class Rewrite:
    """The request MLflow should see instead: a new JSON body, or a new query string."""

    body: bytes | None = None
    query: bytes | None = None


class JsonReply:
    """A response the front door sends itself (shaped like ErrorResponse for the senders)."""

    def __init__(self, status: int, payload: bytes) -> None:
        self.status = status
        self._payload = payload

    def body(self) -> bytes:
        return self._payload

    def reason(self) -> str:
        """The error message of an error reply (for the audit trail)."""
        try:
            message = json.loads(self._payload).get("message")
        except (ValueError, AttributeError):
            message = None
        return str(message) if message else f"refused with {self.status}"

    def header_list(self) -> list[tuple[str, str]]:
        return [
            ("content-type", "application/json"),
            ("content-length", str(len(self._payload))),
            ("cache-control", "no-store"),
            ("x-content-type-options", "nosniff"),
        ]


def mlflow_error(exc: MlflowException) -> JsonReply:
    return JsonReply(exc.get_http_status_code(), exc.serialize_as_json().encode())


def readable_by_group(
    described: Mapping[str, dict[str, Any]], allowed: Allowed, stored_as: str | None = None
) -> set[str]:
    """The ids of `described` (id → attributes) the policy lets the caller read.

    One filter call whatever the number of items, its size the number of distinct attribute
    sets. `stored_as` names the attribute that marks an experiment-scoped resource as read
    from the store (the policy's `stored`): it is set to the group id.
    """
    keys = {item: _frozen(attributes) for item, attributes in described.items()}
    first = {key: described[item] for item, key in reversed(keys.items())}
    return readable_by_key(keys, first.__getitem__, allowed, stored_as)


def readable_by_key(
    keys: Mapping[str, Hashable],
    describe: Callable[[Any], dict[str, Any]],
    allowed: Allowed,
    stored_as: str | None = None,
) -> set[str]:
    """As `readable_by_group`, for callers that already hold a hashable key per item (the
    attributes as a tuple): only one attribute dict per group is ever built."""
    members: dict[Hashable, list[str]] = {}
    for item, key in keys.items():
        members.setdefault(key, []).append(item)
    resources, by_group = [], {}
    for index, key in enumerate(members):
        group = f"group-{index}"
        resource = {**describe(key), "id": group, "group": True}
        if stored_as:
            resource[stored_as] = group
        resources.append(resource)
        by_group[group] = members[key]
    permitted = allowed(resources)
    return {item for group in permitted for item in by_group.get(group, ())}


def _frozen(value: Any) -> Hashable:
    if isinstance(value, dict):
        return tuple(sorted((k, _frozen(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    return value


def max_results(value: Any) -> int:
    count = value or DEFAULT_MAX_RESULTS
    if type(count) is not int or not 0 < count <= MAX_RESULTS_LIMIT:
        raise ListingError(f"max_results must be between 1 and {MAX_RESULTS_LIMIT}.")
    return count


def encode_offset(offset: int) -> str:
    raw = json.dumps({"o": offset}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode()


def decode_offset(token: str | None) -> int:
    """The position a page token names in the narrowed order (0 without a token)."""
    if not token:
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(token.encode()))["o"]
    except (ValueError, KeyError, TypeError):
        raise ListingError("Invalid page token.") from None
    # Bounded: a database integer must hold the offset plus a page (an offset of 2**63 would
    # overflow SQLite's and answer 500). No store holds 2**40 items.
    if not isinstance(offset, int) or isinstance(offset, bool) or not 0 <= offset <= MAX_OFFSET:
        raise ListingError("Invalid page token.")
    return offset


def uniform(listing: ListingRequest, resource_type: str) -> JsonReply | None:
    """A listing whose items carry no attributes the policy reads (gateway secrets, webhooks):
    they form one group, so one question decides the whole page. Readable: MLflow answers as
    it would (None); not readable: an empty page, `{}` in MLflow's proto JSON."""
    group = {
        "type": resource_type,
        "project": None,
        "classification": None,
        "owner": None,
        "tags": {},
    }
    if readable_by_key({"all": ()}, lambda _: group, listing.allowed):
        return None
    return JsonReply(200, b"{}")
