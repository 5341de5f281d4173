"""The one middleware every request passes through, for ASGI (uvicorn) and WSGI servers.

It sits outside FastAPI and Flask, so no MLflow route, native or mounted, can be reached
without passing here first: route (census) → authenticate → resolve → decide (OPA) →
enforce, and one audit event per request whatever the outcome. The only routes passed
without credentials are the census's public ones (health, the UI's static assets); the
health probe reports 503 while no policy decision can be had. The decisions themselves are
in pipeline.py; this module is the I/O of each server interface around them.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from typing import Any

import anyio

from mlflow_secure.audit.events import client_ip
from mlflow_secure.errors import ErrorResponse
from mlflow_secure.identity.authenticator import AuthError
from mlflow_secure.identity.subject import bind_subject, unbind_subject
from mlflow_secure.request import gate, listings
from mlflow_secure.request.census import ID_HEADERS
from mlflow_secure.request.pipeline import (
    FrontDoorConfig,
    Pipeline,
    decide,
    decide_each,
    decide_each_sync,
    decide_sync,
    is_health_probe,
    log_problem,
    narrow_on_loop,
    record,
    resolve_on_loop,
)

Scope = dict[str, Any]
ASGIApp = Callable[..., Any]


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
        trail = gate.Trail(
            gate.RequestFacts(
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
            ),
            user_agent=_header(headers, b"user-agent"),
        )

        async def send_and_note(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                trail.status = message["status"]
            await send(message)

        try:
            await self._handle(scope, receive, send_and_note, trail)
        finally:
            record(self.config, trail)

    async def _handle(
        self, scope: Scope, receive: Callable, send: Callable, trail: gate.Trail
    ) -> None:
        config = self.config
        facts = trail.facts
        if is_health_probe(facts.method, facts.path, config.health_paths):
            problem = await config.engine.problem()
            if problem is None:
                await self.app(scope, receive, send)
                return
            log_problem(problem)
            trail.refuse(gate.POLICY_DOWN, "unavailable", "policy engine unavailable")
            await _send_asgi(send, gate.POLICY_DOWN)
            return
        outcome = await self._authorise(scope, receive, trail)
        if not isinstance(outcome, tuple):  # an error, or a reply the front door makes itself
            await _send_asgi(send, outcome)
            return
        scope, receive = outcome
        if trail.subject is None:  # public route
            await self.app(scope, receive, send)
            return
        token = bind_subject(trail.subject)
        try:
            await self.app(scope, receive, send)
        finally:
            unbind_subject(token)

    async def _authorise(
        self, scope: Scope, receive: Callable, trail: gate.Trail
    ) -> ErrorResponse | listings.JsonReply | tuple[Scope, Callable]:
        config, pipeline, facts = self.config, self.pipeline, trail.facts
        action = pipeline.route(trail)
        if isinstance(action, ErrorResponse):
            return action
        if action.public:  # the UI's static assets: no data, no credentials needed
            return scope, receive
        authorization = [v for k, v in scope["headers"] if k == b"authorization"]
        try:
            credential = pipeline.credential(trail, authorization)
            if isinstance(credential, ErrorResponse):
                return credential
            subject = config.authenticator.cached(credential)
            if subject is None:
                subject = await anyio.to_thread.run_sync(
                    gate.finish_authentication, config.authenticator, credential, facts
                )
        except AuthError as exc:
            return await anyio.to_thread.run_sync(pipeline.failed, trail, exc)
        if isinstance(subject, ErrorResponse):
            return trail.refuse(subject, "unavailable", "identity store unavailable")
        trail.subject = subject
        refused = pipeline.body_on_read(trail)
        if refused is not None:
            return refused

        body = b""
        stamping = gate.records_authorship(action, facts, config.static_prefix)
        if gate.needs_body(action, facts) or stamping:
            body = await _read_body(receive)
            if body is None:
                return trail.refuse(gate.BODY_TOO_LARGE, "deny", "request body too large")
            if stamping:
                stamped = pipeline.stamp(trail, body)
                if isinstance(stamped, ErrorResponse):
                    return stamped
                if stamped != body:
                    scope = _with_content_length(scope, len(stamped))
                    body = stamped
            receive = _replay(body)

        resource = await resolve_on_loop(pipeline, trail, body)
        if isinstance(resource, ErrorResponse):
            return resource
        decision = await decide(config, pipeline.policy_input(trail))
        if pipeline.wants_alternatives(trail, decision):
            alternatives = await decide_each(config, pipeline.other_inputs(trail, trail.any_of))
            decision = pipeline.first_allowed(trail, decision, alternatives)
        refused = pipeline.verdict(trail, decision)
        if refused is None and trail.also:
            refused = pipeline.others_verdict(
                trail, await decide_each(config, pipeline.other_inputs(trail, trail.also))
            )
        if refused is not None:
            return refused
        if listings.narrows(action.endpoint):
            narrowed = await narrow_on_loop(config, pipeline, trail)
            if isinstance(narrowed, listings.Rewrite):
                if narrowed.body is not None:
                    scope = _with_content_length(scope, len(narrowed.body))
                    receive = _replay(narrowed.body)
                if narrowed.query is not None:
                    scope = {**scope, "query_string": narrowed.query}
            elif narrowed is not None:
                return narrowed
        # MLflow's native routes (gateway budgets, jobs, MCP) read the user from here.
        scope = {**scope, "state": {**scope.get("state", {}), "username": subject.name}}
        return scope, receive


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
        if size > gate.MAX_BUFFERED_BODY:
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


async def _send_asgi(send: Callable, error: ErrorResponse | listings.JsonReply) -> None:
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
        trail = gate.Trail(
            gate.RequestFacts(
                method=environ.get("REQUEST_METHOD", "").upper(),
                path=environ.get("PATH_INFO", ""),
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
                    (name, environ[f"HTTP_{name.upper().replace('-', '_')}"])
                    for name in sorted(ID_HEADERS)
                    if f"HTTP_{name.upper().replace('-', '_')}" in environ
                ),
            ),
            user_agent=environ.get("HTTP_USER_AGENT"),
        )

        def start_and_note(status: str, headers: list, *args: Any) -> Any:
            trail.status = int(status.split(" ", 1)[0])
            return start_response(status, headers, *args)

        try:
            return self._handle(environ, start_and_note, trail)
        finally:
            record(self.config, trail)

    def _handle(
        self, environ: dict[str, Any], start_response: Callable, trail: gate.Trail
    ) -> Iterable[bytes]:
        config, facts = self.config, trail.facts
        if is_health_probe(facts.method, facts.path, config.health_paths):
            problem = config.engine.problem_sync()
            if problem is None:
                return list(self.app(environ, start_response))
            log_problem(problem)
            trail.refuse(gate.POLICY_DOWN, "unavailable", "policy engine unavailable")
            return _send_wsgi(start_response, gate.POLICY_DOWN)
        outcome = self._authorise(environ, trail)
        if outcome is not None:  # an error, or a reply the front door makes itself
            return _send_wsgi(start_response, outcome)
        if trail.subject is None:  # public route
            return list(self.app(environ, start_response))
        token = bind_subject(trail.subject)
        try:
            # Materialise the response while the subject is bound: handlers may stream.
            return list(self.app(environ, start_response))
        finally:
            unbind_subject(token)

    def _authorise(
        self, environ: dict[str, Any], trail: gate.Trail
    ) -> ErrorResponse | listings.JsonReply | None:
        config, pipeline, facts = self.config, self.pipeline, trail.facts
        action = pipeline.route(trail)
        if isinstance(action, ErrorResponse):
            return action
        if action.public:
            return None
        try:
            credential = pipeline.credential(trail, _wsgi_authorization(environ))
            if isinstance(credential, ErrorResponse):
                return credential
            subject = config.authenticator.cached(credential) or gate.finish_authentication(
                config.authenticator, credential, facts
            )
        except AuthError as exc:
            return pipeline.failed(trail, exc)
        if isinstance(subject, ErrorResponse):
            return trail.refuse(subject, "unavailable", "identity store unavailable")
        trail.subject = subject
        refused = pipeline.body_on_read(trail)
        if refused is not None:
            return refused

        body = b""
        stamping = gate.records_authorship(action, facts, config.static_prefix)
        if gate.needs_body(action, facts) or stamping:
            body = _read_wsgi_body(environ)
            if body is None:
                return trail.refuse(gate.BODY_TOO_LARGE, "deny", "request body too large")
            if stamping:
                stamped = pipeline.stamp(trail, body)
                if isinstance(stamped, ErrorResponse):
                    return stamped
                body = stamped
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
        resource = pipeline.resource(trail, body)
        if isinstance(resource, ErrorResponse):
            return resource
        decision = decide_sync(config, pipeline.policy_input(trail))
        if pipeline.wants_alternatives(trail, decision):
            alternatives = decide_each_sync(config, pipeline.other_inputs(trail, trail.any_of))
            decision = pipeline.first_allowed(trail, decision, alternatives)
        refused = pipeline.verdict(trail, decision)
        if refused is None and trail.also:
            decisions = decide_each_sync(config, pipeline.other_inputs(trail, trail.also))
            refused = pipeline.others_verdict(trail, decisions)
        if refused is not None:
            return refused
        if not listings.narrows(action.endpoint):
            return None
        narrowed = pipeline.listing(trail)
        if isinstance(narrowed, listings.Rewrite):
            if narrowed.body is not None:
                environ["wsgi.input"] = io.BytesIO(narrowed.body)
                environ["CONTENT_LENGTH"] = str(len(narrowed.body))
            if narrowed.query is not None:
                environ["QUERY_STRING"] = narrowed.query.decode("latin-1")
            return None
        return narrowed


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
    if length > gate.MAX_BUFFERED_BODY:
        return None
    return environ["wsgi.input"].read(length) if length > 0 else b""


def _send_wsgi(start_response: Callable, error: ErrorResponse | listings.JsonReply) -> list[bytes]:
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
