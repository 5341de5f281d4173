"""MLflow's own REST tests (mlflow_tests/, copied verbatim) against a real server.

Off unless MLS_UPSTREAM_TARGET is `stock` or `secure` (tests/upstream/run.py sets it): without
it nothing under mlflow_tests/ is collected, so the normal `make test` run never sees them.

- `stock`:  `mlflow server`, SQLite, `--artifacts-destination`, one worker.
- `secure`: `mlflow server --app-name secure`, the same otherwise, used by `upstream-maintainer`,
  an ordinary user (no global role) who is `maintainer` of the project `upstream`, with a
  read/write API key, sent by MLflow's client through MLFLOW_TRACKING_TOKEN (or, with
  MLS_UPSTREAM_CLIENT=plugin, through MLFLOW_TRACKING_AUTH=secure and MLFLOW_SECURE_API_KEY).

How MLflow's tests are made to use those servers, without editing them:

- their `from tests.<module> import ...` lines reach the copies here (module aliases);
- `ServerThread` (their in-process server) hands out the harness's server with a fresh
  tracking database; `_init_server` and test_mlflow_artifacts' `_launch_server` start a real
  server of the same kind with the arguments the test asked for (see harness.py);
- requests the tests send with `requests` themselves, without credentials, to a harness
  server carry the user's key, as the user's own scripts would;
- the few fixtures of MLflow's tests/conftest.py these files rely on are stood in for below
  (adapted from MLflow's tests/conftest.py, Apache-2.0; see mlflow_tests/README.md).

MLS_UPSTREAM_REPORT names a JSON file to write the outcome of every test into (with, for
secure, the audit events of the user's refused requests), which run.py compares.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import inspect
import json
import os
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path
from unittest import mock
from urllib.parse import urlsplit

import pytest

TARGET = os.environ.get("MLS_UPSTREAM_TARGET", "")
CLIENT = os.environ.get("MLS_UPSTREAM_CLIENT", "token")
REPORT = os.environ.get("MLS_UPSTREAM_REPORT", "")
ACTIVE = TARGET in ("stock", "secure")
HERE = Path(__file__).resolve().parent

if not ACTIVE:
    collect_ignore = ["mlflow_tests"]

# MLflow's test modules import `tests.<x>`; here those live in `tests.upstream.mlflow_tests.<x>`.
ALIASES = {
    "tests.helper_functions": "tests.upstream.mlflow_tests.helper_functions",
    "tests.integration": "tests.upstream.mlflow_tests.integration",
    "tests.integration.utils": "tests.upstream.mlflow_tests.integration.utils",
    "tests.tracking": "tests.upstream.mlflow_tests.tracking",
    "tests.tracking.integration_test_utils": (
        "tests.upstream.mlflow_tests.tracking.integration_test_utils"
    ),
}

_harness = None  # the session's harness.Harness
_results: dict[str, dict] = {}
_windows: dict[str, list[str]] = {}


def harness():
    global _harness
    if _harness is None:
        from tests.upstream.harness import Harness

        _harness = Harness(TARGET, CLIENT)
    return _harness


# --- test servers: what MLflow's helpers become ------------------------------------------


class ServerThread:
    """Stand-in for MLflow's in-process test server (integration_test_utils.ServerThread):
    the session's real server, its tracking database reset to a new server's."""

    def __init__(self, app=None, port=None):
        self.app = app
        self.port = port
        self.url = None

    def __enter__(self) -> str:
        self.url = harness().main_url()
        return self.url

    def __exit__(self, *exc) -> None:
        pass

    def start(self) -> None:
        self.__enter__()

    def shutdown(self) -> None:
        self.__exit__(None, None, None)


@contextlib.contextmanager
def _init_server(backend_uri, root_artifact_uri, extra_env=None, app=None, server_type=None):
    """Stand-in for integration_test_utils._init_server: a second real server of the same kind
    with the environment the test asks for, on the main server's tracking database (MLflow's
    tests pass the first server as its backend; `app` and `server_type` are not used)."""
    h = harness()
    h.main_server()
    server = h.start(
        f"extra-{len(h.running)}",
        backend_uri=f"sqlite:///{h.main_db}",
        artifacts_destination=str(h.root / "main" / "artifacts"),
        extra_env=extra_env,
    )
    try:
        yield server.url
    finally:
        h.stop(server)


@contextlib.contextmanager
def _launch_server(host, port, backend_store_uri, default_artifact_root, artifacts_destination):
    """Stand-in for test_mlflow_artifacts._launch_server: the same server options, on a real
    server of the harness's kind (without the gunicorn options, which need gunicorn)."""
    h = harness()
    server = h.start(
        f"artifacts-{port}",
        backend_uri=backend_store_uri,
        artifacts_destination=artifacts_destination,
        default_artifact_root=default_artifact_root,
        port=port,
    )
    try:
        yield server.process
    finally:
        h.stop(server)


def _install_aliases() -> None:
    import tests

    for alias, real in ALIASES.items():
        module = importlib.import_module(real)
        sys.modules[alias] = module
        parent, _, child = alias.rpartition(".")
        setattr(sys.modules.get(parent, tests), child, module)
    utils = sys.modules["tests.tracking.integration_test_utils"]
    utils.ServerThread = ServerThread
    utils._init_server = _init_server


def _is_harness_url(url: str) -> bool:
    if _harness is None:
        return False
    parts = urlsplit(str(url))
    if parts.hostname not in ("127.0.0.1", "localhost"):
        return False
    return any(urlsplit(u).port == parts.port for u in _harness.urls())


def _install_request_credentials() -> None:
    """Requests a test sends itself with `requests` carry the user's key, like MLflow's client."""
    import requests

    original = requests.Session.request

    def request(self, method, url, *args, **kwargs):
        key = _harness.key if _harness is not None else None
        if key and not args and kwargs.get("auth") is None and _is_harness_url(url):
            headers = dict(kwargs.get("headers") or {})
            given = {name.lower() for name in [*headers, *self.headers]}
            if "authorization" not in given:
                headers["Authorization"] = f"Bearer {key}"
                kwargs["headers"] = headers
        return original(self, method, url, *args, **kwargs)

    requests.Session.request = request


if ACTIVE:
    _install_aliases()
    _install_request_credentials()


def pytest_configure(config):
    for marker in (
        "allow_infer_pip_requirements_fallback: MLflow test marker",
        "notrackingurimock: MLflow test marker",
        "asyncio: run the coroutine test with asyncio.run (the harness, not pytest-asyncio)",
    ):
        config.addinivalue_line("markers", marker)


# Tests the harness cannot point at the server under test: skipped on both sides, with why.
NOT_RUN = {
    "test_create_model_version_with_validation_regex": (
        "starts its own stock `mlflow server` subprocess (never the server under test); its "
        "10-second start-up wait fails on a busy machine"
    ),
    "test_get_secrets_config_with_default_passphrase": (
        "needs a server started without MLFLOW_CRYPTO_KEK_PASSPHRASE; the harness server has one"
    ),
    "test_mlflow_artifacts_example": "runs MLflow's examples/ directory, which is not copied",
}


def pytest_collection_modifyitems(session, config, items):
    if not ACTIVE:
        return
    for item in items:
        reason = NOT_RUN.get(getattr(item, "originalname", item.name))
        if reason:
            item.add_marker(pytest.mark.skip(reason=f"not run by the harness: {reason}"))
        module = getattr(item, "module", None)
        if module is None:
            continue
        if module.__name__.endswith("test_mlflow_artifacts"):
            module._launch_server = _launch_server
        if getattr(module, "SqlAlchemyStore", None) is not None:
            module.SqlAlchemyStore = _seeded_store_class()
        initialize = getattr(module, "initialize_backend_stores", None)
        if initialize is not None and not hasattr(initialize, "keeps_tracking_uri"):
            module.initialize_backend_stores = _keeping_tracking_uri(initialize)


def _keeping_tracking_uri(initialize):
    """MLflow's fixtures initialise the stores of their in-process server, which also makes
    the server's database the process's tracking URI (handlers._get_tracking_store); with a
    real server that would send the fluent API and the CLI to the database behind its back.
    The tracking URI is put back to what it was (the server, see `tracking_uri_mock`)."""

    @functools.wraps(initialize)
    def initialize_backend_stores(*args, **kwargs):
        from mlflow.tracking._tracking_service import utils

        before = utils._tracking_uri
        try:
            return initialize(*args, **kwargs)
        finally:
            utils.set_tracking_uri(before)

    initialize_backend_stores.keeps_tracking_uri = True
    return initialize_backend_stores


_seeded = None


def _seeded_store_class():
    """MLflow's SqlAlchemyStore, except that a new SQLite file starts as a copy of a migrated
    database (what MLflow's `cached_db` fixture is for) instead of running every migration
    again: some fixtures make one per test for their in-process server, which is not used here."""
    global _seeded
    if _seeded is None:
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        class SeededSqlAlchemyStore(SqlAlchemyStore):
            def __init__(self, db_uri, *args, **kwargs):
                path = (
                    Path(db_uri.removeprefix("sqlite:///"))
                    if db_uri.startswith("sqlite:///")
                    else None
                )
                template = _harness.pristine if _harness is not None else None
                if path is not None and template is not None and not path.exists():
                    path.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(template, path)
                super().__init__(db_uri, *args, **kwargs)

        _seeded = SeededSqlAlchemyStore
    return _seeded


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    """`@pytest.mark.asyncio` coroutine tests, without adding pytest-asyncio to the venv."""
    if not ACTIVE or not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    names = pyfuncitem._fixtureinfo.argnames
    kwargs = {name: pyfuncitem.funcargs[name] for name in names}
    asyncio.run(pyfuncitem.obj(**kwargs))
    return True


# --- the session -------------------------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def _upstream_session():
    yield
    if _harness is None:
        return
    try:
        events = _harness.audit_events() if TARGET == "secure" else []
    finally:
        _harness.stop_all()
    if REPORT:
        _write_report(events)
    if not os.environ.get("MLS_UPSTREAM_KEEP"):
        _harness.remove_files()
    else:
        print(f"\nupstream harness files kept in {_harness.root}")


@pytest.fixture(autouse=True)
def _upstream_credentials(request, monkeypatch):
    """The user's key in the environment for every test (the repository's own conftest removes
    MLFLOW_SECURE_* variables before each test; this runs after it)."""
    with contextlib.suppress(pytest.FixtureLookupError):
        request.getfixturevalue("_clean_secure_env")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    # No retries: a refusal or a 5xx is seen as the test first sees it, fast.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    from tests.upstream.harness import OFFLINE_ENV

    for name, value in OFFLINE_ENV.items():
        monkeypatch.setenv(name, value)
    if _harness is not None:
        _harness.apply_client_env()
    return


def pytest_runtest_logstart(nodeid, location):
    if ACTIVE:
        _windows[nodeid] = [_now(), _now()]


def pytest_runtest_logfinish(nodeid, location):
    if ACTIVE and nodeid in _windows:
        _windows[nodeid][1] = _now()


def pytest_runtest_logreport(report):
    if not ACTIVE:
        return
    entry = _results.setdefault(report.nodeid, {"outcome": "passed", "error": "", "when": ""})
    if hasattr(report, "wasxfail"):
        entry["outcome"] = "xfailed" if report.skipped else "xpassed"
        return
    if report.skipped and report.when in ("setup", "call"):
        entry["outcome"] = "skipped"
        entry["error"] = _first_line(report)
    elif report.failed and entry["outcome"] != "failed":
        entry["outcome"] = "failed"
        entry["when"] = report.when
        entry["error"] = _first_line(report)


def _first_line(report) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None and crash.message:
        text = crash.message
    elif isinstance(report.longrepr, tuple):  # skips: (path, line, reason)
        text = str(report.longrepr[2])
    else:
        text = str(report.longrepr or "")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0][:500] if lines else ""


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _write_report(events: list[dict]) -> None:
    refused = [
        {
            key: event.get(key)
            for key in (
                "time",
                "status",
                "decision",
                "method",
                "path",
                "endpoint",
                "resource_type",
                "resource_id",
                "reasons",
            )
        }
        for event in events
        if (event.get("status") or 0) >= 400
    ]
    logs_dir = Path(REPORT).with_suffix(".logs")
    logs_dir.mkdir(parents=True, exist_ok=True)
    for log in _harness.logs():
        shutil.copy(log, logs_dir / f"{log.parent.name}-{log.name}")
    for nodeid, window in _windows.items():
        entry = _results.setdefault(nodeid, {"outcome": "unknown", "error": "", "when": ""})
        entry["window"] = window
        entry["refusals"] = [e for e in refused if window[0] <= (e["time"] or "") <= window[1]]
    Path(REPORT).write_text(
        json.dumps(
            {
                "target": TARGET,
                "client": CLIENT,
                "results": _results,
                "audited_refusals": len(refused),
                "logs": str(logs_dir),
            },
            indent=1,
        )
    )


# --- stand-ins for the fixtures of MLflow's tests/conftest.py these files use ------------


@pytest.fixture
def db_uri():
    """MLflow's `db_uri`: a fresh SQLite database per test, the one its in-process test server
    serves. Here: the harness server's own tracking database, made fresh (fixtures initialise
    MLflow's in-process stores on it, as upstream; the server is the real one)."""
    h = harness()
    uri = h.fresh_main()
    yield uri
    h.release()


@pytest.fixture(autouse=True)
def tracking_uri_mock(db_uri, request):
    """MLflow's `tracking_uri_mock` makes `db_uri` (the database behind its in-process server)
    the default tracking URI, so the fluent API and the CLI write to that database directly.
    Here the default tracking URI is the server itself: nothing a test does reaches the
    database behind the server's back, as for a real user (for stock the outcome is the
    same: its server reads and writes that database)."""
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    if "notrackingurimock" not in request.keywords:
        with _use_tracking_uri(harness().main_url()):
            yield db_uri
    else:
        yield None


@pytest.fixture(scope="session", autouse=True)
def enable_mlflow_testing():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("_MLFLOW_TESTING", "TRUE")
        yield


@pytest.fixture(autouse=True)
def disable_workspace_mode_by_default(monkeypatch):
    for name in ("MLFLOW_ENABLE_WORKSPACES", "MLFLOW_WORKSPACE", "MLFLOW_WORKSPACE_STORE_URI"):
        monkeypatch.delenv(name, raising=False)
    from mlflow.utils import workspace_context, workspace_utils

    workspace_context.clear_server_request_workspace()
    workspace_utils.set_workspace_store_uri(None)
    yield
    workspace_context.clear_server_request_workspace()
    workspace_utils.set_workspace_store_uri(None)


@pytest.fixture(autouse=True)
def disable_async_trace_logging(monkeypatch):
    # tests/tracking/conftest.py (copied) turns it on again for these files, as upstream.
    monkeypatch.setenv("MLFLOW_ENABLE_ASYNC_TRACE_LOGGING", "false")


@pytest.fixture(autouse=True)
def reset_mlflow_state():
    """MLflow's reset_active_experiment_id, reset_mlflow_uri, reset_tracing,
    clean_up_last_logged_model_id, clean_up_last_active_run, reset_active_model_context,
    clean_up_telemetry_threads and clear_engine_map, in one."""
    import mlflow
    from mlflow.tracking.fluent import _last_active_run_id, _reset_last_logged_model_id

    _reset_last_logged_model_id()
    _last_active_run_id.set(None)
    _clear_engine_map()
    yield
    from mlflow.telemetry.client import get_telemetry_client
    from mlflow.tracing.display.display_handler import IPythonTraceDisplayHandler
    from mlflow.tracing.export.inference_table import _TRACE_BUFFER
    from mlflow.tracing.fluent import _set_last_active_trace_id
    from mlflow.tracing.trace_manager import InMemoryTraceManager
    from mlflow.tracking import set_registry_uri
    from mlflow.tracking.fluent import clear_active_model
    from opentelemetry import trace as trace_api

    mlflow.tracking.fluent._active_experiment_id = None
    os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ.pop("MLFLOW_REGISTRY_URI", None)
    set_registry_uri(None)
    mlflow.tracing.reset()
    _set_last_active_trace_id(None)
    _TRACE_BUFFER.clear()
    InMemoryTraceManager.reset()
    IPythonTraceDisplayHandler._instance = None
    trace_api._TRACER_PROVIDER_SET_ONCE._done = False
    trace_api._TRACER_PROVIDER = None
    clear_active_model()
    if client := get_telemetry_client():
        client._clean_up()


def _clear_engine_map() -> None:
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    for store_class in (SqlAlchemyStore, RegistryStore):
        with store_class._engine_map_lock:
            while store_class._engine_map:
                _, engine = store_class._engine_map.popitem()
                engine.dispose()


@pytest.fixture(autouse=True)
def clean_up_leaked_runs():
    import mlflow

    try:
        yield
        assert not mlflow.active_run(), "test case unexpectedly leaked a run"
    finally:
        while mlflow.active_run():
            mlflow.end_run()


@pytest.fixture(autouse=True)
def prevent_infer_pip_requirements_fallback(request):
    from mlflow.utils.environment import _INFER_PIP_REQUIREMENTS_GENERAL_ERROR_MESSAGE

    def new_exception(msg, *_, **__):
        in_save_model = any(frame.function == "save_model" for frame in inspect.stack())
        if msg == _INFER_PIP_REQUIREMENTS_GENERAL_ERROR_MESSAGE and in_save_model:
            raise Exception("`mlflow.models.infer_pip_requirements` should not fall back")

    if "allow_infer_pip_requirements_fallback" not in request.keywords:
        with mock.patch("mlflow.utils.environment._logger.exception", new=new_exception):
            yield
    else:
        yield
