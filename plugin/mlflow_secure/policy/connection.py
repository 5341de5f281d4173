"""A small pool of keep-alive HTTP/1.1 connections to OPA for the async request path.

Every authorised request makes one POST to OPA, so its cost is paid on every request: a
general-purpose async client measured about 1.1 ms per decision here, a plain connection
driven by h11 (the HTTP/1.1 state machine httpx itself builds on) about 0.35 ms. This module
is only the I/O around h11: open (unix socket, TCP or TLS), send, read, reuse.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit

import h11

MAX_IDLE = 32
MAX_RESPONSE = 1024 * 1024


class ConnectionFailed(Exception):
    """The exchange failed; `reused` tells whether a kept-alive connection went stale."""

    def __init__(self, message: str, reused: bool) -> None:
        super().__init__(message)
        self.reused = reused


@dataclass
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    state: h11.Connection
    used: bool = False

    def close(self) -> None:
        self.writer.close()


class OpaConnectionPool:
    def __init__(self, base_url: str, uds: str | None) -> None:
        parts = urlsplit(base_url)
        self._uds = uds
        self._host = parts.hostname or "opa"
        self._tls = parts.scheme == "https"
        self._port = parts.port or (443 if self._tls else 80)
        self._idle: list[_Connection] = []

    async def _open(self) -> _Connection:
        if self._uds:
            reader, writer = await asyncio.open_unix_connection(self._uds)
        else:
            context = ssl.create_default_context() if self._tls else None
            reader, writer = await asyncio.open_connection(self._host, self._port, ssl=context)
        return _Connection(reader, writer, h11.Connection(h11.CLIENT))

    async def post_json(self, target: str, body: bytes) -> tuple[int, bytes]:
        """One request; a stale kept-alive connection is replaced once, transparently."""
        try:
            return await self._exchange(target, body)
        except ConnectionFailed as exc:
            if not exc.reused:
                raise
            return await self._exchange(target, body)

    async def _exchange(self, target: str, body: bytes) -> tuple[int, bytes]:
        connection = self._idle.pop() if self._idle else None
        reused = connection is not None
        try:
            if connection is None:
                connection = await self._open()
            status, payload = await _round_trip(connection, self._host, target, body)
        except (OSError, h11.ProtocolError, asyncio.IncompleteReadError) as exc:
            if connection is not None:
                connection.close()
            raise ConnectionFailed(type(exc).__name__, reused) from None
        except BaseException:  # cancelled (deadline): the connection's state is unknown
            if connection is not None:
                connection.close()
            raise
        if connection.state.our_state is h11.DONE and connection.state.their_state is h11.DONE:
            connection.state.start_next_cycle()
            if len(self._idle) < MAX_IDLE:
                self._idle.append(connection)
            else:
                connection.close()
        else:
            connection.close()
        return status, payload

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()


def _request(state: h11.Connection, host: str, target: str, body: bytes) -> bytes:
    headers = [
        ("Host", host),
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
    ]
    data = state.send(h11.Request(method="POST", target=target, headers=headers))
    return data + state.send(h11.Data(data=body)) + state.send(h11.EndOfMessage())


class _Response:
    """Collects one response from h11 events; `done` once the message has ended."""

    def __init__(self) -> None:
        self.status = 0
        self.chunks: list[bytes] = []
        self.size = 0
        self.done = False

    def take(self, event: object) -> None:
        if isinstance(event, h11.Response):
            self.status = event.status_code
        elif isinstance(event, h11.Data):
            self.size += len(event.data)
            if self.size > MAX_RESPONSE:
                raise h11.ProtocolError("response too large")
            self.chunks.append(event.data)
        elif isinstance(event, h11.EndOfMessage):
            self.done = True
        elif isinstance(event, h11.ConnectionClosed):
            raise h11.ProtocolError("connection closed mid-response")

    def result(self) -> tuple[int, bytes]:
        return self.status, b"".join(self.chunks)


async def _round_trip(
    connection: _Connection, host: str, target: str, body: bytes
) -> tuple[int, bytes]:
    state = connection.state
    connection.writer.write(_request(state, host, target, body))
    response = _Response()
    while not response.done:
        event = state.next_event()
        if event is h11.NEED_DATA:
            received = await connection.reader.read(65536)
            if not received:
                raise asyncio.IncompleteReadError(b"", None)
            state.receive_data(received)
        else:
            response.take(event)
    return response.result()


# ------------------------------------------------------------------------- synchronous callers


class SyncOpaConnectionPool:
    """The same exchange for threads (WSGI workers, listing narrowers in worker threads): a
    general-purpose sync client cost about 1 ms per call here, a plain socket and h11 a
    fraction of that. Connections are kept per pool, handed to one thread at a time."""

    def __init__(self, base_url: str, uds: str | None, timeout: float) -> None:
        parts = urlsplit(base_url)
        self._uds = uds
        self._host = parts.hostname or "opa"
        self._tls = parts.scheme == "https"
        self._port = parts.port or (443 if self._tls else 80)
        self._timeout = timeout
        self._idle: list[tuple[socket.socket, h11.Connection]] = []
        self._lock = threading.Lock()

    def _open(self) -> tuple[socket.socket, h11.Connection]:
        if self._uds:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self._timeout)
            sock.connect(self._uds)
        else:
            sock = socket.create_connection((self._host, self._port), timeout=self._timeout)
            if self._tls:
                sock = ssl.create_default_context().wrap_socket(sock, server_hostname=self._host)
        return sock, h11.Connection(h11.CLIENT)

    def post_json(self, target: str, body: bytes) -> tuple[int, bytes]:
        """One request; a stale kept-alive connection is replaced once, transparently."""
        try:
            return self._exchange(target, body)
        except ConnectionFailed as exc:
            if not exc.reused:
                raise
            return self._exchange(target, body)

    def _exchange(self, target: str, body: bytes) -> tuple[int, bytes]:
        with self._lock:
            connection = self._idle.pop() if self._idle else None
        reused = connection is not None
        try:
            if connection is None:
                connection = self._open()
            sock, state = connection
            sock.settimeout(self._timeout)
            sock.sendall(_request(state, self._host, target, body))
            response = _Response()
            while not response.done:
                event = state.next_event()
                if event is h11.NEED_DATA:
                    received = sock.recv(65536)
                    if not received:
                        raise ConnectionResetError("closed")
                    state.receive_data(received)
                else:
                    response.take(event)
        except TimeoutError:
            if connection is not None:
                connection[0].close()
            raise
        except (OSError, h11.ProtocolError) as exc:
            if connection is not None:
                connection[0].close()
            raise ConnectionFailed(type(exc).__name__, reused) from None
        if state.our_state is h11.DONE and state.their_state is h11.DONE:
            state.start_next_cycle()
            with self._lock:
                keep = len(self._idle) < MAX_IDLE
                if keep:
                    self._idle.append(connection)
            if not keep:
                sock.close()
        else:
            sock.close()
        return response.result()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for sock, _ in idle:
            sock.close()
