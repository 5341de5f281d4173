"""Bringing up the decision point: managed or external OPA, checked before traffic.

The server only starts serving once OPA has produced a well-formed decision for a probe
input, which proves more than OPA's own /health: the bundled (or configured) policies are
loaded and define ``data.mlflow.authz.decision``.

The engine also knows the revision of the policies OPA serves (policy_revision.py), for the
audit trail. Reading it costs too much for every request, so a background thread refreshes
it every ``REVISION_REFRESH_SECONDS``: after a reload, decisions may carry the previous
revision for that long. The same read tells whether OPA's decisions may be reused
(determinism.py): `reusable` is what the decision cache keys on.
"""

from __future__ import annotations

import atexit
import logging
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from mlflow_secure.config import ConfigError, Settings, policy_dir, runtime_root
from mlflow_secure.policy.client import (
    DecisionClient,
    OpaEndpoint,
    PolicyUnavailable,
    parse_opa_url,
)
from mlflow_secure.policy.managed_opa import OpaSupervisor, instance_dir
from mlflow_secure.policy.revision import RevisionReader
from mlflow_secure.policy.toolchain import find_opa

_logger = logging.getLogger(__name__)

# A fixed input every valid policy library must decide (it denies: no subject).
PROBE_INPUT = {
    "subject": None,
    "action": {"endpoint": "mlflow-secure.probe", "access": "read", "method": "GET"},
    "resource": {"type": "server"},
    "request": {"path": "/health"},
}
READY_CACHE_SECONDS = 1.0
# How long a look at the managed OPA's process stands for reused answers: reading its pid
# file and /proc per request was a tenth of the secure layer's own time (py-spy, get-run).
LIVENESS_SECONDS = 0.1
REVISION_REFRESH_SECONDS = 2.0
PROBLEM_LOG_SECONDS = 60.0
POLICY_DIR_SETTING = "MLFLOW_SECURE_POLICY_DIR"


class StartupError(RuntimeError):
    """The server must not start; the message says why and what to do."""


def check_policies(opa_binary: Path, directory: Path, setting: str = POLICY_DIR_SETTING) -> None:
    """Compile the policies once up front: a syntax error is reported with file and line."""
    if not directory.is_dir():
        raise StartupError(f"policy directory {directory} does not exist ({setting})")
    result = subprocess.run(
        [str(opa_binary), "check", "--ignore", "*_test.rego", "--ignore", ".*", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip()
        raise StartupError(f"the policies in {directory} do not compile:\n{detail}")


@dataclass
class PolicyEngine:
    client: DecisionClient
    supervisor: OpaSupervisor | None = None
    # `sha256:<16 hex>` of the policies and data OPA serves; None while it cannot be told.
    revision: str | None = None
    _checked_at: float = field(default=float("-inf"))
    _problem: str | None = field(default="not checked yet")
    _revision_logged_at: float = field(default=float("-inf"))
    # What reused answers are keyed on (decision_cache.py): the revision and how many times
    # this worker has seen it change, when its decisions may be reused (determinism.py);
    # else None.
    reusable: str | None = None
    _changes: int = 0
    reuse_problem: str | None = "not read yet"
    _stop_watching: threading.Event = field(default_factory=threading.Event)
    _reader: RevisionReader | None = None
    _running_until: float = field(default=float("-inf"))

    def _remember(self, problem: str | None) -> str | None:
        self._checked_at, self._problem = time.monotonic(), problem
        return problem

    def _fresh(self) -> bool:
        return time.monotonic() - self._checked_at < READY_CACHE_SECONDS

    def problem_sync(self) -> str | None:
        """None when a decision can be had now, else why not (cached briefly for probes)."""
        if self._fresh():
            return self._problem
        try:
            self.client.decide_sync(PROBE_INPUT)
        except PolicyUnavailable as exc:
            return self._remember(str(exc))
        return self._remember(None)

    async def problem(self) -> str | None:
        if self._fresh():
            return self._problem
        try:
            await self.client.decide(PROBE_INPUT)
        except PolicyUnavailable as exc:
            return self._remember(str(exc))
        return self._remember(None)

    def refresh_revision(self) -> str | None:
        """Read the revision OPA serves now; None (unknown) when it cannot be read.

        Unknown rather than the last value: after a failed read, the last value may no longer
        be what decides, and the audit trail must not name the wrong policies.
        """
        previous = self.revision
        if self._reader is None:
            directory = self.supervisor.policy_dir if self.supervisor else None
            self._reader = RevisionReader(self.client, directory)
        try:
            served = self._reader.read()
        except Exception as exc:  # never the watcher's end: unknown, and said why
            self.reusable = self.revision = None
            now = time.monotonic()
            if now - self._revision_logged_at >= PROBLEM_LOG_SECONDS:
                self._revision_logged_at = now
                problem = exc if isinstance(exc, PolicyUnavailable) else repr(exc)
                _logger.warning("cannot read the policy revision: %s", problem)
            return None
        if served.reuse_problem != self.reuse_problem and served.reuse_problem is not None:
            _logger.info("policy decisions are not reused: %s", served.reuse_problem)
        if served.revision != previous:
            # A new generation: answers stored under the old key in the moments before this
            # refresh saw the change may be the new policy's; after a revert they would be
            # valid again (attacker finding). Every change starts from an empty cache.
            self._changes += 1
        reusable = f"{served.revision}#{self._changes}"
        self.reusable = None if served.reuse_problem else reusable
        self.revision, self.reuse_problem = served.revision, served.reuse_problem
        if previous is not None and self.revision != previous:
            _logger.info("policy revision is now %s (was %s)", self.revision, previous)
        return self.revision

    def still_running(self) -> bool:
        """Whether a reused answer may be given now (decision_cache.py): False when a managed
        OPA's process is not known to run (exited, stopped, killed), looked at no longer
        than LIVENESS_SECONDS ago, so that an outage refuses (503) within 0.1 s, the request
        decided a moment ago too. An external OPA gives no such signal: the watcher's next
        failed read stops reuse (within 2 s)."""
        if self.supervisor is None:
            return True
        now = time.monotonic()
        if now < self._running_until:
            return True
        running = self.supervisor.opa_running() is True
        self._running_until = now + LIVENESS_SECONDS if running else float("-inf")
        return running

    def watch_revision(self, interval: float = REVISION_REFRESH_SECONDS) -> None:
        """Refresh the revision every `interval` seconds in a daemon thread of this worker."""
        thread = threading.Thread(
            target=self._watch, args=(interval,), name="mlflow-secure-revision", daemon=True
        )
        thread.start()
        # Registered after the supervisor's stop, so it runs first: no warning about an OPA
        # that is going away on purpose.
        atexit.register(self.stop_watching)

    def _watch(self, interval: float) -> None:
        while not self._stop_watching.wait(interval):
            self.refresh_revision()

    def stop_watching(self) -> None:
        self._stop_watching.set()

    def wait_until_ready(self, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        while True:
            self._checked_at = float("-inf")
            problem = self.problem_sync()
            if problem is None or time.monotonic() >= deadline:
                return problem
            time.sleep(0.1)


def start_managed_opa(
    settings: Settings, directory: Path, name: str = "opa", setting: str = POLICY_DIR_SETTING
) -> PolicyEngine:
    """Check `directory`'s policies, then start this server's managed OPA `name` serving it.

    Returns at once: the caller waits for readiness. `setting` names the setting that gave
    the directory, for the error message.
    """
    binary = find_opa(settings)
    check_policies(binary, directory, setting)
    try:
        private = instance_dir(runtime_root(settings), f"{name}.sock")
    except PermissionError as exc:
        raise ConfigError(f"MLFLOW_SECURE_RUNTIME_DIR: {exc}") from None
    supervisor = OpaSupervisor(binary, directory, private, name)
    supervisor.start()
    atexit.register(supervisor.stop)
    endpoint = OpaEndpoint(base_url="http://opa", uds=str(supervisor.socket_path))
    # A managed OPA slow to answer is waited for while its process runs (connection.py).
    client = DecisionClient(endpoint, settings.opa_timeout, alive=supervisor.opa_running)
    return PolicyEngine(client, supervisor)


def start_policy_engine(settings: Settings) -> PolicyEngine:
    if settings.opa_url:
        endpoint = parse_opa_url(settings.opa_url)
        engine = PolicyEngine(DecisionClient(endpoint, settings.opa_timeout))
        problem = engine.wait_until_ready(settings.opa_startup_timeout)
        if problem:
            # A sidecar may come up after us: start, and refuse requests with 503 meanwhile.
            _logger.warning("external OPA not ready yet (%s); answering 503 until it is", problem)
        else:
            engine.refresh_revision()
        engine.watch_revision()
        return engine

    directory = policy_dir(settings)
    engine = start_managed_opa(settings, directory)
    supervisor = engine.supervisor
    problem = engine.wait_until_ready(settings.opa_startup_timeout)
    if problem:
        if supervisor is not None:
            supervisor.stop()
        raise StartupError(
            f"the managed OPA did not become ready within {settings.opa_startup_timeout:g}s: "
            f"{problem}"
        )
    engine.refresh_revision()
    engine.watch_revision()
    _logger.info(
        "policy engine ready: managed OPA %s serving %s (revision %s)",
        supervisor.command[0] if supervisor else "",
        directory,
        engine.revision,
    )
    return engine
