"""The one middleware every request passes through, for ASGI (uvicorn) and WSGI servers.

It sits outside FastAPI and Flask, so no MLflow route, native or mounted, can be reached
without passing here first. Until identities exist, the only public route is ``/health``
(a readiness probe that reports 503 while no policy decision can be had) and everything else
is refused with 401: nothing is ever allowed by default.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from mlflow_secure.errors import ErrorResponse, unauthenticated, unavailable
from mlflow_secure.policy_engine import PolicyEngine

_logger = logging.getLogger(__name__)

POLICY_DOWN = unavailable(
    "The policy engine is unavailable; requests are refused until it answers."
)
Scope = dict[str, Any]
ASGIApp = Callable[..., Any]


def is_health_probe(method: str, path: str, health_paths: frozenset[str]) -> bool:
    # Exact paths only: a prefix match would make `/health/../api/...` style tricks public.
    return method in {"GET", "HEAD"} and path in health_paths


def _log_problem(problem: str) -> None:
    _logger.warning("refusing requests: %s", problem)


class SecureASGIMiddleware:
    def __init__(self, app: ASGIApp, engine: PolicyEngine, health_paths: frozenset[str]) -> None:
        self.app = app
        self.engine = engine
        self.health_paths = health_paths

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":
            # WebSockets and anything else: no route of ours authorises them yet.
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
            return
        if is_health_probe(scope["method"], scope["path"], self.health_paths):
            problem = await self.engine.problem()
            if problem is None:
                await self.app(scope, receive, send)
                return
            _log_problem(problem)
            await _send_asgi(send, POLICY_DOWN)
            return
        await _send_asgi(send, unauthenticated())


async def _send_asgi(send: Callable, error: ErrorResponse) -> None:
    headers = [(name.encode(), value.encode()) for name, value in error.header_list()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": error.body()})


class SecureWSGIMiddleware:
    def __init__(self, app: Callable, engine: PolicyEngine, health_paths: frozenset[str]) -> None:
        self.app = app
        self.engine = engine
        self.health_paths = health_paths

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "")
        if is_health_probe(method, environ.get("PATH_INFO", ""), self.health_paths):
            problem = self.engine.problem_sync()
            if problem is None:
                return self.app(environ, start_response)
            _log_problem(problem)
            return _send_wsgi(start_response, POLICY_DOWN)
        return _send_wsgi(start_response, unauthenticated())


def _send_wsgi(start_response: Callable, error: ErrorResponse) -> list[bytes]:
    reason = {401: "Unauthorized", 403: "Forbidden", 503: "Service Unavailable"}
    start_response(f"{error.status} {reason.get(error.status, 'Error')}", error.header_list())
    return [error.body()]
