"""Shadow mode: a candidate policy directory decides every request again, beside the active one.

Only the active decision is enforced. The candidate (``MLFLOW_SECURE_SHADOW_POLICY_DIR``,
served by a second managed OPA, elected and watched like the first) is asked the same policy
input afterwards, off the request path; when its ``allow`` or its reasons differ, one warning
line on the ``mlflow_secure.policy.shadow`` logger carries both decisions. So a policy change can be
tried on real traffic before it is made active.

Off the request path: under ASGI a comparison is an asyncio task on the worker's event loop;
under WSGI a few threads take them from a bounded queue. At most ``MAX_PENDING`` comparisons
wait per worker; past that they are dropped and counted, so a slow candidate can neither slow
requests down nor grow memory. The candidate failing (down, slow, undefined decision) never
touches the request; it is logged at most once a minute.

Nothing secret is logged: the line names the subject, endpoint and resource by id and carries
the two decisions and revisions; never the credential, the request body, or the resource's
tags and URIs (which the policy input does hold). Text is bounded and scrubbed like an audit
event's.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow_secure.audit.events import MAX_REASON, MAX_REASONS, MAX_TEXT, redact
from mlflow_secure.config import Settings
from mlflow_secure.policy.client import Decision
from mlflow_secure.policy.engine import PolicyEngine, StartupError, start_managed_opa

_logger = logging.getLogger(__name__)  # mlflow_secure.policy.shadow

SETTING = "MLFLOW_SECURE_SHADOW_POLICY_DIR"
MAX_PENDING = 256
WSGI_THREADS = 2
PROBLEM_LOG_SECONDS = 60.0


@dataclass(frozen=True)
class _Comparison:
    policy_input: dict[str, Any]
    active: Decision
    decision_id: str | None
    revision: str | None


@dataclass
class ShadowStats:
    """Counters of one worker (read them in tests, or from a debugger)."""

    agreed: int = 0
    disagreed: int = 0
    failed: int = 0  # the candidate gave no decision
    dropped: int = 0  # too many comparisons waiting


def _text(value: object, limit: int = MAX_TEXT) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    return redact(str(value))[:limit]


def _reasons(decision: Decision) -> list[str]:
    return [redact(reason)[:MAX_REASON] for reason in decision.reasons[:MAX_REASONS]]


def _section(policy_input: dict[str, Any], key: str) -> dict[str, Any]:
    value = policy_input.get(key)
    return value if isinstance(value, dict) else {}


def disagreement(
    comparison: _Comparison, candidate: Decision, candidate_revision: str | None
) -> dict[str, Any] | None:
    """The record to log when the two decisions differ (None when they agree)."""
    active = comparison.active
    if active.allow != candidate.allow:
        differs = "allow"
    elif set(active.reasons) != set(candidate.reasons):
        differs = "reasons"
    else:
        return None
    subject = _section(comparison.policy_input, "subject")
    action = _section(comparison.policy_input, "action")
    resource = _section(comparison.policy_input, "resource")
    return {
        "decision_id": _text(comparison.decision_id),
        "differs": differs,
        "endpoint": _text(action.get("endpoint")),
        "access": _text(action.get("access")),
        "subject": _text(subject.get("id")),
        "resource_type": _text(resource.get("type")),
        "resource_id": _text(resource.get("id")),
        "active": {
            "allow": active.allow,
            "reasons": _reasons(active),
            "revision": comparison.revision,
        },
        "candidate": {
            "allow": candidate.allow,
            "reasons": _reasons(candidate),
            "revision": candidate_revision,
        },
    }


class ShadowEvaluator:
    """Compares the active decisions of one worker with a candidate policy engine's."""

    def __init__(self, engine: PolicyEngine, max_pending: int = MAX_PENDING) -> None:
        self.engine = engine
        self.stats = ShadowStats()
        self.max_pending = max_pending
        self._lock = threading.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._queue: queue.Queue[_Comparison | None] = queue.Queue(maxsize=max_pending)
        self._threads: list[threading.Thread] = []
        self._logged_at: dict[str, float] = {}

    # ------------------------------------------------------------ the request path

    def compare(
        self,
        policy_input: dict[str, Any],
        active: Decision,
        decision_id: str | None,
        revision: str | None = None,
    ) -> None:
        """Schedule the candidate's decision on `policy_input`; returns at once, never raises.

        `active` is the decision that was enforced, `revision` the active policies' revision.
        The input must not be changed afterwards (the front door never does).
        """
        comparison = _Comparison(policy_input, active, decision_id, revision)
        try:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self._enqueue(comparison)
            else:
                self._schedule(loop, comparison)
        except Exception as exc:  # shadow mode must never fail a request
            self._count("failed")
            self._problem("error", "shadow comparison not scheduled: %s", exc)

    def _schedule(self, loop: asyncio.AbstractEventLoop, comparison: _Comparison) -> None:
        if len(self._tasks) >= self.max_pending:
            self._dropped()
            return
        task = loop.create_task(self._compare_async(comparison))
        self._tasks.add(task)  # a reference, or the task may be collected before it runs
        task.add_done_callback(self._tasks.discard)

    def _enqueue(self, comparison: _Comparison) -> None:
        self._start_threads()
        try:
            self._queue.put_nowait(comparison)
        except queue.Full:
            self._dropped()

    # ------------------------------------------------------------ off the request path

    async def _compare_async(self, comparison: _Comparison) -> None:
        try:
            candidate = await self.engine.client.decide(comparison.policy_input)
        except Exception as exc:  # PolicyUnavailable, or a broken connection
            self._failed(exc)
            return
        self._judge(comparison, candidate)

    def _compare_sync(self, comparison: _Comparison) -> None:
        try:
            candidate = self.engine.client.decide_sync(comparison.policy_input)
        except Exception as exc:  # PolicyUnavailable, or a broken connection
            self._failed(exc)
            return
        self._judge(comparison, candidate)

    def _start_threads(self) -> None:
        if self._threads:
            return
        with self._lock:
            if self._threads:
                return
            for number in range(WSGI_THREADS):
                thread = threading.Thread(
                    target=self._work, name=f"mlflow-secure-shadow-{number}", daemon=True
                )
                thread.start()
                self._threads.append(thread)

    def _work(self) -> None:
        while (comparison := self._queue.get()) is not None:
            self._compare_sync(comparison)

    def stop(self) -> None:
        """Let the WSGI threads finish what is queued and end (tests; workers just exit)."""
        with self._lock:
            threads, self._threads = self._threads, []
        for _ in threads:
            self._queue.put(None)
        for thread in threads:
            thread.join(timeout=5)

    def _judge(self, comparison: _Comparison, candidate: Decision) -> None:
        record = disagreement(comparison, candidate, self.engine.revision)
        if record is None:
            self._count("agreed")
            return
        self._count("disagreed")
        _logger.warning("shadow policy disagrees: %s", json.dumps(record, ensure_ascii=False))

    # ------------------------------------------------------------ counting and logging

    def _count(self, name: str) -> int:
        with self._lock:
            value = getattr(self.stats, name) + 1
            setattr(self.stats, name, value)
        return value

    def _failed(self, exc: Exception) -> None:
        failed = self._count("failed")
        self._problem(
            "failed",
            "shadow policy engine gave no decision (%s); the active policy is unaffected "
            "(%d comparisons without a candidate decision so far)",
            exc,
            failed,
        )

    def _dropped(self) -> None:
        dropped = self._count("dropped")
        self._problem(
            "dropped",
            "shadow comparisons are falling behind; %d dropped so far in this worker",
            dropped,
        )

    def _problem(self, kind: str, message: str, *args: object) -> None:
        """Log `message` at most once a minute per kind: a dead candidate is not news twice."""
        now = time.monotonic()
        with self._lock:
            if now - self._logged_at.get(kind, float("-inf")) < PROBLEM_LOG_SECONDS:
                return
            self._logged_at[kind] = now
        _logger.warning(message, *args)


def start_shadow(settings: Settings) -> ShadowEvaluator | None:
    """The shadow evaluator of this worker, or None when shadow mode is off.

    Candidate policies that do not compile stop start-up, like active ones: a typo should be
    found now, not as a silent stream of failed comparisons. A candidate OPA that does not
    become ready only earns a warning: it decides nothing that is enforced.
    """
    if not settings.shadow_policy_dir:
        return None
    directory = Path(settings.shadow_policy_dir)
    try:
        engine = start_managed_opa(settings, directory, name="shadow", setting=SETTING)
    except StartupError as exc:
        raise StartupError(f"shadow mode: {exc}") from None
    problem = engine.wait_until_ready(settings.opa_startup_timeout)
    if problem:
        _logger.warning("shadow policy engine not ready yet (%s); comparing once it is", problem)
    else:
        engine.refresh_revision()
    engine.watch_revision()
    _logger.info(
        "shadow mode: comparing decisions with %s (revision %s)", directory, engine.revision
    )
    return ShadowEvaluator(engine)
