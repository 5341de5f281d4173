"""The one middleware every request passes through, for ASGI (uvicorn) and WSGI servers.

It sits outside FastAPI and Flask, so no MLflow route, native or mounted, can be reached
without passing here first. The only public route is the exact health path, a readiness
probe that reports 503 while no policy decision can be had. Every other request is
authenticated, routed, resolved and decided by OPA (see gate.py) before MLflow sees it.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import anyio

from mlflow_secure import authorship, gate
from mlflow_secure.decision_client import PolicyUnavailable
from mlflow_secure.errors import ErrorResponse
from mlflow_secure.identity.authenticator import Authenticator, AuthError
from mlflow_secure.identity.subject import Subject, bind_subject, unbind_subject
from mlflow_secure.policy_engine import PolicyEngine
from mlflow_secure.routes import Action, classify, resolve_resource

_logger = logging.getLogger(__name__)

Scope = dict[str, Any]
ASGIApp = Callable[..., Any]


@dataclass
class FrontDoorConfig:
    engine: PolicyEngine
    authenticator: Authenticator
    sessions: Any  # sessionmaker of the identity store
    health_paths: frozenset[str]
    static_prefix: str = ""


def is_health_probe(method: str, path: str, health_paths: frozenset[str]) -> bool:
    # Exact paths only: a prefix match would make `/health/../api/...` style tricks public.
    return method in {"GET", "HEAD"} and path in health_paths


def _log_problem(problem: str) -> None:
    _logger.warning("refusing requests: %s", problem)


# ---------------------------------------------------------------------------------- ASGI


class SecureASGIMiddleware:
    def __init__(self, app: ASGIApp, config: FrontDoorConfig) -> None:
        self.app = app
        self.config = config

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":
            # WebSockets and anything else: no route of ours authorises them.
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
            return
        config = self.config
        if is_health_probe(scope["method"], scope["path"], config.health_paths):
            problem = await config.engine.problem()
            if problem is None:
                await self.app(scope, receive, send)
                return
            _log_problem(problem)
            await _send_asgi(send, gate.POLICY_DOWN)
            return
        outcome = await self._authorise(scope, receive)
        if isinstance(outcome, ErrorResponse):
            await _send_asgi(send, outcome)
            return
        subject, scope, receive = outcome
        token = bind_subject(subject)
        try:
            await self.app(scope, receive, send)
        finally:
            unbind_subject(token)

    async def _authorise(
        self, scope: Scope, receive: Callable
    ) -> ErrorResponse | tuple[Subject, Scope, Callable]:
        config = self.config
        headers = scope["headers"]
        facts = gate.RequestFacts(
            method=scope["method"].upper(),
            path=scope["path"],
            query=scope.get("query_string", b""),
            client_ip=(scope.get("client") or ("",))[0],
            tls=scope.get("scheme") == "https",
            content_type=_header(headers, b"content-type"),
            content_encoding=_header(headers, b"content-encoding"),
        )
        authorization = [v for k, v in headers if k == b"authorization"]
        throttle = config.authenticator.throttle
        try:
            credential = gate.read_credential(throttle, facts, authorization)
            if isinstance(credential, ErrorResponse):
                return credential
            subject = config.authenticator.cached(credential)
            if subject is None:
                subject = await anyio.to_thread.run_sync(
                    gate.finish_authentication, config.authenticator, credential, facts
                )
        except AuthError as exc:
            return await anyio.to_thread.run_sync(gate.record_failure, throttle, exc, facts)
        if isinstance(subject, ErrorResponse):
            return subject

        action = classify(facts.method, facts.path, config.static_prefix)
        body = b""
        stamping = gate.records_authorship(action, facts, config.static_prefix)
        if action.needs_body or stamping:
            body = await _read_body(receive)
            if body is None:
                return gate.BODY_TOO_LARGE
            if stamping:
                try:
                    stamped = gate.stamp(facts, body, subject, config.static_prefix)
                except authorship.AuthorshipViolation as exc:
                    return ErrorResponse(400, str(exc))
                if stamped != body:
                    scope = _with_content_length(scope, len(stamped))
                    body = stamped
            receive = _replay(body)

        resource = await _resource(action, subject, facts, body, config)
        try:
            decision = await config.engine.client.decide(
                gate.policy_input(subject, action, resource, facts)
            )
        except PolicyUnavailable as exc:
            _log_problem(str(exc))
            return gate.POLICY_DOWN
        if not decision.allow:
            return gate.denial(decision, subject, action)
        # MLflow's native routes (gateway budgets, jobs, MCP) read the user from here.
        scope = {**scope, "state": {**scope.get("state", {}), "username": subject.name}}
        return subject, scope, receive


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


async def _resource(
    action: Action, subject: Subject, facts: gate.RequestFacts, body: bytes, config: FrontDoorConfig
) -> dict[str, Any]:
    if action.plugin_path is None:
        return {"type": "unmapped"}
    return await anyio.to_thread.run_sync(
        resolve_resource, action, subject, facts.query, body, config.sessions
    )


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


async def _send_asgi(send: Callable, error: ErrorResponse) -> None:
    headers = [(name.encode(), value.encode()) for name, value in error.header_list()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": error.body()})


# ---------------------------------------------------------------------------------- WSGI


class SecureWSGIMiddleware:
    def __init__(self, app: Callable, config: FrontDoorConfig) -> None:
        self.app = app
        self.config = config

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        config = self.config
        method = environ.get("REQUEST_METHOD", "")
        if is_health_probe(method, environ.get("PATH_INFO", ""), config.health_paths):
            problem = config.engine.problem_sync()
            if problem is None:
                return self.app(environ, start_response)
            _log_problem(problem)
            return _send_wsgi(start_response, gate.POLICY_DOWN)
        outcome = self._authorise(environ)
        if isinstance(outcome, ErrorResponse):
            return _send_wsgi(start_response, outcome)
        token = bind_subject(outcome)
        try:
            # Materialise the response while the subject is bound: handlers may stream.
            return list(self.app(environ, start_response))
        finally:
            unbind_subject(token)

    def _authorise(self, environ: dict[str, Any]) -> ErrorResponse | Subject:
        config = self.config
        facts = gate.RequestFacts(
            method=environ.get("REQUEST_METHOD", "").upper(),
            path=environ.get("PATH_INFO", ""),
            query=environ.get("QUERY_STRING", "").encode("latin-1"),
            client_ip=environ.get("REMOTE_ADDR", ""),
            tls=environ.get("wsgi.url_scheme") == "https",
            content_type=environ.get("CONTENT_TYPE"),
            content_encoding=environ.get("HTTP_CONTENT_ENCODING"),
        )
        authorization = _wsgi_authorization(environ)
        throttle = config.authenticator.throttle
        try:
            credential = gate.read_credential(throttle, facts, authorization)
            if isinstance(credential, ErrorResponse):
                return credential
            subject = config.authenticator.cached(credential) or gate.finish_authentication(
                config.authenticator, credential, facts
            )
        except AuthError as exc:
            return gate.record_failure(throttle, exc, facts)
        if isinstance(subject, ErrorResponse):
            return subject

        action = classify(facts.method, facts.path, config.static_prefix)
        body = b""
        stamping = gate.records_authorship(action, facts, config.static_prefix)
        if action.needs_body or stamping:
            body = _read_wsgi_body(environ)
            if body is None:
                return gate.BODY_TOO_LARGE
            if stamping:
                try:
                    body = gate.stamp(facts, body, subject, config.static_prefix)
                except authorship.AuthorshipViolation as exc:
                    return ErrorResponse(400, str(exc))
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
        resource = (
            resolve_resource(action, subject, facts.query, body, config.sessions)
            if action.plugin_path is not None
            else {"type": "unmapped"}
        )
        try:
            decision = config.engine.client.decide_sync(
                gate.policy_input(subject, action, resource, facts)
            )
        except PolicyUnavailable as exc:
            _log_problem(str(exc))
            return gate.POLICY_DOWN
        if not decision.allow:
            return gate.denial(decision, subject, action)
        return subject


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


def _send_wsgi(start_response: Callable, error: ErrorResponse) -> list[bytes]:
    reason = {
        400: "Bad Request",
        401: "Unauthorized",
        403: "Forbidden",
        429: "Too Many Requests",
        503: "Service Unavailable",
    }
    start_response(f"{error.status} {reason.get(error.status, 'Error')}", error.header_list())
    return [error.body()]
