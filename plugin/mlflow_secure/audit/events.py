"""What one audit event holds, how it is hashed into the chain, and how it is kept secret-free.

An event is built from facts the front door already has (subject, route, decision, status);
nothing here reads a request body or an Authorization header, so no credential can reach an
event by construction. Free text that could still carry one by accident (a path, a query
parameter name, the User-Agent, a policy reason) is truncated and scrubbed of anything shaped
like an API key or a JWT, and query string *values* are never kept at all.

The chain: every stored event is a flat JSON object of ``HASHED_FIELDS`` and of those
``OPTIONAL_FIELDS`` it has a value for; its ``hash`` is the SHA-256 of the canonical JSON of all
its fields but ``hash``, which include the event's ``seq`` and the previous event's hash
(``prev_hash``; 64 zeros for the first event). Canonical JSON is
``json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`` in UTF-8,
so anyone can recompute a hash from a JSON lines export with a few lines of any language. An
optional field is absent (not null) when it has no value, so events written before it existed
keep their hashes, and the rule "every field but ``hash``" holds for old and new events alike.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

SCHEMA_VERSION = 1
GENESIS_HASH = "0" * 64
REQUEST = "request"
GAP = "audit.gap"
DECISIONS = ("allow", "deny", "unauthenticated", "unavailable")

# Event fields in the order of the stored record; all of them (plus the chain fields) are hashed.
EVENT_FIELDS = (
    "event",
    "time",
    "subject",
    "subject_kind",
    "auth",
    "key_id",
    "client_ip",
    "user_agent",
    "method",
    "path",
    "query_params",
    "endpoint",
    "resource_type",
    "resource_id",
    "resource_context",
    "decision",
    "reasons",
    "decision_id",
    "policy_revision",
    "status",
    "latency_ms",
    "dropped",
)
CHAIN_FIELDS = ("v", "seq", "prev_hash")
HASHED_FIELDS = CHAIN_FIELDS + EVENT_FIELDS
RECORD_FIELDS = (*HASHED_FIELDS, "hash")
# Fields added since the first format: present in a record (and hashed) only when they have
# a value. `client`: the client build, from the X-MLflow-Secure-Client request header.
OPTIONAL_FIELDS = ("client",)

# Which keys of the policy's resource are worth keeping; tags and request-derived lists are
# not (tags can hold pasted secrets, and they are the tracking store's business anyway).
RESOURCE_CONTEXT_KEYS = ("experiment_id", "project", "classification", "owner")
# For the plugin's own identity resources (admin/resources.py): what a change did and to
# whom (the member added, the role granted, the fields updated, a key's owner and scopes).
IDENTITY_RESOURCE_TYPES = frozenset(
    {"principal", "user", "service_account", "team", "project", "api_key"}
)
IDENTITY_CONTEXT_KEYS = (
    "change",
    "member",
    "team",
    "role",
    "roles",
    "fields",
    "kind",
    "clearance",
    "disabled",
    "default_project",
    "owner",
    "owner_kind",
    "owner_team",
    "scopes",
    "projects",
)
# For the key service (keys/resources.py): which data key, for which artefact (never a key).
KEY_CONTEXT_KEYS = ("key_id", "artefact")
_CONTEXT_KEYS = frozenset(RESOURCE_CONTEXT_KEYS + IDENTITY_CONTEXT_KEYS + KEY_CONTEXT_KEYS)

# Bounds keep one event small whatever the client sends.
MAX_PATH = 2048
MAX_TEXT = 256
MAX_REASON = 512
MAX_REASONS = 32
MAX_QUERY_PARAMS = 32
MAX_FORWARDED_HOPS = 64
MAX_ADDRESS = 64  # an IPv6 address with brackets, zone and port fits; longer is not an address

_API_KEY = re.compile(r"mlsk_[0-9A-Za-z]*")
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
_FORWARDED_FOR = re.compile(r'(?:^|;)\s*for\s*=\s*("[^"]*"|[^;,\s]*)', re.IGNORECASE)
_PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-\[\]]{0,63}")
REDACTED = "[REDACTED]"


# ---------------------------------------------------------------- scrubbing


def redact(text: str) -> str:
    """Replace anything shaped like one of our API keys or a JWT (defence in depth)."""
    text = _API_KEY.sub("mlsk_" + REDACTED, text)
    return _JWT.sub(REDACTED, text)


def _clean(value: object, limit: int) -> str | None:
    """A bounded, valid-UTF-8, secret-scrubbed string (or None)."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = value if isinstance(value, str) else str(value)
    if not text.isascii():
        text = text.encode("utf-8", "replace").decode("utf-8")  # lone surrogates → "?"
    if "mlsk_" in text or "eyJ" in text:  # the common case skips the regular expressions
        text = redact(text)
    return text[:limit]


def scrub_path(path: str, query: bytes | str = b"") -> tuple[str, tuple[str, ...]]:
    """The path as requested, and the *names* of the query parameters (values are dropped).

    A name is kept only when it came with an ``=`` (a bare ``?token`` is a value) and looks like
    a parameter name; the result is sorted and de-duplicated, so it says which parameters were
    sent, never what they were.
    """
    if isinstance(query, bytes):
        query = query.decode("latin-1")
    names: set[str] = set()
    for part in re.split(r"[&;]", query):
        name, sep, _value = part.partition("=")
        if not sep:
            continue
        try:
            name = unquote_plus(name, errors="strict")
        except UnicodeDecodeError:
            continue
        if _PARAM_NAME.fullmatch(name) and redact(name) == name:
            names.add(name)
    kept = tuple(sorted(names)[:MAX_QUERY_PARAMS])
    return _clean(path, MAX_PATH) or "", kept


# ---------------------------------------------------------------- client address


Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_trusted_proxies(value: str | Iterable[str | Network]) -> tuple[Network, ...]:
    """``MLFLOW_SECURE_TRUSTED_PROXIES``: comma-separated IPs and CIDRs; ValueError otherwise."""
    items = value.split(",") if isinstance(value, str) else value
    networks: list[Network] = []
    for item in items:
        if isinstance(item, ipaddress.IPv4Network | ipaddress.IPv6Network):
            networks.append(item)
            continue
        text = item.strip()
        if not text:
            continue
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ValueError(f"{text!r} is not an IP address or CIDR range") from None
    return tuple(networks)


def _address(text: str) -> Address | None:
    """An IP from a peer or forwarded hop: brackets, ports and IPv4-mapped IPv6 handled."""
    text = text.strip().strip('"')
    return _parse_address(text) if len(text) <= MAX_ADDRESS else None


@functools.lru_cache(maxsize=1024)  # a few proxies and busy clients repeat the same strings
def _parse_address(text: str) -> Address | None:
    if text.startswith("["):  # "[2001:db8::1]:4711" or "[2001:db8::1]"
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:  # "192.0.2.1:4711"
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text.partition("%")[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def _header_values(headers: object, name: str) -> list[str]:
    """Every value of header `name`, from a mapping or from (name, value) pairs (str or bytes);
    None values (a WSGI ``environ.get`` of an absent header) are skipped."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    found = []
    for key, value in pairs:  # type: ignore[union-attr]
        key_text = key.decode("latin-1") if isinstance(key, bytes) else str(key)
        if key_text.lower() == name and value is not None:
            found.append(value.decode("latin-1") if isinstance(value, bytes) else str(value))
    return found


def _split_outside_quotes(value: str) -> list[str]:
    """Split at commas that are not inside a quoted string (linear, whatever the input)."""
    parts, start, quoted = [], 0, False
    for index, char in enumerate(value):
        if char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            parts.append(value[start:index])
            start = index + 1
    parts.append(value[start:])
    return parts


def _forwarded_for(values: list[str]) -> list[str]:
    """The ``for=`` of each element of RFC 7239 ``Forwarded`` headers, left to right."""
    hops: list[str] = []
    for value in values:
        for element in _split_outside_quotes(value):
            match = _FORWARDED_FOR.search(element)
            hops.append(match.group(1) if match else "")
    return hops


def client_ip(
    peer_ip: str | None,
    headers: Mapping[str, str] | Iterable[tuple[str | bytes, str | bytes]],
    trusted_proxies: Sequence[str | Network],
) -> str:
    """The address of the client, honouring forwarding headers only from trusted proxies.

    Unless the direct peer is a trusted proxy, the peer is the client: anybody can send an
    ``X-Forwarded-For`` header. Behind trusted proxies the hops are read from the right (each
    proxy appends the address it saw) and trusted hops are skipped; the first untrusted hop is
    the client. ``X-Forwarded-For`` is used when present, else ``Forwarded: for=``: a proxy
    that sets only ``Forwarded`` must therefore drop a client's ``X-Forwarded-For``. A hop that
    is not an IP address (``unknown``, an obfuscated name, garbage) ends the walk: the last
    trusted address before it is reported, never text a client wrote.
    """
    peer = _address(peer_ip or "")
    if peer is None:
        return _clean(peer_ip, 64) or ""
    networks = parse_trusted_proxies(trusted_proxies)

    def trusted(address: Address) -> bool:
        return any(address.version == n.version and address in n for n in networks)

    if not networks or not trusted(peer):
        return str(peer)
    xff = _header_values(headers, "x-forwarded-for")
    if xff:
        hops = [hop for value in xff for hop in value.split(",")]
    else:
        hops = _forwarded_for(_header_values(headers, "forwarded"))
    current = peer
    for hop in reversed(hops[-MAX_FORWARDED_HOPS:]):
        address = _address(hop)
        if address is None:
            return str(current)
        current = address
        if not trusted(address):
            return str(address)
    return str(current)


# ---------------------------------------------------------------- time


def format_time(moment: datetime | float | None = None) -> str:
    """UTC, millisecond precision, fixed width (``2025-01-31T12:00:00.123Z``): sorts as text."""
    if moment is None:
        moment = datetime.now(UTC)
    elif not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(moment, UTC)
    elif moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")[:23] + "Z"


def parse_time(text: str) -> str:
    """An ISO-8601 instant (``Z``, an offset, or naive = UTC) as a stored event time."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO-8601 date or time") from None
    return format_time(moment)


# ---------------------------------------------------------------- the event


def _optional_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


_TEXT_LIMITS = (
    *(
        (name, MAX_TEXT)
        for name in (
            "event",
            "subject",
            "subject_kind",
            "auth",
            "key_id",
            "user_agent",
            "method",
            "endpoint",
            "resource_type",
            "resource_id",
            "decision",
            "decision_id",
            "policy_revision",
            "client",
        )
    ),
    ("time", 32),
    ("client_ip", 64),
    ("path", MAX_PATH),
)


@dataclass(frozen=True)
class AuditEvent:
    """One audit event before it joins the chain (``seq``/``prev_hash``/``hash`` come later).

    Every field is normalised on construction (bounded, scrubbed), so whatever builds an
    event cannot put an unbounded or secret-shaped value into the trail.
    """

    event: str = REQUEST
    time: str = field(default_factory=format_time)
    subject: str | None = None
    subject_kind: str | None = None  # user | service
    auth: str | None = None  # api_key | password | oidc
    key_id: str | None = None  # the public id of the API key used, never the key
    client_ip: str | None = None
    user_agent: str | None = None
    method: str | None = None
    path: str | None = None
    query_params: tuple[str, ...] = ()
    endpoint: str | None = None
    resource_type: str | None = None
    resource_id: str | None = None
    resource_context: Mapping[str, str] = field(default_factory=dict)
    decision: str | None = None  # allow | deny | unauthenticated | unavailable
    reasons: tuple[str, ...] = ()
    decision_id: str | None = None
    policy_revision: str | None = None
    status: int | None = None
    latency_ms: float | None = None
    dropped: int = 0  # audit.gap events: how many events were lost
    client: str | None = None  # the client build (X-MLflow-Secure-Client), when it says

    def __post_init__(self) -> None:
        put = object.__setattr__  # frozen: normalise in place, once
        for name, limit in _TEXT_LIMITS:
            value = getattr(self, name)
            if value is not None:
                put(self, name, _clean(value, limit))
        put(self, "event", self.event or REQUEST)
        put(self, "time", self.time or format_time())
        if self.query_params:
            names = tuple(_clean(name, 64) or "" for name in self.query_params)
            put(self, "query_params", names[:MAX_QUERY_PARAMS])
        put(
            self,
            "resource_context",
            {
                key: _clean(value, MAX_TEXT)
                for key, value in dict(self.resource_context).items()
                if key in _CONTEXT_KEYS and value is not None
            },
        )
        if self.reasons:
            reasons = tuple(_clean(reason, MAX_REASON) or "" for reason in self.reasons)
            put(self, "reasons", reasons[:MAX_REASONS])
        else:
            put(self, "reasons", ())
        put(self, "status", _optional_int(self.status))
        latency = self.latency_ms
        if isinstance(latency, int | float) and 0 <= latency < float("inf"):
            put(self, "latency_ms", round(float(latency), 3))
        elif latency is not None:
            put(self, "latency_ms", None)
        put(self, "dropped", max(_optional_int(self.dropped) or 0, 0))

    @classmethod
    def for_request(
        cls,
        *,
        method: str,
        path: str,
        query: bytes | str = b"",
        decision: str,
        status: int | None = None,
        client_ip: str | None = None,
        user_agent: str | bytes | None = None,
        subject: str | None = None,
        subject_kind: str | None = None,
        auth: str | None = None,
        key_id: str | None = None,
        endpoint: str | None = None,
        resource: Mapping[str, Any] | None = None,
        reasons: Iterable[str] = (),
        decision_id: str | None = None,
        policy_revision: str | None = None,
        started: datetime | float | None = None,
        latency_ms: float | None = None,
        client: str | bytes | None = None,
    ) -> AuditEvent:
        """The event of one HTTP request, from raw request facts (scrubbed here).

        `resource` is the policy input's resource; only its type, id and a few context keys
        (``RESOURCE_CONTEXT_KEYS``, and ``IDENTITY_CONTEXT_KEYS`` for the plugin's identity
        resources) are kept. `started` is the wall-clock arrival time. `client` is the value
        of the X-MLflow-Secure-Client header (cut and scrubbed like the User-Agent).
        """
        clean_path, params = scrub_path(path, query)
        resource = resource or {}
        resource_id = resource.get("id")
        return cls(
            event=REQUEST,
            time=format_time(started),
            subject=subject,
            subject_kind=subject_kind,
            auth=auth,
            key_id=key_id,
            client_ip=client_ip,
            user_agent=user_agent,  # type: ignore[arg-type] - bytes are decoded in __post_init__
            method=method.upper(),
            path=clean_path,
            query_params=params,
            endpoint=endpoint,
            resource_type=resource.get("type") if isinstance(resource.get("type"), str) else None,
            resource_id=str(resource_id) if isinstance(resource_id, str | int) else None,
            resource_context=_context(resource),
            decision=decision,
            reasons=tuple(reasons),
            decision_id=decision_id,
            policy_revision=policy_revision,
            status=status,
            latency_ms=latency_ms,
            client=client,  # type: ignore[arg-type] - bytes are decoded in __post_init__
        )

    def to_record(self) -> dict[str, Any]:
        """The event fields as JSON values, in ``EVENT_FIELDS`` order (no chain fields yet),
        then the ``OPTIONAL_FIELDS`` that have a value."""
        record: dict[str, Any] = {name: getattr(self, name) for name in EVENT_FIELDS}
        record["query_params"] = list(self.query_params)
        record["reasons"] = list(self.reasons)
        record["resource_context"] = dict(self.resource_context)
        for name in OPTIONAL_FIELDS:
            if getattr(self, name) is not None:
                record[name] = getattr(self, name)
        return record


def _context_value(value: object) -> str | None:
    """A resource fact as the trail keeps it: text, numbers, true/false, lists joined by ","."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int):
        return str(value)
    if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
        return ",".join(value)
    return None


def _context(resource: Mapping[str, Any]) -> dict[str, str]:
    keys = RESOURCE_CONTEXT_KEYS
    if resource.get("type") in IDENTITY_RESOURCE_TYPES:
        keys = keys + IDENTITY_CONTEXT_KEYS
    if "artefact" in resource:
        keys = keys + KEY_CONTEXT_KEYS
    facts = {key: _context_value(resource.get(key)) for key in keys if key in resource}
    return {key: value for key, value in facts.items() if value is not None}


# ---------------------------------------------------------------- hashing


def canonical_json(fields: Mapping[str, Any]) -> str:
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def hashed_fields(record: Mapping[str, Any]) -> tuple[str, ...]:
    """The fields `record`'s hash covers: ``HASHED_FIELDS`` and the optional ones it has."""
    return HASHED_FIELDS + tuple(name for name in OPTIONAL_FIELDS if name in record)


def record_fields(record: Mapping[str, Any]) -> tuple[str, ...]:
    """The fields a well-formed `record` has, exactly (for verifiers)."""
    return (*hashed_fields(record), "hash")


def from_columns(columns: Mapping[str, Any]) -> dict[str, Any]:
    """A stored row's columns as the record that was sealed: an optional field whose column is
    NULL was absent from the record (and from its hash)."""
    record = {name: columns[name] for name in RECORD_FIELDS}
    for name in OPTIONAL_FIELDS:
        if columns.get(name) is not None:
            record[name] = columns[name]
    return record


def compute_hash(record: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of `record`'s ``hashed_fields`` (all but ``hash``)."""
    hashed = {name: record[name] for name in hashed_fields(record)}
    return hashlib.sha256(canonical_json(hashed).encode("utf-8")).hexdigest()


def seal(event: AuditEvent, seq: int, prev_hash: str) -> dict[str, Any]:
    """The stored record of `event` at position `seq` after an event hashed `prev_hash`."""
    record: dict[str, Any] = {"v": SCHEMA_VERSION, "seq": seq, "prev_hash": prev_hash}
    record.update(event.to_record())
    record["hash"] = compute_hash(record)
    return record
