"""Differential test: the ids the front door decides on are the ids MLflow's handler reads.

For every census route Flask serves whose parse mode is proto, query_or_json, json or query,
Hypothesis writes requests the way clients and attackers do: double-encoded JSON bodies, a
body and a query together, camelCase JSON names at every level, both spellings of one field,
repeated and percent-encoded query parameters, odd content types and encodings, `/api` and
`/ajax-api`, `//` and upper-case spellings of the path, through the ASGI and the WSGI door.
Each goes through the front door's own steps (tests/support/differential.py) and, when it is
accepted, the request MLflow would receive is parsed by MLflow's own helper for the route
(`_get_request_message` with the real request message, `_get_validated_flask_request_json`,
`request.args`, `request.json`) inside a Flask request context. Every id the census declares
for the route (`RouteSpec.ids`, `named_ids.SECONDARY`) and every id-like top-level string
field of the message must read the same on both sides. Refusals on either side are fine.

MLFLOW_SECURE_DIFFERENTIAL_EXAMPLES=<n> explores n random examples per route instead of the
fixed, derandomised default.
"""

from __future__ import annotations

import base64
import inspect
import json
import os
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, quote_plus, urlencode

import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from mlflow_secure.request import canonical, messages
from mlflow_secure.request.census import ROUTES, route_key
from tests.support import differential as diff
from tests.support.differential import Forwarded, RawRequest, Route

_EXPLORE = os.environ.get("MLFLOW_SECURE_DIFFERENTIAL_EXAMPLES")
SETTINGS = settings(
    max_examples=int(_EXPLORE or 30),
    derandomize=_EXPLORE is None,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def _flask_app() -> Any:
    from mlflow.server import app

    return app


CASES = diff.routes(_flask_app())


@dataclass(frozen=True)
class Harness:
    flask_app: Any
    matchers: diff.Matchers


@pytest.fixture(scope="module")
def harness() -> Harness:
    from mlflow.server.fastapi_app import create_fastapi_app

    flask_app = _flask_app()
    return Harness(flask_app, diff.Matchers(flask_app, create_fastapi_app(flask_app)))


# ------------------------------------------------------------------------- the request tree


@dataclass
class Node:
    """One field on the way to an id: its descriptor (proto routes) and what lies below."""

    field: FieldDescriptor | None
    listed: bool = False  # `[]`: a list of objects
    children: dict[str, Node] = field(default_factory=dict)


def _plain_message(descriptor: FieldDescriptor | None) -> Descriptor | None:
    if descriptor is None or descriptor.type != FieldDescriptor.TYPE_MESSAGE:
        return None
    nested = descriptor.message_type
    if nested.GetOptions().map_entry or nested.full_name.startswith("google.protobuf."):
        return None
    return nested


def _tree(route: Route) -> dict[str, Node]:
    root: dict[str, Node] = {}
    top = route.message.DESCRIPTOR if route.message is not None else None
    for path in route.ids:
        if path in route.path_vars:
            continue  # drawn with the path (a copy may go in the request too)
        level, descriptor = root, top
        for part in path.split("."):
            name = part.removesuffix("[]")
            found = descriptor.fields_by_name.get(name) if descriptor is not None else None
            node = level.setdefault(name, Node(found, part.endswith("[]")))
            level, descriptor = node.children, _plain_message(found)
    return root


ID_TEXT = st.one_of(
    st.sampled_from(["5", "0", "17", "r1", "m-1", "tr-1", "d-1", "a b"]),
    st.text(alphabet="ab5Z-_.:/ %+&=?#;é☃", min_size=1, max_size=6),
)
_SEGMENT = st.text(alphabet="ab5Z-_.~:@%+ ;", min_size=1, max_size=6).filter(
    lambda s: s not in {".", ".."}
)
_INTS = {
    FieldDescriptor.TYPE_INT32,
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT32,
    FieldDescriptor.TYPE_UINT64,
}


# JSON values of the wrong type for an id: MLflow's parse_dict fails on them (and then
# validates the handler's schema, or acts on what it parsed before the failure).
_CONFUSED = st.sampled_from([5, 5.0, -1, True, False, None, {}, {"id": "5"}, ["5"], [5], "5"])


def _leaf(route: Route, name: str, node: Node, wild: bool = False) -> st.SearchStrategy[Any]:
    kind = node.field.type if node.field is not None else FieldDescriptor.TYPE_STRING
    if kind == FieldDescriptor.TYPE_BYTES:  # JSON carries bytes as standard base64
        base: st.SearchStrategy[Any] = st.binary(min_size=1, max_size=6).map(
            lambda b: base64.b64encode(b).decode("ascii")
        )
    elif kind == FieldDescriptor.TYPE_BOOL:
        base = st.booleans()
    elif kind in _INTS:
        base = st.integers(0, 10**6)
    else:
        base = ID_TEXT
    if node.field is not None:
        repeated = node.field.is_repeated
    else:
        repeated = name in canonical.list_params(route.spec)
    if repeated or node.listed:  # mostly a non-empty list; an empty one names nothing
        base = st.one_of(st.lists(base, min_size=1, max_size=3), st.just([]))
    if wild:
        return st.one_of(base, base, base, _CONFUSED)
    return base


def _object(
    draw: Callable, route: Route, nodes: dict[str, Node], wild: bool = False
) -> dict[str, Any]:
    """Values for the ids (proto names), each present seven times in eight."""
    found: dict[str, Any] = {}
    for name, node in nodes.items():
        if draw(st.integers(0, 7)) == 7:
            continue
        if not node.children:
            found[name] = draw(_leaf(route, name, node, wild))
        elif node.listed:
            count = draw(st.sampled_from([1, 2, 0]))
            found[name] = [_object(draw, route, node.children, wild) for _ in range(count)]
        else:
            found[name] = _object(draw, route, node.children, wild)
    return found


_WELL_KNOWN = {
    "google.protobuf.FieldMask": "name",
    "google.protobuf.Timestamp": "2024-01-01T00:00:00Z",
    "google.protobuf.Duration": "1s",
    "google.protobuf.Value": "v",
}


def _filler(route: Route, name: str) -> Any:
    """A valid value for a field the handler requires that names nothing (a tag's key...)."""
    from mlflow.server.handlers import _assert_array

    found = route.message.DESCRIPTOR.fields_by_name.get(name) if route.message else None
    if found is None:
        return ["v"] if _assert_array in (route.schema or {}).get(name, []) else "v"
    kind = found.type
    if kind == FieldDescriptor.TYPE_MESSAGE:
        value: Any = _WELL_KNOWN.get(found.message_type.full_name, {})
    elif kind == FieldDescriptor.TYPE_ENUM:
        value = found.enum_type.values[-1].name
    elif kind == FieldDescriptor.TYPE_BOOL:
        value = True
    elif kind in _INTS:
        value = 1
    elif kind in {FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT}:
        value = 0.5
    else:  # evaluation-dataset records and tags are JSON carried in a string field
        value = {"records": "[]", "tags": "{}"}.get(name, "v")
    return [value] if found.is_repeated else value


def _poison(draw: Callable, route: Route, heads: set[str]) -> dict[str, Any]:
    """A field that names nothing, first in the body, with a value MLflow's parse_dict fails
    on: the handler then goes on with the fields parsed before it (none)."""
    if route.message is None:
        return {}
    others = [f for f in route.message.DESCRIPTOR.fields if f.name not in heads]
    if not others:
        return {}
    found = draw(st.sampled_from(others))
    if found.type == FieldDescriptor.TYPE_STRING:
        value: Any = 7
    elif found.type == FieldDescriptor.TYPE_MESSAGE:
        value = "not an object"
    else:
        value = "not a number"
    return {found.name: [value] if found.is_repeated else value}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


class Pairs(list):
    """A JSON object as written: keys in order, repeated keys allowed."""


def _spell(draw: Callable, value: Any, descriptor: Descriptor | None, wild: bool) -> Any:
    """The object with each key spelt by its proto or JSON name (or both), at every level."""
    if isinstance(value, list):
        return [_spell(draw, item, descriptor, wild) for item in value]
    if not isinstance(value, dict):
        return value
    pairs = Pairs()
    for name, item in value.items():
        found = descriptor.fields_by_name.get(name) if descriptor is not None else None
        item = _spell(draw, item, _plain_message(found), wild)
        alias = found.json_name if found is not None else _camel(name)
        choices = ["proto", "json", "both"] if wild else ["proto", "json"]
        spelling = draw(st.sampled_from(choices)) if alias != name else "proto"
        if spelling in {"proto", "both"}:
            pairs.append((name, item))
        if spelling in {"json", "both"}:
            pairs.append((alias, item))
    return pairs


def _render(value: Any, ascii_only: bool) -> str:
    if isinstance(value, Pairs):
        items = (
            f"{json.dumps(k, ensure_ascii=ascii_only)}:{_render(v, ascii_only)}" for k, v in value
        )
        return "{" + ",".join(items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_render(v, ascii_only) for v in value) + "]"
    return json.dumps(value, ensure_ascii=ascii_only)


# ------------------------------------------------------------------------- request variants

_BODY_ENCODINGS = (
    "plain", "double", "spaced", "bom", "utf-16", "triple", "array", "null", "empty", "form",
    "truncated",
)  # fmt: skip
_CONTENT_TYPES = (
    "application/json", "application/json; charset=utf-8", "application/JSON", "text/plain",
    None, "application/x-www-form-urlencoded",
)  # fmt: skip
_CONTENT_ENCODINGS = (None, "identity", "gzip")
_PATH_SPELLINGS = ("as routed", "as routed", "leading //", "upper-case", "trailing /")


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")  # a lone surrogate stays as the client sent it


def _encode_body(text: str, encoding: str, top: dict[str, Any]) -> bytes:
    form = {k: str(v) for k, v in top.items()}
    return {
        "plain": lambda: _utf8(text),
        "double": lambda: _utf8(json.dumps(text)),  # MLflow decodes it a second time
        "spaced": lambda: _utf8(f" \n\t{text}\r\n "),
        "bom": lambda: b"\xef\xbb\xbf" + _utf8(text),
        "utf-16": lambda: text.encode("utf-16", "surrogatepass"),
        "triple": lambda: _utf8(json.dumps(json.dumps(text))),
        "array": lambda: _utf8(f"[{text}]"),
        "null": lambda: b"null",
        "empty": lambda: b"",
        "form": lambda: urlencode(form, doseq=True, errors="surrogatepass").encode(),
        "truncated": lambda: _utf8(text[:-1]),
    }[encoding]()


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


def _query(draw: Callable, route: Route, values: dict[str, Any], wild: bool) -> bytes:
    """The ids as query parameters (lists repeated), spelt and percent-encoded variously."""
    pairs: list[tuple[str, str]] = []
    found = messages.field_names(route.message)
    for name, value in values.items():
        alias = _camel(name)
        if route.message is not None and name in found:
            alias = route.message.DESCRIPTOR.fields_by_name[name].json_name
        if alias != name and draw(st.integers(0, 4)) == 4:
            name = alias  # MLflow reads proto names only from a query
        items = value if isinstance(value, list) else [value]
        pairs += [(name, _query_value(item)) for item in items]
        if wild and not isinstance(value, list) and draw(st.booleans()):
            pairs.append((name, draw(st.sampled_from([_query_value(value), "other"]))))
    if wild and draw(st.booleans()):
        pairs.append((draw(st.sampled_from(["page_token", "x", "max_results"])), "1"))
    if wild:
        pairs = draw(st.permutations(pairs))
    encoded = []
    for name, value in pairs:
        style = draw(st.sampled_from(["quote", "plus", "names-escaped"])) if wild else "quote"
        if style == "names-escaped":
            name_text = "".join(f"%{b:02X}" for b in _utf8(name))
        else:
            name_text = quote(name, safe="", errors="surrogatepass")
        if style == "plus":
            value_text = quote_plus(value, errors="surrogatepass")
        else:
            value_text = quote(value, safe="", errors="surrogatepass")
        encoded.append(f"{name_text}={value_text}")
    text = "&".join(encoded)
    if wild and draw(st.booleans()):
        text = draw(st.sampled_from(["&", "&&", "?"])) + text
    return text.encode("ascii")


def _decoys(draw: Callable, route: Route) -> list[tuple[str, str]]:
    """Query parameters beside a JSON body: a second value for an id, or a harmless one."""
    names = [p.split(".")[0].removesuffix("[]") for p in route.ids] or ["experiment_id"]
    name = draw(st.sampled_from([*names, "page_token", "x"]))
    if draw(st.booleans()):
        name = _camel(name)
    return [(name, draw(ID_TEXT))]


def _path(draw: Callable, route: Route, values: dict[str, str], wild: bool) -> str:
    rule = draw(st.sampled_from(route.rules))
    path = diff.fill(rule, values)
    spelling = draw(st.sampled_from(_PATH_SPELLINGS)) if wild else "as routed"
    if spelling == "leading //":
        return "/" + path
    if spelling == "upper-case":
        head, _, rest = path[1:].partition("/")
        return f"/{head.upper()}/{rest}"
    if spelling == "trailing /":
        return path + "/"
    return path


def _path_values(draw: Callable, route: Route) -> dict[str, str]:
    values = {}
    for name, converter in route.path_converters.items():
        if converter == "path":
            values[name] = "/".join(draw(st.lists(_SEGMENT, min_size=1, max_size=3)))
        else:
            values[name] = draw(_SEGMENT)
    return values


def _request(draw: Callable, route: Route) -> RawRequest:
    wild = draw(st.integers(0, 2)) == 2  # a third of the requests try the odd spellings
    door = draw(st.sampled_from(diff.DOORS))
    path_values = _path_values(draw, route)
    heads = {path.split(".")[0].removesuffix("[]") for path in route.ids}
    values = _poison(draw, route, heads) if wild and draw(st.integers(0, 3)) == 0 else {}
    values.update(_object(draw, route, _tree(route), wild))
    for name in route.required:
        if name not in heads and name not in route.path_vars:
            values[name] = _filler(route, name)
    fields = messages.field_names(route.message)
    for name in route.path_vars:  # a copy of a path variable in the request, equal or not
        if name not in fields and name not in route.spec.ids:
            continue
        # the handler reads this one from the body, or requires it there too
        from_body = name in route.read_from_message or name in route.required
        copies = ["same"] if from_body else ["no copy"]
        if wild:
            copies = [*copies, "same", "different"]
        copy = draw(st.sampled_from(copies))
        if copy != "no copy":
            values[name] = path_values[name] if copy == "same" else draw(_SEGMENT)
    path = _path(draw, route, path_values, wild)
    method = route.method
    in_query = route.spec.parse == "query" or (
        method == "GET" and route.spec.parse in {"proto", "query_or_json"}
    )
    if in_query:
        body = b""
        content_type = None
        if wild and (method != "GET" or draw(st.integers(0, 3)) == 0):
            decoy = {name: draw(ID_TEXT) for name in values} or {"run_id": "other"}
            body = draw(st.sampled_from([json.dumps(decoy).encode(), b"\x00artefact bytes"]))
            content_type = draw(st.sampled_from(_CONTENT_TYPES))
        return RawRequest(door, method, path, _query(draw, route, values, wild), body, content_type)
    descriptor = route.message.DESCRIPTOR if route.message is not None else None
    spelt = _spell(draw, values, descriptor, wild)
    if wild and spelt and draw(st.integers(0, 3)) == 0:  # one key twice
        spelt.append((spelt[0][0], draw(ID_TEXT)))
    text = _render(spelt, ascii_only=draw(st.booleans()))
    encoding = draw(st.sampled_from(_BODY_ENCODINGS)) if wild else "plain"
    body = _encode_body(text, encoding, values)
    query = b""
    if wild and draw(st.booleans()):
        query = urlencode(_decoys(draw, route), errors="surrogatepass").encode("ascii")
    content_type = draw(st.sampled_from(_CONTENT_TYPES)) if wild else "application/json"
    content_encoding = draw(st.sampled_from(_CONTENT_ENCODINGS)) if wild else None
    return RawRequest(door, method, path, query, body, content_type, content_encoding)


# ------------------------------------------------------------------------- the comparison


def _explain(raw: RawRequest, sent: Forwarded, decided: dict, read: diff.Reading) -> str:
    differing = {
        path: {"front door": decided[path], "MLflow": read.ids[path]}
        for path in decided
        if decided[path] != read.ids[path]
    }
    return (
        f"MLflow's handler reads other ids than the front door decided on: {differing}\n"
        f"  request: {raw}\n"
        f"  forwarded: path={sent.path!r} query={sent.query!r} body={sent.body!r}\n"
        f"  canonical params: {sent.request.params}\n"
        f"  MLflow dispatched to {read.rule} with {read.view_args}"
    )


def compare(harness: Harness, route: Route, raw: RawRequest) -> str:
    sent = diff.forward(harness.matchers, raw)
    if isinstance(sent, str):
        return f"front door: {sent}"
    if sent.action.key != route.key:
        return "routed to another census key"
    read = diff.mlflow_reading(harness.flask_app, route, diff.mlflow_environ(raw, sent))
    if isinstance(read, str):
        return f"MLflow: {read}"
    assert route_key(read.rule, route.method) == route.key, (raw, read.rule)
    decided = diff.ours(route, sent)
    assert decided == read.ids, _explain(raw, sent, decided, read)
    return "compared" if any(decided.values()) else "compared, no id named"


@pytest.mark.parametrize("route", CASES, ids=str)
def test_mlflow_reads_the_ids_the_front_door_decided_on(harness: Harness, route: Route) -> None:
    outcomes: Counter[str] = Counter()

    @SETTINGS
    @given(st.data())
    def run(data: st.DataObject) -> None:
        outcome = compare(harness, route, _request(data.draw, route))
        event(outcome)
        outcomes[outcome] += 1

    run()
    if route.ids:
        assert outcomes["compared"] > 0, f"no request named an id MLflow then read: {outcomes}"


def test_every_proto_route_is_compared() -> None:
    proto = {key for key, spec in ROUTES.items() if spec.parse == "proto"}
    assert proto <= {case.key for case in CASES}, "a proto route Flask does not serve"
    assert len(CASES) >= 170


def test_every_proto_route_has_its_request_message() -> None:
    """messages.py names, for each proto route, the message its handler really parses."""
    from mlflow.server import handlers

    known = messages.request_messages()
    for case in CASES:
        if case.spec.parse != "proto":
            continue
        assert case.key in known, f"{case}: proto-parsed but messages.py has no message"
        message = known[case.key]
        parser = diff.handler(case.view)
        registered = handlers.HANDLERS.get(message) in {case.view, inspect.unwrap(case.view)}
        constructed = re.search(rf"\b{message.__name__}\(", diff.source(parser))
        assert registered or constructed, f"{case}: {parser.__name__} parses no {message.__name__}"


def test_the_handler_reading_a_path_variable_from_the_body_is_found() -> None:
    """logged-models finalize acts on the body's model_id, not the path's (the census note);
    the others act on the path variable."""
    by_key = {case.key: case for case in CASES}
    finalize = ("/api/2.0/mlflow/logged-models/<model_id>", "PATCH")
    assert by_key[finalize].read_from_message == {"model_id"}
    assert not any(c.read_from_message for c in CASES if c.key != finalize)


def test_declared_ids_are_string_fields_of_the_message() -> None:
    """An id the census declares must be a (repeated) string field: a flag or a bytes field
    read as an id names nothing MLflow looks up under that value."""
    wrong = []
    for case in CASES:
        if case.message is None:
            continue
        for path in diff.declared(case.spec):
            found = diff.field_at(case.message.DESCRIPTOR, path)
            if found is not None and found.type != FieldDescriptor.TYPE_STRING:
                kind = {FieldDescriptor.TYPE_BOOL: "bool", FieldDescriptor.TYPE_BYTES: "bytes"}
                wrong.append(f"{case.spec.endpoint}: {path} is a {kind.get(found.type)} field")
    assert not wrong, "\n".join(wrong)


def test_head_reads_what_the_handler_reads(harness: Harness) -> None:
    """HEAD runs the GET handler, which reads the (empty) body when the method is not GET."""
    mismatches = []
    for case in CASES:
        if case.method != "GET" or case.spec.parse not in {"proto", "query_or_json"}:
            continue
        named = [p for p in case.ids if "." not in p and p not in case.path_vars]
        if not named:
            continue
        query = "&".join(f"{name}=5" for name in named).encode()
        path = diff.fill(case.rules[0], dict.fromkeys(case.path_vars, "5"))
        for door in diff.DOORS:
            try:
                compare(harness, case, RawRequest(door, "HEAD", path, query))
            except AssertionError as exc:
                differing = str(exc).splitlines()[0].split(": ", 1)[1]
                mismatches.append(f"HEAD {path}?{query.decode()} ({door}): {differing}")
    assert not mismatches, f"{len(mismatches)} HEAD requests:\n" + "\n".join(mismatches)


@pytest.mark.parametrize("door", diff.DOORS)
def test_non_ascii_path_variables_reach_mlflow_as_decided(harness: Harness, door: str) -> None:
    """The path variables the front door decides on are the ones Flask hands the handler,
    whichever server interface the request came through (every Flask census route)."""
    mismatches = []
    for case in diff.routes(harness.flask_app, modes=(*diff.MODES, "none", "fastapi")):
        if not case.path_vars:
            continue
        values = {
            name: "équipe/x" if kind == "path" else "café"
            for name, kind in case.path_converters.items()
        }
        raw = RawRequest(door, case.method, diff.fill(case.rules[0], values))
        sent = diff.forward(harness.matchers, raw)
        assert not isinstance(sent, str), (str(case), sent)
        dispatched = diff.flask_dispatch(harness.flask_app, diff.mlflow_environ(raw, sent))
        assert not isinstance(dispatched, str), (str(case), dispatched)
        rule, view_args = dispatched
        assert route_key(rule, case.method) == case.key, (str(case), rule)
        decided = {name: sent.action.path_params.get(name) for name in case.path_vars}
        if decided != view_args:
            mismatches.append(f"{case}: front door {decided}, Flask {view_args}")
    assert not mismatches, f"{len(mismatches)} routes:\n" + "\n".join(mismatches)


def _body_routes() -> list[Route]:
    return [c for c in CASES if c.spec.parse != "query" and c.method not in {"GET", "HEAD"}]


def _body_request(case: Route, values: dict[str, Any]) -> RawRequest:
    """A plain JSON request to `case` with `values`, the handler's required fields filled."""
    heads = {path.split(".")[0].removesuffix("[]") for path in case.ids}
    for name in case.required:
        if name not in heads and name not in case.path_vars:
            values.setdefault(name, _filler(case, name))
    for name in case.path_vars:
        if name in case.read_from_message or name in case.required:
            values.setdefault(name, "5")
    path = diff.fill(case.rules[0], dict.fromkeys(case.path_vars, "5"))
    return RawRequest(
        "asgi", case.method, path, b"", json.dumps(values).encode(), "application/json"
    )


def test_ids_of_the_wrong_json_type_are_read_alike(harness: Harness) -> None:
    """A number where the message has a string (a string where it has a list): MLflow's
    parse_dict fails, the handler goes on with what it parsed before the failure, and that
    must be what the decision saw (the handler's schema refusing the request is fine)."""
    mismatches = []
    for case in _body_routes():
        if case.message is None:
            continue
        for path in diff.declared(case.spec):
            if "." in path or "[]" in path or path in case.path_vars:
                continue
            found = case.message.DESCRIPTOR.fields_by_name.get(path)
            wrong: Any = "5" if found is not None and found.is_repeated else 5
            raw = _body_request(case, {path: wrong})
            try:
                compare(harness, case, raw)
            except AssertionError as exc:
                mismatches.append(f"{case} {raw.body.decode()}: {str(exc).splitlines()[0]}")
    assert not mismatches, f"{len(mismatches)} requests:\n" + "\n".join(mismatches)


def test_a_lone_surrogate_is_refused_not_raised(harness: Harness) -> None:
    """`"\\ud800"` is valid JSON text that no UTF-8 can carry: the front door must refuse it
    (400), not fail on it."""
    raised = []
    for case in _body_routes():
        name = next((p for p in case.ids if "." not in p and "[]" not in p), "x")
        raw = _body_request(case, {name: "\ud800"})
        try:
            diff.forward(harness.matchers, raw)
        except Exception as exc:
            raised.append(f"{case}: {type(exc).__name__}: {exc}")
    assert not raised, f"{len(raised)} routes raise, among them:\n" + "\n".join(raised[:8])
