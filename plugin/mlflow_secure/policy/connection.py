"""A small pool of keep-alive HTTP/1.1 connections to OPA, for async and sync callers.

Every authorised request makes one POST to OPA, so its cost is paid on every request: a
general-purpose async client measured about 1.1 ms per decision here, a plain connection
driven by h11 (the HTTP/1.1 state machine httpx itself builds on) about 0.35 ms. This module
is the I/O around h11: open (unix socket, TCP or TLS), send, read, reuse, and the deadlines.

A slow OPA is not a dead one
----------------------------
On a busy machine a decision can wait behind other work: in OPA's queue, for a CPU, for this
worker's event loop or GIL. That is "OPA answering slowly" and must not become a refusal;
"OPA not answering" must, and quickly where it can be told. The rule:

* **Not answering, refused at once**: the socket is missing, the connection is refused or
  reset, OPA closes it mid-answer (its process died), or a connection cannot be opened
  within ``Deadlines.connect`` (the setting ``MLFLOW_SECURE_OPA_TIMEOUT``; a unix socket
  or local TCP connect is immediate while anything listens, the kernel queues it).
* **Silent, then asked whether alive**: once the request is sent, OPA may stay silent for
  ``Deadlines.patience`` (the same setting) as if nothing were wrong. Past it, the pool asks
  ``alive()`` (for the managed OPA: is its process running, not exited, stopped or a
  zombie), and again every ``patience``: a process that is not running refuses at once,
  a running one (or an OPA whose liveness cannot be told, an external one) is waited for.
* **Not answering, refused at the end**: OPA silent on an established connection for
  ``Deadlines.answer`` (``ANSWER_DEADLINE``, 5 s, or the setting if longer) is hung,
  whatever its process looks like.
* **Queued here, not counted against OPA**: at most ``MAX_CONNECTIONS`` exchanges per pool
  are in flight; a caller beyond them waits for a slot, up to ``Deadlines.slot`` (the
  answer deadline), before its decision is refused as overloaded.

A stale kept-alive connection (OPA restarted since) is not a failure either: it is replaced
once by a fresh connection, and the other idle ones, from the same OPA, are dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import h11

MAX_CONNECTIONS = 32  # exchanges in flight per pool; more callers queue for a slot
MAX_IDLE = MAX_CONNECTIONS
MAX_RESPONSE = 1024 * 1024
ANSWER_DEADLINE = 5.0

# Whether OPA's process runs: False (exited, stopped, a zombie), True, or None (cannot tell).
Liveness = Callable[[], bool | None]


@dataclass(frozen=True)
class Deadlines:
    connect: float  # open a connection (a TLS handshake counts as answering: `answer`)
    patience: float  # silence before liveness is consulted, and between consultations
    answer: float  # silence of an established connection after which OPA is hung
    slot: float  # wait for a free slot in this pool (our queue, not OPA's)

    @classmethod
    def from_timeout(cls, timeout: float, answer: float | None = None) -> Deadlines:
        """The deadlines for the setting MLFLOW_SECURE_OPA_TIMEOUT (`timeout`)."""
        answer = max(answer if answer is not None else ANSWER_DEADLINE, timeout)
        return cls(connect=timeout, patience=timeout, answer=answer, slot=answer)


class OpaExchangeError(Exception):
    """No answer from OPA for this exchange; the message says which kind of failure."""


class ConnectionFailed(OpaExchangeError):
    """The exchange failed; `reused` tells whether a kept-alive connection went stale."""

    def __init__(self, message: str, reused: bool) -> None:
        super().__init__(message)
        self.reused = reused


class NotAnswering(OpaExchangeError):
    """Connected, but OPA sent nothing in time, or its process is not running."""


class Overloaded(OpaExchangeError):
    """No free slot in this pool within `Deadlines.slot`: our own queue, not OPA, was full."""


def _silent(waited: float, deadlines: Deadlines, alive: Liveness | None) -> float:
    """After `waited` seconds of silence: how much longer to wait before asking again, or
    NotAnswering when OPA's process is not running or the answer deadline has passed."""
    if alive is not None and alive() is False:
        raise NotAnswering("its process is not running")
    remaining = deadlines.answer - waited
    if remaining <= 0:
        raise NotAnswering(f"no answer within {deadlines.answer:g}s")
    return min(deadlines.patience, remaining)


class _Endpoint:
    def __init__(self, base_url: str, uds: str | None) -> None:
        parts = urlsplit(base_url)
        self._uds = uds
        self._host = parts.hostname or "opa"
        self._tls = parts.scheme == "https"
        self._port = parts.port or (443 if self._tls else 80)


@dataclass
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    state: h11.Connection

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):  # its event loop may be gone already
            self.writer.close()


class OpaConnectionPool(_Endpoint):
    """For the event loop of one worker (uvicorn runs one loop per process). A pool used from
    a new event loop drops what belonged to the old one."""

    def __init__(
        self,
        base_url: str,
        uds: str | None,
        deadlines: Deadlines,
        alive: Liveness | None = None,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        super().__init__(base_url, uds)
        self._deadlines = deadlines
        self._alive = alive
        self._max = max_connections
        self._idle: list[_Connection] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots = asyncio.Semaphore(max_connections)

    def _bind_loop(self) -> None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self.close()
            self._slots = asyncio.Semaphore(self._max)
            self._loop = loop

    async def post_json(self, target: str, body: bytes) -> tuple[int, bytes]:
        """One request; a stale kept-alive connection is replaced once, transparently."""
        self._bind_loop()
        slots = self._slots
        if slots.locked():  # queued behind this worker's own decisions: bounded, not OPA's
            try:
                async with asyncio.timeout(self._deadlines.slot):
                    await slots.acquire()
            except TimeoutError:
                raise Overloaded(f"no free connection within {self._deadlines.slot:g}s") from None
        else:
            await slots.acquire()  # free: returns at once
        try:
            try:
                return await self._exchange(target, body, reuse=True)
            except ConnectionFailed as exc:
                if not exc.reused:
                    raise
                self.close()  # the other idle connections date from the same OPA
                return await self._exchange(target, body, reuse=False)
        finally:
            slots.release()

    async def _open(self) -> _Connection:
        deadlines = self._deadlines
        try:
            async with asyncio.timeout(deadlines.answer if self._tls else deadlines.connect):
                if self._uds:
                    reader, writer = await asyncio.open_unix_connection(self._uds)
                else:
                    context = ssl.create_default_context() if self._tls else None
                    reader, writer = await asyncio.open_connection(
                        self._host, self._port, ssl=context
                    )
        except TimeoutError:
            raise ConnectionFailed("connect timed out", reused=False) from None
        return _Connection(reader, writer, h11.Connection(h11.CLIENT))

    async def _exchange(self, target: str, body: bytes, reuse: bool) -> tuple[int, bytes]:
        connection = self._idle.pop() if reuse and self._idle else None
        reused = connection is not None
        try:
            if connection is None:
                connection = await self._open()
            status, payload = await self._round_trip(connection, target, body)
        except (NotAnswering, ConnectionFailed):
            if connection is not None:
                connection.close()
            raise
        except (OSError, h11.ProtocolError, asyncio.IncompleteReadError) as exc:
            if connection is not None:
                connection.close()
            raise ConnectionFailed(type(exc).__name__, reused) from None
        except BaseException:  # cancelled: the connection's state is unknown
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

    async def _round_trip(
        self, connection: _Connection, target: str, body: bytes
    ) -> tuple[int, bytes]:
        state = connection.state
        connection.writer.write(_request(state, self._host, target, body))
        response = _Response()
        while not response.done:
            event = state.next_event()
            if event is h11.NEED_DATA:
                received = await self._receive(connection.reader)
                if not received:
                    raise asyncio.IncompleteReadError(b"", None)
                state.receive_data(received)
            else:
                response.take(event)
        return response.result()

    async def _receive(self, reader: asyncio.StreamReader) -> bytes:
        deadlines = self._deadlines
        try:
            async with asyncio.timeout(deadlines.patience):
                return await reader.read(65536)
        except TimeoutError:
            pass
        # The slow path: silent for `patience`. Reading again after a timeout loses nothing
        # (the bytes stay in the reader's buffer), so an answer that arrived while this loop
        # was busy elsewhere is simply picked up here.
        started = time.monotonic() - deadlines.patience
        while True:
            wait = _silent(time.monotonic() - started, deadlines, self._alive)
            try:
                async with asyncio.timeout(wait):
                    return await reader.read(65536)
            except TimeoutError:
                continue

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


# ------------------------------------------------------------------------- synchronous callers


class SyncOpaConnectionPool(_Endpoint):
    """The same exchange for threads (WSGI workers, listing narrowers in worker threads): a
    general-purpose sync client cost about 1 ms per call here, a plain socket and h11 a
    fraction of that. Connections are kept per pool, handed to one thread at a time."""

    def __init__(
        self,
        base_url: str,
        uds: str | None,
        deadlines: Deadlines,
        alive: Liveness | None = None,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        super().__init__(base_url, uds)
        self._deadlines = deadlines
        self._alive = alive
        self._idle: list[tuple[socket.socket, h11.Connection]] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(max_connections)

    def _open(self) -> tuple[socket.socket, h11.Connection]:
        deadlines = self._deadlines
        try:
            if self._uds:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    sock.settimeout(deadlines.connect)
                    sock.connect(self._uds)
                except BaseException:
                    sock.close()
                    raise
            else:
                sock = socket.create_connection((self._host, self._port), timeout=deadlines.connect)
        except TimeoutError:
            raise ConnectionFailed("connect timed out", reused=False) from None
        if self._tls:  # the handshake needs OPA's CPU: it counts as answering
            sock.settimeout(deadlines.answer)
            try:
                sock = ssl.create_default_context().wrap_socket(sock, server_hostname=self._host)
            except TimeoutError:
                sock.close()
                raise NotAnswering(f"no TLS handshake within {deadlines.answer:g}s") from None
        return sock, h11.Connection(h11.CLIENT)

    def post_json(self, target: str, body: bytes) -> tuple[int, bytes]:
        """One request; a stale kept-alive connection is replaced once, transparently."""
        if not self._slots.acquire(timeout=self._deadlines.slot):
            raise Overloaded(f"no free connection within {self._deadlines.slot:g}s")
        try:
            try:
                return self._exchange(target, body, reuse=True)
            except ConnectionFailed as exc:
                if not exc.reused:
                    raise
                self.close()  # the other idle connections date from the same OPA
                return self._exchange(target, body, reuse=False)
        finally:
            self._slots.release()

    def _receive(self, sock: socket.socket) -> bytes:
        deadlines = self._deadlines
        sock.settimeout(deadlines.patience)
        try:
            return sock.recv(65536)
        except TimeoutError:
            pass
        started = time.monotonic() - deadlines.patience
        while True:
            sock.settimeout(_silent(time.monotonic() - started, deadlines, self._alive))
            try:
                return sock.recv(65536)
            except TimeoutError:
                continue

    def _exchange(self, target: str, body: bytes, reuse: bool) -> tuple[int, bytes]:
        connection = None
        if reuse:
            with self._lock:
                connection = self._idle.pop() if self._idle else None
        reused = connection is not None
        try:
            if connection is None:
                connection = self._open()
            sock, state = connection
            # Sending a large filter question needs OPA to read it: answering, not connecting.
            sock.settimeout(self._deadlines.answer)
            try:
                sock.sendall(_request(state, self._host, target, body))
            except TimeoutError:
                raise NotAnswering("it did not read the question") from None
            response = _Response()
            while not response.done:
                event = state.next_event()
                if event is h11.NEED_DATA:
                    received = self._receive(sock)
                    if not received:
                        raise ConnectionResetError("closed")
                    state.receive_data(received)
                else:
                    response.take(event)
        except (NotAnswering, ConnectionFailed):
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
