"""Slowing down guessing: failed authentications counted per client and per account.

Counters live in the identity database so that all workers and replicas share them. The hot
path never touches the database: blocks are kept in memory, and a background refresh (see
Authenticator) copies blocks set by other workers into it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from mlflow_secure.identity.models import AuthFailure


class Throttle:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        max_failures: int = 10,
        window_seconds: float = 300.0,
        block_seconds: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._sessions = sessions
        self.max_failures = max_failures
        self.window = window_seconds
        self.block = block_seconds
        self._clock = clock
        self._blocked: dict[str, float] = {}
        self._lock = threading.Lock()

    def retry_after(self, keys: Iterable[str]) -> int | None:
        """Seconds the caller must wait, if any of `keys` is blocked (memory only)."""
        now = self._clock()
        remaining = [self._blocked.get(key, 0.0) - now for key in keys]
        longest = max(remaining, default=0.0)
        return int(longest) + 1 if longest > 0 else None

    def record_failure(self, keys: Iterable[str]) -> None:
        now = self._clock()
        for key in keys:
            until = self._count(key, now)
            if until > now:
                with self._lock:
                    self._blocked[key] = max(self._blocked.get(key, 0.0), until)

    def _count(self, key: str, now: float) -> float:
        for _attempt in range(3):
            try:
                with self._sessions.begin() as session:
                    row = session.get(AuthFailure, key, with_for_update=True)
                    if row is None:
                        row = AuthFailure(key=key, window_start=now, count=0, blocked_until=0.0)
                        session.add(row)
                    if now - row.window_start > self.window:
                        row.window_start, row.count = now, 0
                    row.count += 1
                    if row.count >= self.max_failures:
                        row.blocked_until = now + self.block
                        row.window_start, row.count = now, 0
                    return row.blocked_until
            except IntegrityError:  # another worker inserted the same key first
                continue
        return 0.0

    def refresh(self, session: Session) -> None:
        """Adopt blocks recorded by other workers (called by the background poller)."""
        now = self._clock()
        rows = session.execute(
            select(AuthFailure.key, AuthFailure.blocked_until).where(
                AuthFailure.blocked_until > now
            )
        ).all()
        with self._lock:
            self._blocked = {k: v for k, v in self._blocked.items() if v > now}
            for key, until in rows:
                self._blocked[key] = max(self._blocked.get(key, 0.0), until)


def client_key(client_ip: str) -> str:
    return f"ip:{client_ip}"


def account_key(name: str) -> str:
    return f"account:{name[:128]}"
