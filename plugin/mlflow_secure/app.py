"""`mlflow server --app-name secure`: the app factory MLflow's server runs in each worker."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import sys
from typing import Any

from mlflow_secure.audit.api import register_audit_api
from mlflow_secure.audit.events import parse_trusted_proxies
from mlflow_secure.audit.log import open_audit_log
from mlflow_secure.bind_guard import check_bind
from mlflow_secure.config import ConfigError, load_settings
from mlflow_secure.identity.service import start_identity
from mlflow_secure.log_redaction import install_access_log_redaction
from mlflow_secure.policy.decision_cache import DecisionCache
from mlflow_secure.policy.engine import StartupError, start_policy_engine
from mlflow_secure.policy.shadow import start_shadow
from mlflow_secure.policy.toolchain import OpaToolchainError
from mlflow_secure.request.front_door import (
    FrontDoorConfig,
    SecureASGIMiddleware,
    SecureWSGIMiddleware,
)

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


def _trusted_proxies(value: str | None) -> tuple:
    try:
        return parse_trusted_proxies(value or "")
    except ValueError as exc:
        raise ConfigError(f"MLFLOW_SECURE_TRUSTED_PROXIES: {exc}") from None


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
        trusted_proxies = _trusted_proxies(settings.trusted_proxies)
        identity = start_identity(settings)
        audit = open_audit_log(identity.uri, settings.audit_log_file)
        engine = start_policy_engine(settings)
        shadow = start_shadow(settings)
    except (ConfigError, OpaToolchainError, StartupError) as exc:
        _refuse_to_start(str(exc))

    from mlflow.server import app as flask_app
    from mlflow.server.handlers import (
        STATIC_PREFIX_ENV_VAR,
        _add_static_prefix,
        _get_model_registry_store,
        _get_tracking_store,
    )

    from mlflow_secure.admin.api import register_admin_api
    from mlflow_secure.request.census import UnmappedRoutes, require_complete, take_census
    from mlflow_secure.request.lookups import ResourceResolver
    from mlflow_secure.request.matcher import RouteMatcher

    register_admin_api(flask_app, identity.sessions, _add_static_prefix)
    register_audit_api(flask_app, identity.sessions, _add_static_prefix)
    flask_app.before_request(_stamp_flask_user)
    asgi = os.environ.get("_MLFLOW_SGI_NAME", "uvicorn") == "uvicorn"
    fastapi_app = None
    if asgi:
        from mlflow.server.fastapi_app import create_fastapi_app

        fastapi_app = create_fastapi_app(flask_app)
    try:
        # Every route of the installed MLflow must be in the census: an upgrade that adds
        # routes stops here, naming them, instead of serving them unexamined.
        require_complete(take_census(flask_app, fastapi_app))
    except UnmappedRoutes as exc:
        _refuse_to_start(str(exc))
    config = FrontDoorConfig(
        engine=engine,
        authenticator=identity.authenticator,
        sessions=identity.sessions,
        health_paths=frozenset({_add_static_prefix("/health")}),
        static_prefix=os.environ.get(STATIC_PREFIX_ENV_VAR, "").rstrip("/"),
        matcher=RouteMatcher(flask_app, fastapi_app),
        resolver=ResourceResolver(_get_tracking_store, _get_model_registry_store),
        audit=audit,
        trusted_proxies=trusted_proxies,
        shadow=shadow,
        decisions=DecisionCache(settings.decision_cache_ttl)
        if settings.decision_cache_ttl
        else None,
    )
    if fastapi_app is not None:
        return SecureASGIMiddleware(fastapi_app, config)
    return SecureWSGIMiddleware(flask_app, config)
