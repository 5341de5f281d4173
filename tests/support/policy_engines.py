"""Fixtures for tests of the policy engine against a real managed OPA: a private copy of the
bundled policies, and an engine serving it (not yet refreshed)."""

import shutil
import tempfile
from pathlib import Path

import pytest

from mlflow_secure.config import Settings, bundled_policy_dir
from mlflow_secure.policy.engine import start_managed_opa


@pytest.fixture
def policies(tmp_path):
    directory = tmp_path / "policies"
    shutil.copytree(bundled_policy_dir(), directory)
    return directory


@pytest.fixture
def engine(policies):
    # pytest's temporary paths can be too long for a unix socket.
    runtime = Path(tempfile.mkdtemp(prefix="mls-opa-", dir="/tmp"))
    engine = start_managed_opa(Settings(runtime_dir=str(runtime), opa_timeout=2.0), policies)
    try:
        assert engine.wait_until_ready(20) is None
        yield engine
    finally:
        engine.stop_watching()
        engine.supervisor.stop()
        shutil.rmtree(runtime, ignore_errors=True)
