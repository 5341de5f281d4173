"""Bringing up the decision point: managed or external OPA, checked before traffic.

The server only starts serving once OPA has produced a well-formed decision for a probe
input, which proves more than OPA's own /health: the bundled (or configured) policies are
loaded and define ``data.mlflow.authz.decision``.
"""

from __future__ import annotations

import atexit
import logging
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from mlflow_secure.config import ConfigError, Settings, policy_dir, runtime_root
from mlflow_secure.decision_client import (
    DecisionClient,
    OpaEndpoint,
    PolicyUnavailable,
    parse_opa_url,
)
from mlflow_secure.managed_opa import SOCKET_NAME, OpaSupervisor, instance_dir
from mlflow_secure.opa_toolchain import find_opa

_logger = logging.getLogger(__name__)

# A fixed input every valid policy library must decide (it denies: no subject).
PROBE_INPUT = {
    "subject": None,
    "action": {"endpoint": "mlflow-secure.probe", "access": "read", "method": "GET"},
    "resource": {"type": "server"},
    "request": {"path": "/health"},
}
READY_CACHE_SECONDS = 1.0


class StartupError(RuntimeError):
    """The server must not start; the message says why and what to do."""


def check_policies(opa_binary: Path, directory: Path) -> None:
    """Compile the policies once up front: a syntax error is reported with file and line."""
    if not directory.is_dir():
        raise StartupError(
            f"policy directory {directory} does not exist (MLFLOW_SECURE_POLICY_DIR)"
        )
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
    _checked_at: float = field(default=float("-inf"))
    _problem: str | None = field(default="not checked yet")

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

    def wait_until_ready(self, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        while True:
            self._checked_at = float("-inf")
            problem = self.problem_sync()
            if problem is None or time.monotonic() >= deadline:
                return problem
            time.sleep(0.1)


def start_policy_engine(settings: Settings) -> PolicyEngine:
    if settings.opa_url:
        endpoint = parse_opa_url(settings.opa_url)
        engine = PolicyEngine(DecisionClient(endpoint, settings.opa_timeout))
        problem = engine.wait_until_ready(settings.opa_startup_timeout)
        if problem:
            # A sidecar may come up after us: start, and refuse requests with 503 meanwhile.
            _logger.warning("external OPA not ready yet (%s); answering 503 until it is", problem)
        return engine

    binary = find_opa(settings)
    directory = policy_dir(settings)
    check_policies(binary, directory)
    try:
        private = instance_dir(runtime_root(settings))
    except PermissionError as exc:
        raise ConfigError(f"MLFLOW_SECURE_RUNTIME_DIR: {exc}") from None
    supervisor = OpaSupervisor(binary, directory, private)
    supervisor.start()
    atexit.register(supervisor.stop)
    endpoint = OpaEndpoint(base_url="http://opa", uds=str(private / SOCKET_NAME))
    engine = PolicyEngine(DecisionClient(endpoint, settings.opa_timeout), supervisor)
    problem = engine.wait_until_ready(settings.opa_startup_timeout)
    if problem:
        supervisor.stop()
        raise StartupError(
            f"the managed OPA did not become ready within {settings.opa_startup_timeout:g}s: "
            f"{problem}"
        )
    _logger.info("policy engine ready: managed OPA %s serving %s", binary, directory)
    return engine
