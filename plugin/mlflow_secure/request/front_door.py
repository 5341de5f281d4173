"""The one middleware every request passes through, for ASGI (uvicorn) and WSGI servers.

It sits outside FastAPI and Flask, so no MLflow route, native or mounted, can be reached
without passing here first. The decisions are sequence.py's, written once; this module is
the I/O of each server interface around them: it reads the facts off the wire, carries out
the sequence's effects (reading the body, database work, policy calls, narrowing), hands
MLflow the rebuilt request, and records one audit event per request whatever the outcome.
The only routes passed without credentials are the census's public ones (health, the UI's
static assets); the health probe reports 503 while no policy decision can be had.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote

import anyio

from mlflow_secure.audit.events import client_ip
from mlflow_secure.errors import ErrorResponse
from mlflow_secure.identity.subject import bind_subject, unbind_subject
from mlflow_secure.keys.resources import bind_judged, unbind_judged
from mlflow_secure.policy.client import PolicyUnavailable
from mlflow_secure.prefixed import Prefixed
from mlflow_secure.request import decrypting, listings, plaintext_guard, responses, sequence
from mlflow_secure.request.census import ID_HEADERS
from mlflow_secure.request.decision import decide_each, decide_each_sync, readable
from mlflow_secure.request.lookups import NeedsStore, cache_only
from mlflow_secure.request.pipeline import (
    MAX_BUFFERED_BODY,
    POLICY_DOWN,
    FrontDoorConfig,
    Pipeline,
    is_health_probe,
    log_problem,
    policy_down,
    record,
)
from mlflow_secure.request.trail import (
    CLIENT_HEADER,
    ENCRYPTION_HEADER,
    PROJECT_HEADER,
    RequestFacts,
    Trail,
)

Scope = dict[str, Any]
ASGIApp = Callable[..., Any]
Reply = ErrorResponse | listings.JsonReply

__all__ = ["FrontDoorConfig", "SecureASGIMiddleware", "SecureWSGIMiddleware"]


# ---------------------------------------------------------------------------------- ASGI


class SecureASGIMiddleware:
    def __init__(self, app: ASGIApp, config: FrontDoorConfig) -> None:
        self.app = app
        self.config = config
        self.pipeline = Pipeline(config)

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":
            # WebSockets and anything else: no route of ours authorises them.
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
            return
        headers = scope["headers"]
        peer = (scope.get("client") or ("",))[0]
        trail = Trail(
            RequestFacts(
                method=scope["method"].upper(),
                path=scope["path"],
                query=scope.get("query_string", b""),
                client_ip=client_ip(peer, headers, self.config.trusted_proxies),
                tls=scope.get("scheme") == "https",
                content_type=_header(headers, b"content-type"),
                content_encoding=_header(headers, b"content-encoding"),
                has_body=_asgi_has_body(headers),
                host=_header(headers, b"host"),
                origin=_header(headers, b"origin"),
                id_headers=tuple(
                    (k.decode("latin-1"), v.decode("latin-1"))
                    for k, v in headers
                    if k.decode("latin-1") in ID_HEADERS
                ),
                client=_header(headers, CLIENT_HEADER.encode()),
                project=_header(headers, PROJECT_HEADER.encode()),
                encryption=_header(headers, ENCRYPTION_HEADER.encode()),
            ),
            user_agent=_header(headers, b"user-agent"),
        )
        send = responses.asgi_sender(send, trail)
        try:
            await self._handle(scope, receive, send, trail)
        finally:
            record(self.config, trail)

    async def _handle(self, scope: Scope, receive: Callable, send: Callable, trail: Trail) -> None:
        config = self.config
        facts = trail.facts
        if is_health_probe(facts.method, facts.path, config.health_paths):
            problem = await config.engine.problem()
            if problem is None:
                await self.app(scope, receive, send)
                return
            log_problem(problem)
            trail.refuse(POLICY_DOWN, "unavailable", "policy engine unavailable")
            await _send_asgi(send, POLICY_DOWN)
            return
        authorization = [v for k, v in scope["headers"] if k == b"authorization"]
        outcome = await self._run(
            sequence.authorise(self.pipeline, trail, authorization), receive, trail
        )
        if not isinstance(outcome, sequence.Forward):
            await _send_asgi(send, outcome)
            return
        if outcome is sequence.PASS:  # a public route
            await self.app(scope, receive, send)
            return
        scope, receive = _forwarded(scope, receive, outcome)
        if _uploads_guarded(config, trail):
            receive, refusal = await _guard_asgi(config, trail, receive)
            if refusal is not None:
                await _send_asgi(send, trail.refuse(refusal, "deny", refusal.message))
                return
        identity = _ui_download(config, trail)
        if identity is not None:
            experiment = (trail.resource or {}).get("experiment_id")
            send = decrypting.asgi_decrypting(send, config.decryption, identity, experiment)
        token, judged = bind_subject(trail.subject), bind_judged(trail.resource)
        try:
            await self.app(scope, receive, send)
        finally:
            unbind_judged(judged)
            unbind_subject(token)

    async def _run(self, steps: sequence.Sequence, receive: Callable, trail: Trail) -> Any:
        value: Any = None
        while True:
            try:
                effect = steps.send(value)
            except StopIteration as done:
                return done.value
            value = await self._perform(effect, receive, trail)

    async def _perform(self, effect: Any, receive: Callable, trail: Trail) -> Any:
        if isinstance(effect, sequence.Decide):
            return await decide_each(self.config, list(effect.inputs))
        if isinstance(effect, sequence.Blocking):
            if effect.cached:
                try:
                    with cache_only():
                        return effect.call(*effect.args)
                except NeedsStore:
                    pass
            return await anyio.to_thread.run_sync(effect.call, *effect.args)
        if isinstance(effect, sequence.ReadBody):
            return await _read_body(receive)
        if isinstance(effect, sequence.Narrow):
            return await narrow_on_loop(self.config, self.pipeline, trail)
        raise TypeError(f"unknown effect {effect!r}")


def _forwarded(
    scope: Scope, receive: Callable, outcome: sequence.Forward
) -> tuple[Scope, Callable]:
    """The scope MLflow receives: the routed path, the canonical query and body."""
    scope = {**scope, "query_string": outcome.query}
    if outcome.path != scope["path"]:
        scope["path"] = outcome.path
        scope["raw_path"] = quote(outcome.path).encode("ascii")
    if outcome.body is not None:
        scope = _with_content_length(scope, len(outcome.body))
        receive = _replay(outcome.body)
    # MLflow's native routes (gateway budgets, jobs, MCP) read the user from here.
    scope["state"] = {**scope.get("state", {}), "username": outcome.username}
    return scope, receive


class _FilterNeeded(BaseException):
    def __init__(self, resources: list[dict[str, Any]]) -> None:
        self.resources = resources


def _defer(resources: list[dict[str, Any]]) -> set[str]:
    raise _FilterNeeded(resources)


async def narrow_on_loop(config: FrontDoorConfig, pipeline: Pipeline, trail: Trail) -> Any:
    """Narrow on the event loop when the caches can describe the items: a first pass finds
    the filter question, it is asked asynchronously, a second pass applies the answer. When
    the database is needed, the whole narrowing moves to a worker thread."""
    try:
        with cache_only():
            return pipeline.listing(trail, _defer)
    except NeedsStore:
        return await anyio.to_thread.run_sync(pipeline.listing, trail)
    except _FilterNeeded as needed:
        question = needed.resources
    try:
        answer = await readable(config, pipeline.filter_input(trail, question))
    except PolicyUnavailable as exc:
        return policy_down(trail, exc)

    def answered(resources: list[dict[str, Any]]) -> set[str]:
        if resources != question:  # the caches moved between the passes: start over
            raise NeedsStore
        return answer

    try:
        with cache_only():
            return pipeline.listing(trail, answered)
    except NeedsStore:
        return await anyio.to_thread.run_sync(pipeline.listing, trail)


def _asgi_has_body(headers: list[tuple[bytes, bytes]]) -> bool:
    for key, value in headers:
        if key == b"transfer-encoding" or (key == b"content-length" and value.strip() != b"0"):
            return True
    return False


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


async def _read_body(receive: Callable) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BUFFERED_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes) -> Callable:
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return receive


def _with_content_length(scope: Scope, length: int) -> Scope:
    headers = [(k, v) for k, v in scope["headers"] if k != b"content-length"]
    headers.append((b"content-length", str(length).encode()))
    return {**scope, "headers": headers}


async def _send_asgi(send: Callable, error: Reply) -> None:
    headers = [(name.encode(), value.encode()) for name, value in error.header_list()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": error.body()})


# ---------------------------------------------------------------------------------- WSGI


class SecureWSGIMiddleware:
    def __init__(self, app: Callable, config: FrontDoorConfig) -> None:
        self.app = app
        self.config = config
        self.pipeline = Pipeline(config)

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        forwarded = {
            "x-forwarded-for": environ.get("HTTP_X_FORWARDED_FOR"),
            "forwarded": environ.get("HTTP_FORWARDED"),
        }
        trail = Trail(
            RequestFacts(
                method=environ.get("REQUEST_METHOD", "").upper(),
                # PEP 3333 hands the path's bytes as latin-1; Flask decodes them as UTF-8
                path=wsgi_path(environ.get("PATH_INFO", "")),
                query=environ.get("QUERY_STRING", "").encode("latin-1"),
                client_ip=client_ip(
                    environ.get("REMOTE_ADDR", ""),
                    {k: v for k, v in forwarded.items() if v is not None},
                    self.config.trusted_proxies,
                ),
                tls=environ.get("wsgi.url_scheme") == "https",
                content_type=environ.get("CONTENT_TYPE"),
                content_encoding=environ.get("HTTP_CONTENT_ENCODING"),
                has_body="HTTP_TRANSFER_ENCODING" in environ
                or (environ.get("CONTENT_LENGTH") or "0").strip() != "0",
                host=environ.get("HTTP_HOST"),
                origin=environ.get("HTTP_ORIGIN"),
                id_headers=tuple(
                    (name, environ[_environ_key(name)])
                    for name in sorted(ID_HEADERS)
                    if _environ_key(name) in environ
                ),
                client=environ.get(_environ_key(CLIENT_HEADER)),
                project=environ.get(_environ_key(PROJECT_HEADER)),
                encryption=environ.get(_environ_key(ENCRYPTION_HEADER)),
            ),
            user_agent=environ.get("HTTP_USER_AGENT"),
        )
        reply = responses.WsgiReply(start_response, trail)
        try:
            return reply.finish(self._handle(environ, reply.start_response, trail))
        finally:
            record(self.config, trail)

    def _handle(
        self, environ: dict[str, Any], start_response: Callable, trail: Trail
    ) -> Iterable[bytes]:
        config, facts = self.config, trail.facts
        if is_health_probe(facts.method, facts.path, config.health_paths):
            problem = config.engine.problem_sync()
            if problem is None:
                return list(self.app(environ, start_response))
            log_problem(problem)
            trail.refuse(POLICY_DOWN, "unavailable", "policy engine unavailable")
            return _send_wsgi(start_response, POLICY_DOWN)
        steps = sequence.authorise(self.pipeline, trail, _wsgi_authorization(environ))
        outcome = self._run(steps, environ, trail)
        if not isinstance(outcome, sequence.Forward):
            return _send_wsgi(start_response, outcome)
        if outcome is sequence.PASS:  # a public route
            return list(self.app(environ, start_response))
        _forward_wsgi(environ, outcome)
        if _uploads_guarded(config, trail):
            refusal = _guard_wsgi(config, trail, environ)
            if refusal is not None:
                return _send_wsgi(start_response, trail.refuse(refusal, "deny", refusal.message))
        identity = _ui_download(config, trail)
        token, judged = bind_subject(trail.subject), bind_judged(trail.resource)
        try:
            # Materialise the response while the subject is bound: handlers may stream.
            if identity is None:
                return list(self.app(environ, start_response))
            experiment = (trail.resource or {}).get("experiment_id")
            return _decrypted_wsgi(self.app, environ, start_response, config, identity, experiment)
        finally:
            unbind_judged(judged)
            unbind_subject(token)

    def _run(self, steps: sequence.Sequence, environ: dict[str, Any], trail: Trail) -> Any:
        value: Any = None
        while True:
            try:
                effect = steps.send(value)
            except StopIteration as done:
                return done.value
            value = self._perform(effect, environ, trail)

    def _perform(self, effect: Any, environ: dict[str, Any], trail: Trail) -> Any:
        if isinstance(effect, sequence.Decide):
            return decide_each_sync(self.config, list(effect.inputs))
        if isinstance(effect, sequence.Blocking):
            return effect.call(*effect.args)
        if isinstance(effect, sequence.ReadBody):
            return _read_wsgi_body(environ)
        if isinstance(effect, sequence.Narrow):
            return self.pipeline.listing(trail)
        raise TypeError(f"unknown effect {effect!r}")


def wsgi_path(path_info: str) -> str:
    """The path as Werkzeug routes it: PATH_INFO's latin-1 text decoded back from UTF-8."""
    try:
        return path_info.encode("latin-1").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a server that already decoded it
        return path_info


def _environ_key(header: str) -> str:
    return "HTTP_" + header.upper().replace("-", "_")


def _forward_wsgi(environ: dict[str, Any], outcome: sequence.Forward) -> None:
    """The environ MLflow receives: the routed path, the canonical query and body."""
    environ["PATH_INFO"] = outcome.path.encode("utf-8").decode("latin-1")
    environ["QUERY_STRING"] = outcome.query.decode("latin-1")
    if outcome.body is not None:
        environ["wsgi.input"] = io.BytesIO(outcome.body)
        environ["CONTENT_LENGTH"] = str(len(outcome.body))


def _wsgi_authorization(environ: dict[str, Any]) -> list[bytes]:
    # WSGI servers fold repeated headers into one comma-joined value; a comma cannot occur in
    # a single well-formed Bearer or Basic credential, so it reveals several headers.
    value = environ.get("HTTP_AUTHORIZATION")
    if value is None:
        return []
    raw = value.encode("latin-1")
    return raw.split(b",") if b"," in raw else [raw]


def _read_wsgi_body(environ: dict[str, Any]) -> bytes | None:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None
    if length > MAX_BUFFERED_BODY:
        return None
    return environ["wsgi.input"].read(length) if length > 0 else b""


def _uploads_guarded(config: FrontDoorConfig, trail: Trail) -> bool:
    resource = trail.resource or {}
    return plaintext_guard.guarded(trail.action.endpoint, resource, config.encrypt_from)


def _guard_check(config: FrontDoorConfig, trail: Trail, prefix: bytes) -> ErrorResponse | None:
    if trail.action.endpoint in plaintext_guard.BYPASSES_SERVER:
        return plaintext_guard.check_declared(trail.facts.encryption)
    identity = plaintext_guard.identity_of(
        trail.action.endpoint, trail.resource or {}, trail.params or {}
    )
    experiment = (trail.resource or {}).get("experiment_id")
    return plaintext_guard.check_prefix(prefix, identity, experiment, config.sessions)


async def _guard_asgi(
    config: FrontDoorConfig, trail: Trail, receive: Callable
) -> tuple[Callable, ErrorResponse | None]:
    """Read the body's first bytes (kept, and handed to MLflow ahead of the rest)."""
    messages: list[dict[str, Any]] = []
    prefix = b""
    wanted = trail.action.endpoint in plaintext_guard.CARRIES_FILE
    while wanted and len(prefix) < plaintext_guard.PREFIX_BYTES:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        prefix += message.get("body", b"")
        if not message.get("more_body", False):
            break
    refusal = await anyio.to_thread.run_sync(
        _guard_check, config, trail, prefix[: plaintext_guard.PREFIX_BYTES]
    )

    async def replayed() -> dict[str, Any]:
        return messages.pop(0) if messages else await receive()

    return replayed, refusal


def _guard_wsgi(
    config: FrontDoorConfig, trail: Trail, environ: dict[str, Any]
) -> ErrorResponse | None:
    prefix = b""
    if trail.action.endpoint in plaintext_guard.CARRIES_FILE:
        stream = environ["wsgi.input"]
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        wanted = min(length, plaintext_guard.PREFIX_BYTES)
        while len(prefix) < wanted:
            piece = stream.read(wanted - len(prefix))
            if not piece:
                break
            prefix += piece
        environ["wsgi.input"] = Prefixed(prefix, stream)
    return _guard_check(config, trail, prefix)


def _ui_download(config: FrontDoorConfig, trail: Trail) -> str | None:
    """The artefact identity of a UI download the server decrypts (decrypting.py), or None."""
    if config.decryption is None:
        return None
    return decrypting.identity_of(trail.action.endpoint, trail.params)  # None: not a UI view


def _decrypted_wsgi(
    app: Callable,
    environ: dict[str, Any],
    start_response: Callable,
    config: Any,
    identity: str,
    experiment_id: object,
) -> list[bytes]:
    captured: dict[str, Any] = {}

    def capture(status: str, headers: list, exc_info: Any = None) -> Callable:
        captured.update(status=status, headers=headers, exc_info=exc_info)

        def write(_data: bytes) -> None:
            raise RuntimeError("a decrypted download cannot use the WSGI write() callable")

        return write

    body = decrypting.collect_bounded(app(environ, capture))
    status, headers, body = decrypting.wsgi_decrypted(
        captured["status"],
        captured["headers"],
        body,
        config.decryption,
        identity,
        experiment_id,
    )
    start_response(status, headers, captured["exc_info"])
    return body


def _send_wsgi(start_response: Callable, error: Reply) -> list[bytes]:
    reason = {
        200: "OK",
        400: "Bad Request",
        401: "Unauthorized",
        403: "Forbidden",
        404: "Not Found",
        429: "Too Many Requests",
        503: "Service Unavailable",
    }
    start_response(f"{error.status} {reason.get(error.status, 'Error')}", error.header_list())
    return [error.body()]
