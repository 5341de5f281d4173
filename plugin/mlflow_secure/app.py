"""`mlflow server --app-name secure`: the app factory MLflow's server runs in each worker."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
from typing import Any

from mlflow_secure.bind_guard import check_bind
from mlflow_secure.config import ConfigError, load_settings
from mlflow_secure.front_door import SecureASGIMiddleware, SecureWSGIMiddleware
from mlflow_secure.log_redaction import install_access_log_redaction
from mlflow_secure.opa_toolchain import OpaToolchainError
from mlflow_secure.policy_engine import StartupError, start_policy_engine

_logger = logging.getLogger("mlflow_secure")
# gunicorn halts (instead of respawning) when a worker exits with this code.
WORKER_BOOT_ERROR = 3


def _configure_logging() -> None:
    if not _logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s [mlflow-secure] %(message)s")
        )
        _logger.addHandler(handler)
        _logger.setLevel(logging.INFO)
        _logger.propagate = False


def _refuse_to_start(reason: str) -> None:
    """One clear message, no traceback, and no endless respawning of failing workers."""
    print(f"mlflow-secure: cannot start: {reason}", file=sys.stderr, flush=True)
    if multiprocessing.parent_process() is not None:
        # A uvicorn worker: its supervisor would respawn us forever; stop the whole server.
        os.kill(os.getppid(), signal.SIGTERM)
    raise SystemExit(WORKER_BOOT_ERROR)


def create_app() -> Any:
    _configure_logging()
    install_access_log_redaction()
    try:
        settings = load_settings()
        check_bind(sys.argv, settings.allow_insecure_bind)
        engine = start_policy_engine(settings)
    except (ConfigError, OpaToolchainError, StartupError) as exc:
        _refuse_to_start(str(exc))

    from mlflow.server import app as flask_app
    from mlflow.server.handlers import _add_static_prefix

    health_paths = frozenset({_add_static_prefix("/health")})
    if os.environ.get("_MLFLOW_SGI_NAME", "uvicorn") == "uvicorn":
        from mlflow.server.fastapi_app import create_fastapi_app

        return SecureASGIMiddleware(create_fastapi_app(flask_app), engine, health_paths)
    return SecureWSGIMiddleware(flask_app, engine, health_paths)
