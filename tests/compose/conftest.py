"""pytest-docker wiring for the Compose stack in compose/docker-compose.yml.

These tests need a Docker engine with the Compose v2 plugin. Where none answers (most developer
sandboxes, CI runners without Docker) every test in this directory is *skipped* with the reason,
at collection time: skip marks are evaluated before fixtures, so pytest-docker never runs
``docker compose`` and nothing errors.
"""

from __future__ import annotations

import functools
import os
import secrets
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
COMPOSE_FILE = REPO_ROOT / "compose" / "docker-compose.yml"
PROBE_TIMEOUT_S = 10
#: Building the image (pip install of MLflow) dominates; pytest-timeout counts fixture set-up.
STACK_TIMEOUT_S = 1800


def _first_line(text: str | bytes | None) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()
    return "no output"


def _probe(command: list[str]) -> str | None:
    """Run ``command``; None if it succeeded, else a one-line description of the failure."""
    try:
        result = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=PROBE_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"no answer within {PROBE_TIMEOUT_S}s"
    except OSError as exc:
        return str(exc)
    if result.returncode != 0:
        return _first_line(result.stderr or result.stdout)
    return None


@functools.cache
def docker_unavailable_reason() -> str | None:
    """Why the Compose tests cannot run here, or None if a Docker engine and Compose answer."""
    if shutil.which("docker") is None:
        return "no Docker engine answers (docker: client not installed)"
    problem = _probe(["docker", "info", "--format", "{{.ServerVersion}}"])
    if problem is not None:
        return f"no Docker engine answers (docker info: {problem})"
    problem = _probe(["docker", "compose", "version"])
    if problem is not None:
        return f"Docker Compose v2 plugin missing (docker compose version: {problem})"
    return None


def _in_this_directory(item: pytest.Item) -> bool:
    return HERE in Path(item.path).resolve().parents


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # This hook sees the whole session's items, not just ours; only probe Docker (which can
    # take PROBE_TIMEOUT_S) when a test from this directory was actually selected.
    ours = [item for item in items if _in_this_directory(item)]
    if not ours:
        return
    reason = docker_unavailable_reason()
    if reason is not None:
        skip = pytest.mark.skip(reason=reason)
        for item in ours:
            item.add_marker(skip)
        return
    if config.pluginmanager.hasplugin("timeout"):
        for item in ours:
            item.add_marker(pytest.mark.timeout(STACK_TIMEOUT_S))


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def compose_environment() -> Iterator[dict[str, str]]:
    """Variables the Compose file interpolates, exported for every ``docker compose`` call.

    pytest-docker runs ``docker compose`` with this process's environment, for ``up`` and for
    the ``down -v`` at teardown, so they stay set for the whole session. A fresh database
    password per run, and a free host port so concurrent sessions do not collide.
    """
    values = {
        "POSTGRES_PASSWORD": secrets.token_urlsafe(24),
        "MLFLOW_SECURE_HTTP_PORT": str(_free_loopback_port()),
    }
    with pytest.MonkeyPatch.context() as patch:
        for key, value in values.items():
            patch.setenv(key, os.environ.get(key, value))
        yield {key: os.environ[key] for key in values}


@pytest.fixture(scope="session")
def docker_compose_file(compose_environment: dict[str, str]) -> str:
    return str(COMPOSE_FILE)


@pytest.fixture(scope="session")
def docker_compose_project_name() -> str:
    # Unique per session so parallel runs get separate containers, networks and volumes.
    return f"mlflow-secure-test-{os.getpid()}"
