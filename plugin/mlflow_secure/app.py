"""`mlflow server --app-name secure`: the app factory MLflow's server runs in each worker."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import sys
from typing import Any

from mlflow_secure.bind_guard import check_bind
from mlflow_secure.config import ConfigError, load_settings
from mlflow_secure.front_door import FrontDoorConfig, SecureASGIMiddleware, SecureWSGIMiddleware
from mlflow_secure.identity.service import start_identity
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


def _stamp_flask_user() -> None:
    """MLflow's own features (review queues, jobs) read the user from flask.g."""
    from flask import g

    from mlflow_secure.identity.subject import current_subject

    with contextlib.suppress(RuntimeError):  # the public health probe has no subject
        g.mlflow_authenticated_user = current_subject().name


def create_app() -> Any:
    _configure_logging()
    install_access_log_redaction()
    try:
        settings = load_settings()
        check_bind(sys.argv, settings.allow_insecure_bind)
        identity = start_identity(settings)
        engine = start_policy_engine(settings)
    except (ConfigError, OpaToolchainError, StartupError) as exc:
        _refuse_to_start(str(exc))

    from mlflow.server import app as flask_app
    from mlflow.server.handlers import STATIC_PREFIX_ENV_VAR, _add_static_prefix

    from mlflow_secure.admin_api import register_admin_api

    register_admin_api(flask_app, identity.sessions, _add_static_prefix)
    flask_app.before_request(_stamp_flask_user)
    config = FrontDoorConfig(
        engine=engine,
        authenticator=identity.authenticator,
        sessions=identity.sessions,
        health_paths=frozenset({_add_static_prefix("/health")}),
        static_prefix=os.environ.get(STATIC_PREFIX_ENV_VAR, "").rstrip("/"),
    )
    if os.environ.get("_MLFLOW_SGI_NAME", "uvicorn") == "uvicorn":
        from mlflow.server.fastapi_app import create_fastapi_app

        return SecureASGIMiddleware(create_fastapi_app(flask_app), config)
    return SecureWSGIMiddleware(flask_app, config)
