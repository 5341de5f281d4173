"""Writing audit events off the request path: a bounded queue and one writer thread per process.

`AuditLog.record` only puts the event on a bounded queue, so a request never waits for (or
fails because of) the audit database. The writer thread appends what it finds in batches — one
transaction per batch, in queue order — and then, if ``MLFLOW_SECURE_AUDIT_LOG_FILE`` is set,
appends the sealed records to that JSON lines file and fsyncs it.

Losing an event is never silent. When the queue is full, the database is down longer than
the queue can absorb, or the database rejects a batch, the loss is counted, logged (at most
every few seconds), and an ``audit.gap`` event stating how many events were lost, why and when
is written as soon as writing works again, so a verifier sees the gap inside the intact chain.

File order equals chain order: every writer on a host takes an exclusive ``flock`` on the file
before it takes the chain head's lock and releases it after the lines are on disk, so no
other process can commit and write in between.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from mlflow_secure.audit import store
from mlflow_secure.audit.events import GAP, AuditEvent, canonical_json, format_time

_logger = logging.getLogger(__name__)

WARN_INTERVAL = 10.0  # seconds between repeated warnings of the same kind


@dataclass(frozen=True)
class AuditStats:
    recorded: int  # events accepted onto the queue
    written: int  # events committed to the database (gap markers included)
    lost: int  # events dropped (queue full, rejected, unwritten at exit)
    queued: int  # events waiting on the queue now
    file_failures: int  # batches that could not be appended to the JSON lines file


@dataclass
class _Gap:
    count: int = 0
    first: str | None = None
    last: str | None = None
    causes: frozenset[str] = frozenset()

    def add(self, count: int, cause: str, first: str, last: str) -> None:
        self.count += count
        self.first = min(self.first or first, first)
        self.last = max(self.last or last, last)
        self.causes = self.causes | {cause}

    def merge(self, other: _Gap) -> None:
        if other.count and other.first and other.last:
            self.count += other.count
            self.first = min(self.first or other.first, other.first)
            self.last = max(self.last or other.last, other.last)
            self.causes = self.causes | other.causes


def _retryable(exc: BaseException) -> bool:
    """Database unreachable or busy: keep the batch and try again."""
    if isinstance(exc, OperationalError | InterfaceError | PoolTimeout):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def _describe(exc: BaseException) -> str:
    """The error's type and the driver's first line: SQLAlchemy's own text repeats the SQL
    parameters, which are audit data and do not belong in the server log."""
    origin = getattr(exc, "orig", None) or exc
    first_line = str(origin).strip().splitlines()[0][:200] if str(origin).strip() else ""
    return f"{type(origin).__name__}: {first_line}" if first_line else type(origin).__name__


class AuditLog:
    """One per worker process: `record` from any thread; `close` (also run at exit) flushes."""

    def __init__(
        self,
        engine: Engine,
        *,
        log_file: str | Path | None = None,
        max_queue: int = 10_000,
        batch_size: int = 500,
        flush_interval: float = 0.2,
        retry_max_delay: float = 5.0,
        linger: float = 0.05,
    ) -> None:
        self.engine = engine
        self.log_file = Path(log_file) if log_file else None
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.retry_max_delay = retry_max_delay
        # After the first event of a batch, wait this long for more: each batch is one
        # transaction (one fsync), and under load one per request would compete with MLflow's
        # own commits for the disk. Events still reach the database within `linger`.
        self.linger = linger
        self.source = f"{socket.gethostname()}:{os.getpid()}"
        self._queue: queue.Queue[AuditEvent] = queue.Queue(maxsize=max_queue)
        self._cond = threading.Condition()
        self._recorded = self._done = self._written = self._lost = self._file_failures = 0
        self._gap = _Gap()
        self._warned: dict[str, float] = {}
        self._fd: int | None = None
        self._closed = False
        self._stopping = threading.Event()
        self._abandon = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mlflow-secure-audit", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    # ------------------------------------------------------------ the caller's side

    def record(self, event: AuditEvent) -> None:
        """Queue `event` for writing; never blocks, never raises."""
        try:
            if self._closed or not isinstance(event, AuditEvent):
                cause = "recorded after close" if self._closed else "not an AuditEvent"
                self._note_loss(1, cause, format_time(), format_time())
                return
            with self._cond:
                self._queue.put_nowait(event)
                self._recorded += 1
        except queue.Full:
            self._note_loss(1, "queue full", event.time, event.time)
        except Exception:  # the request must go on whatever happens here
            _logger.exception("audit: could not queue an event")

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every event recorded so far is written (or lost); False on timeout."""
        with self._cond:
            target = self._recorded
            return self._cond.wait_for(lambda: self._done >= target, timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued (waiting up to `timeout` seconds), then stop the writer."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        self._stopping.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._abandon.set()
            self._thread.join(5.0)
        with self._cond:
            unwritten = self._recorded - self._done
        if unwritten:
            _logger.warning("audit: %d events could not be written before shutdown", unwritten)
        if not self._thread.is_alive():  # else the writer still owns the file and closes it
            self._close_file()

    def stats(self) -> AuditStats:
        with self._cond:
            return AuditStats(
                recorded=self._recorded,
                written=self._written,
                lost=self._lost,
                queued=self._queue.qsize(),
                file_failures=self._file_failures,
            )

    # ------------------------------------------------------------ losses

    def _warn(self, kind: str, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._warned.get(kind, -WARN_INTERVAL) >= WARN_INTERVAL:
            self._warned[kind] = now
            _logger.warning("audit: " + message, *args)

    def _note_loss(self, count: int, cause: str, first: str, last: str) -> None:
        with self._cond:
            self._gap.add(count, cause, first, last)
            self._lost += count
            total = self._lost
        self._warn(cause, "%s: events are being dropped (%d lost so far)", cause, total)

    def _take_gap(self) -> _Gap | None:
        with self._cond:
            gap, self._gap = self._gap, _Gap()
        return gap if gap.count else None

    def _gap_event(self, gap: _Gap) -> AuditEvent:
        reason = (
            f"{gap.count} audit event(s) lost in {self.source} ({', '.join(sorted(gap.causes))})"
            f" between {gap.first} and {gap.last}"
        )
        return AuditEvent(event=GAP, reasons=(reason,), dropped=gap.count)

    # ------------------------------------------------------------ the writer thread

    def _drain(self, block: bool) -> list[AuditEvent]:
        """The next batch: the first event (waited for when `block`), then, after `linger`
        (not when a full batch is queued already), whatever else is queued. The writer sleeps
        through the linger instead of waking for each event: a wake-up per request was a GIL
        hand-off per request (py-spy, under the mixed benchmark), and the batch is the same."""
        events: list[AuditEvent] = []
        try:
            if block:
                events.append(self._queue.get(timeout=self.flush_interval))
            if events and self.linger > 0 and self._queue.qsize() < self.batch_size - 1:
                self._stopping.wait(self.linger)  # a stop cuts the linger short
            while len(events) < self.batch_size:
                events.append(self._queue.get_nowait())
        except queue.Empty:
            pass
        return events

    def _finish(self, queued: int, written: int) -> None:
        with self._cond:
            self._done += queued
            self._written += written
            self._cond.notify_all()

    def _run(self) -> None:
        try:
            self._loop()
        except Exception:  # a bug: say so loudly; record() keeps counting what is dropped
            _logger.exception("audit: the writer thread stopped")
        finally:
            self._close_file()

    def _close_file(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def _loop(self) -> None:
        pending: list[AuditEvent] = []
        queued = 0  # how many of `pending` came from the queue (the rest is a gap marker)
        gap: _Gap | None = None  # the losses the marker in `pending` reports
        delay = min(0.05, self.retry_max_delay)
        while True:
            if not pending:
                gap = self._take_gap()
                events = self._drain(block=gap is None and not self._stopping.is_set())
                pending = ([self._gap_event(gap)] if gap else []) + events
                queued = len(events)
                if not pending:
                    if self._stopping.is_set() and self._queue.empty():
                        return
                    continue
            if self._abandon.is_set():
                self._give_up(pending, queued)
                return
            try:
                self._write(pending)
            except Exception as exc:
                if _retryable(exc):
                    self._warn("down", "the audit database is unavailable (%s)", _describe(exc))
                else:
                    _logger.error("audit: the database rejected a batch (%s)", _describe(exc))
                    self._reject(pending[len(pending) - queued :], gap)
                    pending, queued, gap = [], 0, None
                self._abandon.wait(delay)
                delay = min(delay * 2, self.retry_max_delay)
                continue
            self._finish(queued, len(pending))
            pending, queued, delay = [], 0, min(0.05, self.retry_max_delay)

    def _reject(self, events: list[AuditEvent], gap: _Gap | None) -> None:
        """A batch the database refused will never be written: the next gap marker reports
        its events, and the losses its own marker was reporting."""
        with self._cond:
            if gap is not None:
                self._gap.merge(gap)
            if events:
                first = min(event.time for event in events)
                last = max(event.time for event in events)
                self._gap.add(len(events), "rejected by the database", first, last)
            self._lost += len(events)
            self._done += len(events)
            self._cond.notify_all()

    def _give_up(self, pending: list[AuditEvent], queued: int) -> None:
        remaining = self._drain(block=False)
        while remaining:
            queued += len(remaining)
            remaining = self._drain(block=False)
        with self._cond:
            self._lost += queued
            self._done += queued
            self._cond.notify_all()

    def _write(self, events: list[AuditEvent]) -> None:
        with self._file_lock() as fd:
            records = store.append_events(self.engine, events)  # raises: nothing was written
            if fd is not None:
                try:
                    self._write_lines(fd, records)
                except Exception:  # committed: must not be retried (it would be appended twice)
                    _logger.exception("audit: cannot write the JSON lines file")

    # ------------------------------------------------------------ the JSON lines file

    def _open_file(self) -> int | None:
        """The file descriptor, (re)opened when the file was rotated away; None on failure."""
        assert self.log_file is not None
        try:
            if self._fd is not None:
                try:
                    current = os.stat(self.log_file)
                    opened = os.fstat(self._fd)
                    if (current.st_dev, current.st_ino) == (opened.st_dev, opened.st_ino):
                        return self._fd
                except FileNotFoundError:
                    pass
                os.close(self._fd)
                self._fd = None
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
            self._fd = os.open(self.log_file, flags, 0o600)
            if os.fstat(self._fd).st_mode & 0o077:
                self._warn("mode", "%s is readable by other users; chmod 600 it", self.log_file)
            return self._fd
        except OSError as exc:
            self._note_file_failure("cannot open %s (%s)", self.log_file, exc.strerror)
            return None

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[int | None]:
        fd = self._open_file() if self.log_file else None
        if fd is None:
            yield None
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:
            self._note_file_failure("cannot lock %s (%s)", self.log_file, exc.strerror)
            yield None
            return
        try:
            yield fd
        finally:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)

    def _write_lines(self, fd: int, records: list[dict[str, Any]]) -> None:
        data = "".join(canonical_json(record) + "\n" for record in records).encode("utf-8")
        start = None
        try:
            start = os.lseek(fd, 0, os.SEEK_END)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError as exc:
            if start is not None:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, start)  # no half-written line for the next batch to follow
            self._note_file_failure(
                "cannot append seq %d..%d to %s (%s)",
                records[0]["seq"],
                records[-1]["seq"],
                self.log_file,
                exc.strerror,
            )

    def _note_file_failure(self, message: str, *args: Any) -> None:
        with self._cond:
            self._file_failures += 1
        self._warn("file", message + "; the database copy is complete", *args)


def open_audit_log(uri: str, log_file: str | Path | None = None, **options: Any) -> AuditLog:
    """A worker's audit log on database `uri`, its tables migrated first.

    Migrating takes the identity store's migration lock, so of all workers and replicas
    starting at once exactly one upgrades the schema; call this after `start_identity`
    (which holds the same lock while it runs). `options` are `AuditLog`'s.
    """
    from mlflow_secure.identity.store import migration_lock

    engine = store.open_engine(uri)
    with migration_lock(engine):
        store.migrate(engine)
    return AuditLog(engine, log_file=log_file, **options)
