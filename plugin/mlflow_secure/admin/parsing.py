"""Reading an admin API request: one strict parse, shared by the policy and the handler.

Input is parsed strictly because the policy saw the same request: unknown fields, duplicate
JSON keys and repeated query parameters are rejected so that nothing a handler reads can
differ from what the policy was shown. The same function (`read_args`) turns the same bytes
into the same arguments for the front door (the resource it describes to the policy and the
audit trail: request/actions.py) and for the handler (api.py), so the two cannot disagree.

Bodies must be ``application/json`` (the handler checks the content type), which also keeps
a browser holding cached Basic credentials from being tricked into a cross-site form POST
(``text/plain`` and form bodies are "simple" requests that skip CORS preflight).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from mlflow_secure.identity.store import IdentityError

MAX_BODY_BYTES = 64 * 1024
MAX_LIST_ITEMS = 64
MAX_GRACE_SECONDS = 30 * 86400  # a rotation grace is for redeploying, not a second key
MAX_KEY_LIFETIME_SECONDS = 10 * 366 * 86400  # a sanity bound (and no datetime overflow)
READ_METHODS = frozenset({"GET", "HEAD"})

Args = dict[str, Any]


@dataclass(frozen=True)
class Field:
    """One accepted request field. `kind`: str, strs (list of str), bool or int."""

    kind: str = "str"
    required: bool = False
    max_length: int = 64
    minimum: int = 0
    maximum: int = 0


NAME = Field(required=True)
OPTIONAL_NAME = Field()
TEXT = Field(max_length=256)
DESCRIPTION = Field(max_length=1024)
PASSWORD = Field(max_length=4096)  # the password policy enforces the real bound
STRINGS = Field(kind="strs")
FLAG = Field(kind="bool")


def bad(message: str) -> IdentityError:
    return IdentityError(message)


def _valid(spec: Field, value: object) -> bool:
    if spec.kind == "str":
        return isinstance(value, str) and len(value) <= spec.max_length
    if spec.kind == "strs":
        return (
            isinstance(value, list)
            and len(value) <= MAX_LIST_ITEMS
            and all(isinstance(item, str) and len(item) <= spec.max_length for item in value)
        )
    if spec.kind == "bool":
        return isinstance(value, bool)
    # int: a JSON true is not 1
    return (
        isinstance(value, int)
        and not isinstance(value, bool)
        and spec.minimum <= value <= spec.maximum
    )


def _expected(spec: Field) -> str:
    return {
        "str": f"a string of at most {spec.max_length} characters",
        "strs": f"a list of at most {MAX_LIST_ITEMS} strings",
        "bool": "true or false",
        "int": f"an integer from {spec.minimum} to {spec.maximum}",
    }[spec.kind]


def accept(fields: dict[str, Field], given: dict[str, object]) -> Args:
    """Checked arguments: unknown fields refused (without echoing them), nulls mean absent."""
    if set(given) - set(fields):
        raise bad(f"unknown field in request; accepted fields: {', '.join(fields) or 'none'}")
    args: Args = {}
    for name, spec in fields.items():
        value = given.get(name)
        if value is None:
            if spec.required:
                raise bad(f"missing required field {name!r}")
            continue
        if not _valid(spec, value):
            raise bad(f"field {name!r} must be {_expected(spec)}")
        args[name] = value
    return args


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise bad("duplicate key in JSON body")
    return dict(pairs)


def json_body(raw: bytes) -> dict[str, object]:
    if len(raw) > MAX_BODY_BYTES:
        raise bad(f"the request body is larger than {MAX_BODY_BYTES} bytes")
    try:
        body = json.loads(raw, object_pairs_hook=_no_duplicate_keys)
    except IdentityError:  # a duplicate key (IdentityError is a ValueError too)
        raise
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise bad("the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise bad("the request body must be a JSON object")
    return body


def query_args(fields: dict[str, Field], query: bytes) -> dict[str, object]:
    """Query parameters as a dict; a repeated parameter is ambiguous and refused."""
    try:
        pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise bad("the query string is not valid UTF-8") from None
    given: dict[str, object] = {}
    for name, raw in pairs:
        if name in given:
            raise bad("a query parameter is repeated")
        value: object = raw
        if fields.get(name, NAME).kind == "bool":
            if value not in ("true", "false"):
                raise bad(f"query parameter {name!r} must be true or false")
            value = value == "true"
        given[name] = value
    return given


def read_args(fields: dict[str, Field], method: str, query: bytes, body: bytes) -> Args:
    """The checked arguments of one request: from the query of a read, from the JSON body
    otherwise (IdentityError, answered with 400, when they are not acceptable)."""
    if method in READ_METHODS:
        given = query_args(fields, query)
    else:
        if query:
            # The handler reads only the body: a query beside it is not what it acts on.
            raise bad("a change takes its arguments in the JSON body, not in the query string")
        given = json_body(body)
    return accept(fields, given)
