"""The response on its way out: its status noted for the audit trail, and an MLflow error
that would show the database's own words (SQL, driver messages) replaced by a plain one.

MLflow passes store exceptions through to the client, and SQLAlchemy's carry the statement
and sometimes the bound values: table layout, other users' ids, values of the very tags a
policy protects. Only error responses (status >= 400) with a JSON body are looked at, and
only their `message` is replaced; the error code stays MLflow's.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

from mlflow_secure.request.trail import Trail

_logger = logging.getLogger("mlflow_secure.request.front_door")

_SQL_MARKERS = ("[SQL:", "sqlite3.", "psycopg", "sqlalche.me", "(pymysql.", "IntegrityError")
PLAIN_STORE_ERROR = (
    "The tracking store could not carry out this request (a database error); the server log "
    "says which request it was."
)


def cleaned(body: bytes) -> bytes | None:
    """The body with a SQL-bearing message replaced, or None when it needs no change."""
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    message = payload.get("message") if isinstance(payload, dict) else None
    if not isinstance(message, str) or not any(m in message for m in _SQL_MARKERS):
        return None
    _logger.warning(
        "replaced a database error in an MLflow response (%s)", message.split("\n", 1)[0][:120]
    )
    return json.dumps({**payload, "message": PLAIN_STORE_ERROR}).encode()


def _is_json(headers: Iterable[tuple[Any, Any]]) -> bool:
    for key, value in headers:
        name = key.decode("latin-1") if isinstance(key, bytes) else key
        if name.lower() == "content-type":
            text = value.decode("latin-1") if isinstance(value, bytes) else value
            return text.split(";")[0].strip().lower() == "application/json"
    return False


def asgi_sender(send: Callable, trail: Trail) -> Callable:
    """`send` noting the status, and cleaning JSON error bodies (buffered: they are small)."""
    held: dict[str, Any] = {}

    async def sender(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            trail.status = message["status"]
            if message["status"] >= 400 and _is_json(message.get("headers", [])):
                held["start"], held["body"] = message, []
                return
            await send(message)
            return
        if message["type"] != "http.response.body" or "start" not in held:
            await send(message)
            return
        held["body"].append(message.get("body", b""))
        if message.get("more_body", False):
            return
        start, body = held.pop("start"), b"".join(held.pop("body"))
        replacement = cleaned(body)
        if replacement is not None:
            body = replacement
            headers = [
                (k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"
            ]
            start = {**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]}
        await send(start)
        await send({"type": "http.response.body", "body": body, "more_body": False})

    return sender


class WsgiReply:
    """`start_response` held back until the body is known, so an error body can be cleaned."""

    def __init__(self, start_response: Callable, trail: Trail) -> None:
        self._start_response = start_response
        self._trail = trail
        self._started: tuple[str, list, Any] | None = None

    def start_response(self, status: str, headers: list, exc_info: Any = None) -> Callable:
        self._trail.status = int(status.split(" ", 1)[0])
        self._started = (status, headers, exc_info)
        return self._refuse_write

    @staticmethod
    def _refuse_write(data: bytes) -> None:
        raise RuntimeError("the legacy WSGI write() callable is not supported")

    def finish(self, chunks: list[bytes]) -> list[bytes]:
        status, headers, exc_info = self._started
        if self._trail.status and self._trail.status >= 400 and _is_json(headers):
            replacement = cleaned(b"".join(chunks))
            if replacement is not None:
                chunks = [replacement]
                headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
                headers.append(("Content-Length", str(len(replacement))))
        self._start_response(status, headers, exc_info) if exc_info else self._start_response(
            status, headers
        )
        return chunks
