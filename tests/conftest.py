"""Shared fixtures: the pinned OPA, real databases, and a clean environment per test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlflow_secure.config import Settings, load_settings
from mlflow_secure.policy.toolchain import OpaToolchainError, find_opa

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def opa_binary() -> Path:
    """The OPA the suite runs; `make test` builds it, a bare pytest names the fix."""
    try:
        binary = find_opa(load_settings())
    except OpaToolchainError as exc:
        pytest.fail(f"the test suite needs OPA: {exc}")
    return binary


@pytest.fixture(autouse=True)
def _clean_secure_env(monkeypatch: pytest.MonkeyPatch, opa_binary: Path) -> None:
    """No MLFLOW_SECURE_* from the developer's shell leaks into a test, except the OPA path."""
    for name in list(os.environ):
        if name.startswith("MLFLOW_SECURE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("MLFLOW_SECURE_OPA_BINARY", str(opa_binary))


# MLflow's tracking and registry URIs as the developer's shell set them (normally unset).
_SESSION_URIS = {
    name: os.environ.get(name) for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
}


@pytest.fixture(autouse=True)
def _mlflow_uris_reset(monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow's in-process handlers make their store the process's tracking URI (a module
    global and MLFLOW_TRACKING_URI, `handlers._get_tracking_store`), also from module-scoped
    fixtures: every test starts from the session's URIs, so a test that ran MLflow's app
    in-process cannot send a later test's stock client to a SQL store instead of its server."""
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    for name, value in _SESSION_URIS.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    monkeypatch.setattr(tracking_utils, "_tracking_uri", None)
    monkeypatch.setattr(registry_utils, "_registry_uri", None)


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from tests.support.postgres import ensure_postgres_installed, start_postgres

    ensure_postgres_installed()
    server = start_postgres(tmp_path_factory.mktemp("postgres"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def identity_sessions(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[object]:
    """A migrated identity store (its key tables included) on SQLite, then PostgreSQL."""
    from mlflow_secure.identity import store

    if request.param == "sqlite":
        uri = f"sqlite:///{tmp_path / 'id.db'}"
    else:
        server = request.getfixturevalue("postgres_server")
        uri = server.make_database(f"id_{abs(hash(request.node.name)) % 10**8}")
    engine = store.open_engine(uri)
    with store.migration_lock(engine):
        store.migrate(engine)
    yield store.session_factory(engine)
    engine.dispose()


@pytest.fixture
def settings() -> Settings:
    return load_settings()
