"""The two readings of one request that the differential test compares.

`forward` runs the front door's own steps that decide what a request names (route with the
frameworks' matchers as each server interface sees the path, `Pipeline.body_on_read`,
`Pipeline.buffers_body`, `Pipeline.read`: `canonical.read`, the default project, the author
stamp) and returns what it hands MLflow: the routed path, the canonical query, the canonical
body or else the original one. `mlflow_environ` turns that into the WSGI environ MLflow's
Flask app receives (ASGI: Starlette's own WSGI bridge, which MLflow mounts Flask with; WSGI:
the environ the middleware rewrites). `mlflow_reading` pushes a Flask request context on it
and parses it with MLflow's own helper for the route's parse mode, validated with the schema
the route's handler passes (read from the handler's source), then reads every id path: a path
variable from Flask's view arguments unless the handler reads that field from the message.
"""

from __future__ import annotations

import ast
import base64
import inspect
import re
import textwrap
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from mlflow_secure.errors import ErrorResponse
from mlflow_secure.request import canonical, messages, named_ids
from mlflow_secure.request.actions import Action, classify
from mlflow_secure.request.canonical import CanonicalRequest
from mlflow_secure.request.census import ROUTES, RouteSpec, live_methods, route_key
from mlflow_secure.request.matcher import RouteMatcher
from mlflow_secure.request.pipeline import Pipeline
from mlflow_secure.request.resolution import values_at
from mlflow_secure.request.trail import RequestFacts, Trail

DOORS = ("asgi", "wsgi")
MODES = ("proto", "query_or_json", "json", "query")
# Top-level fields compared even where the census declares no id (the id-field census's names).
ID_LIKE = re.compile(r"(_id|_ids|_uri|source|name|location)$")
_VARIABLE = re.compile(r"<(?:(\w+):)?(\w+)>")


@dataclass(frozen=True)
class Route:
    """One census route Flask serves, and where its handler reads each id."""

    key: tuple[str, str]
    spec: RouteSpec
    rules: tuple[str, ...]  # the live Flask rules of this key (/api and /ajax-api spellings)
    view: Callable[..., Any]
    message: type | None  # the proto request message (parse "proto")
    ids: tuple[str, ...]  # id paths compared: declared ids, secondary ids, id-like fields
    path_vars: tuple[str, ...]
    path_converters: Mapping[str, str]
    read_from_message: frozenset[str]  # path variables the handler reads from the message
    schema: dict[str, list[Callable]] | None = None  # what the handler validates

    @property
    def required(self) -> tuple[str, ...]:
        """Top-level fields the handler's schema requires (`_assert_required`)."""
        from mlflow.server.handlers import _assert_required

        return tuple(n for n, checks in (self.schema or {}).items() if _assert_required in checks)

    @property
    def method(self) -> str:
        return self.key[1]

    def __str__(self) -> str:
        return f"{self.key[1]} {self.key[0]}"


def flask_routes(flask_app: Any) -> dict[tuple[str, str], tuple[list[str], Callable]]:
    found: dict[tuple[str, str], tuple[list[str], Callable]] = {}
    for rule in flask_app.url_map.iter_rules():
        view = flask_app.view_functions[rule.endpoint]
        for method in live_methods(rule.methods or (), rule.provide_automatic_options):
            found.setdefault(route_key(rule.rule, method), ([], view))[0].append(rule.rule)
    return found


def declared(spec: RouteSpec) -> list[str]:
    """The id paths the census declares for a route (headers and OTLP ids aside)."""
    paths = [*spec.ids, *(named.field for named in named_ids.secondary(spec.endpoint))]
    return [p for p in paths if not p.startswith(("header:", "otlp:"))]


def source(function: Callable[..., Any]) -> str:
    try:
        return inspect.getsource(inspect.unwrap(function))
    except (OSError, TypeError):
        return ""


_PARSERS = ("_get_request_message", "_get_validated_flask_request_json")


def handler(view: Callable[..., Any]) -> Callable[..., Any]:
    """The function that parses the request: the view, or the `*_handler` it calls."""
    from mlflow.server import handlers

    text = source(view)
    if not any(name in text for name in _PARSERS):
        for name in re.findall(r"\b(\w+_handler)\(\)", text):
            called = getattr(handlers, name, None)
            if callable(called) and any(p in source(called) for p in _PARSERS):
                return called
    return view


class _Names(dict):
    """The handlers module's names; a validator defined inside the handler is not checked."""

    def __missing__(self, name: str) -> Any:
        from mlflow.server import handlers

        return getattr(handlers, name, lambda *args, **kwargs: None)


def handler_schema(function: Callable[..., Any]) -> dict[str, list[Callable]] | None:
    """The `schema=` the handler passes to MLflow's parsing helper, read from its source, so
    the request is validated exactly as the handler validates it."""
    from mlflow.server import handlers

    try:
        tree = ast.parse(textwrap.dedent(source(function)))
    except SyntaxError:
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) in _PARSERS:
            for keyword in node.keywords:
                if keyword.arg == "schema":
                    code = compile(ast.Expression(keyword.value), "<schema>", "eval")
                    return eval(code, vars(handlers), _Names())  # noqa: S307 (MLflow's source)
    return None


def routes(flask_app: Any, modes: Iterable[str] = MODES) -> list[Route]:
    """Every census route with a parse mode in `modes` that Flask serves."""
    live = flask_routes(flask_app)
    found = []
    for key, spec in ROUTES.items():
        if spec.parse not in modes or key not in live:
            continue
        rules, view = live[key]
        message = messages.message_for(key) if spec.parse == "proto" else None
        ids = declared(spec)
        if message is not None:
            ids += [
                f.name
                for f in message.DESCRIPTOR.fields
                if ID_LIKE.search(f.name) and f.type == FieldDescriptor.TYPE_STRING
            ]
        converters = {name: kind or "default" for kind, name in _VARIABLE.findall(key[0])}
        fields = messages.field_names(message)
        parser = handler(view)
        text = source(parser)
        from_message = frozenset(
            var
            for var in converters
            if var in fields and re.search(rf"\brequest_message\.{var}\b", text)
        )
        found.append(
            Route(
                key=key,
                spec=spec,
                rules=tuple(sorted(rules)),
                view=view,
                message=message,
                ids=tuple(dict.fromkeys(ids)),
                path_vars=tuple(converters),
                path_converters=converters,
                read_from_message=from_message,
                schema=handler_schema(parser),
            )
        )
    return found


def fill(rule: str, values: Mapping[str, str]) -> str:
    """A Flask rule with its variables replaced by `values`."""
    return _VARIABLE.sub(lambda m: values[m.group(2)], rule)


def field_at(descriptor: Any, path: str) -> FieldDescriptor | None:
    """The field a dotted id path ends at, or None when the message has no such field."""
    head, dot, rest = path.partition(".")
    found = descriptor.fields_by_name.get(head.removesuffix("[]"))
    if found is None or not dot:
        return found
    if found.type != FieldDescriptor.TYPE_MESSAGE:
        return None
    return field_at(found.message_type, rest)


# ------------------------------------------------------------------------- the front door


@dataclass(frozen=True)
class RawRequest:
    """A request as the client sends it; `path` as an ASGI server decodes it."""

    door: str
    method: str
    path: str
    query: bytes = b""
    body: bytes = b""
    content_type: str | None = None
    content_encoding: str | None = None

    @property
    def door_path(self) -> str:
        """The path the front door sees: ASGI's `scope["path"]`, or PEP 3333's PATH_INFO (the
        request's bytes decoded as latin-1) under a WSGI server."""
        if self.door == "wsgi":
            from mlflow_secure.request.front_door import wsgi_path

            # as PEP 3333 hands it, then read back the way the WSGI door reads it
            return wsgi_path(self.path.encode("utf-8").decode("latin-1"))
        return self.path


@dataclass(frozen=True)
class Forwarded:
    action: Action
    request: CanonicalRequest
    path: str  # as the door hands it on (scope["path"] or PATH_INFO)
    query: bytes
    body: bytes


class Matchers:
    """The route matchers of both doors: ASGI matches FastAPI's native routes first."""

    def __init__(self, flask_app: Any, fastapi_app: Any) -> None:
        self.asgi = RouteMatcher(flask_app, fastapi_app)
        self.wsgi = RouteMatcher(flask_app)

    def classify(self, raw: RawRequest) -> Action | None:
        matcher = self.asgi if raw.door == "asgi" else self.wsgi
        return classify(raw.method, raw.door_path, "", matcher)


_PIPELINE = Pipeline(SimpleNamespace(static_prefix=""))  # the steps below need no more
SUBJECT = SimpleNamespace(name="alice", default_project=None)


def forward(matchers: Matchers, raw: RawRequest) -> Forwarded | str:
    """What the front door hands MLflow, or why it refused the request: the pipeline's own
    steps (a body on a read refused, the body buffered where it is read, `Pipeline.read`:
    `canonical.read`, the default project placed, the author stamped)."""
    action = matchers.classify(raw)
    if action is None or action.spec is None:
        return "no such route"
    facts = RequestFacts(
        method=raw.method,
        path=raw.door_path,
        query=raw.query,
        client_ip="127.0.0.1",
        tls=False,
        content_type=raw.content_type,
        content_encoding=raw.content_encoding,
        has_body=bool(raw.body),
    )
    trail = Trail(facts, subject=SUBJECT, action=action)
    refused = _PIPELINE.body_on_read(trail)
    if refused is not None:
        return f"refused: {refused.message}"
    buffered = raw.body if _PIPELINE.buffers_body(trail) else None
    request = _PIPELINE.read(trail, buffered)
    if isinstance(request, ErrorResponse):
        return f"refused: {request.message[:60]}"
    body = request.body if request.body is not None else raw.body
    return Forwarded(action, request, action.path or raw.door_path, request.query, body)


def mlflow_environ(raw: RawRequest, sent: Forwarded) -> dict[str, Any]:
    from starlette.middleware.wsgi import build_environ

    headers = [(b"content-length", str(len(sent.body)).encode())]
    if raw.content_type is not None:
        headers.append((b"content-type", raw.content_type.encode("latin-1")))
    if raw.content_encoding is not None:
        headers.append((b"content-encoding", raw.content_encoding.encode("latin-1")))
    path = sent.path
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": raw.method,
        "scheme": "http",
        "path": path,
        "raw_path": quote(path).encode("ascii"),
        "root_path": "",
        "query_string": sent.query,
        "headers": headers,
        "server": ("localhost", 5000),
        "client": ("127.0.0.1", 50000),
    }
    environ = build_environ(scope, sent.body)
    if raw.door == "wsgi":  # the WSGI door hands the routed path back as PEP 3333 text
        environ["PATH_INFO"] = sent.path.encode("utf-8").decode("latin-1")
        environ["QUERY_STRING"] = sent.query.decode("latin-1")
    return environ


# ------------------------------------------------------------------------- MLflow's reading


def ids(values: Iterable[Any]) -> list[str]:
    """Id values as the policy sees them: scalars as strings, lists flattened, empty values
    (None, "", a message or object where an id belongs) absent."""
    found: list[str] = []
    for value in values:
        if isinstance(value, list | tuple) or _is_repeated(value):
            found += ids(value)
        elif value in (None, "", b"") or isinstance(value, dict | Message):
            continue
        elif isinstance(value, bytes):
            found.append(base64.b64encode(value).decode("ascii"))
        else:
            found.append(str(value))
    return found


def _is_repeated(value: Any) -> bool:
    return hasattr(value, "extend") and hasattr(value, "__iter__") and not isinstance(value, str)


def message_values(message: Message, path: str) -> list[Any]:
    """`values_at` on a parsed protobuf message: dots into messages, `[]` into lists."""
    head, dot, rest = path.partition(".")
    name = head.removesuffix("[]")
    field = message.DESCRIPTOR.fields_by_name.get(name)
    if field is None:
        return []
    if not field.is_repeated and field.has_presence and not message.HasField(name):
        return []  # never set: a proto default is no value
    value = getattr(message, name)
    items = list(value) if field.is_repeated else [value]
    if not dot:
        return items
    return [v for item in items if isinstance(item, Message) for v in message_values(item, rest)]


def ours(route: Route, sent: Forwarded) -> dict[str, list[str]]:
    return {path: ids(values_at(sent.request.params, path)) for path in route.ids}


@dataclass(frozen=True)
class Reading:
    rule: str  # the Flask rule MLflow dispatched to
    view_args: Mapping[str, Any]
    ids: dict[str, list[str]]


def flask_dispatch(flask_app: Any, environ: dict[str, Any]) -> tuple[str, dict[str, Any]] | str:
    """The rule Flask dispatches this environ to and the view arguments it passes."""
    from flask import request

    with flask_app.request_context(environ):
        if request.routing_exception is not None:
            return f"Flask answers {request.routing_exception.code}"
        return request.url_rule.rule, dict(request.view_args or {})


def mlflow_reading(flask_app: Any, route: Route, environ: dict[str, Any]) -> Reading | str:
    """What MLflow's handler for `route` reads from this environ, or why MLflow refuses it."""
    from flask import request
    from mlflow.exceptions import MlflowException
    from mlflow.server.handlers import _get_request_message, _get_validated_flask_request_json
    from werkzeug.exceptions import HTTPException

    with flask_app.request_context(environ):
        if request.routing_exception is not None:
            return f"Flask answers {request.routing_exception.code}"
        view_args = dict(request.view_args or {})
        try:
            if route.spec.parse == "proto":
                parsed: Any = _get_request_message(
                    route.message(), flask_request=request, schema=route.schema
                )
            elif route.spec.parse == "query_or_json":
                parsed = _get_validated_flask_request_json(
                    flask_request=request, schema=route.schema
                )
            elif route.spec.parse == "query":
                parsed = request.args
            elif route.spec.parse == "json":  # the handlers read `request.json`
                parsed = request.json
            else:  # path variables only
                parsed = None
        except (MlflowException, HTTPException) as exc:
            return f"MLflow refuses ({type(exc).__name__}: {str(exc)[:90]})"
        except Exception as exc:  # MLflow's own validators fail on odd shapes: a 500
            return f"MLflow fails ({type(exc).__name__})"
        if route.spec.parse == "json" and not isinstance(parsed, dict):
            return "MLflow fails on a body that is not an object"
        found = {}
        for path in route.ids:
            if path in view_args and path not in route.read_from_message:
                found[path] = ids([view_args[path]])
            elif isinstance(parsed, Message):
                found[path] = ids(message_values(parsed, path))
            elif parsed is None:
                found[path] = []
            elif route.spec.parse == "query":
                lists = canonical.list_params(route.spec)
                found[path] = ids(parsed.getlist(path) if path in lists else [parsed.get(path)])
            else:
                found[path] = ids(values_at(parsed, path))
        return Reading(request.url_rule.rule, view_args, found)
