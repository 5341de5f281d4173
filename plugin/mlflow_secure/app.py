"""`mlflow server --app-name secure`: the app factory MLflow's server runs in each worker."""

from __future__ import annotations

import contextlib
import ipaddress
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
from mlflow_secure.keys.api import register_key_api
from mlflow_secure.keys.wrapping import MasterKeyError, load_master_key
from mlflow_secure.log_redaction import install_access_log_redaction
from mlflow_secure.policy.decision_cache import DecisionCache
from mlflow_secure.policy.engine import StartupError, start_policy_engine
from mlflow_secure.policy.shadow import start_shadow
from mlflow_secure.policy.toolchain import OpaToolchainError
from mlflow_secure.request import mlflow_validation
from mlflow_secure.request.decrypting import ServerDecryption
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


# ---------------------------------------------------------------- forwarding headers
#
# The client address (decisions, throttling, the audit trail) must come from the socket unless
# the peer is one of MLFLOW_SECURE_TRUSTED_PROXIES. The HTTP servers have proxy handling of
# their own that runs before the front door: uvicorn rewrites the client address and scheme
# from X-Forwarded-For/-Proto for peers in its forwarded-allow list (loopback by default),
# gunicorn the scheme for peers in its own, and waitress strips the headers unless told
# otherwise. The factory runs while the server loads it, before that handling is set up, so
# it sets the server's list from MLFLOW_SECURE_TRUSTED_PROXIES; an operator's own different
# setting (FORWARDED_ALLOW_IPS, --forwarded-allow-ips, --trusted-proxy) refuses start-up.

_SERVER_DEFAULT_ALLOW = ("127.0.0.1", "::1")  # uvicorn's and gunicorn's built-in list


def _option_given(argv: list[str], name: str) -> bool:
    return any(arg == name or arg.startswith(name + "=") for arg in argv)


def _option_value(argv: list[str], name: str) -> str | None:
    for index, arg in enumerate(argv):
        if arg.startswith(name + "="):
            return arg.partition("=")[2]
        if arg == name and index + 1 < len(argv):
            return argv[index + 1]
    return None


def _allow_list(value: object) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else list(value or ())
    return tuple(str(item).strip() for item in items if str(item).strip())


def _agrees(value: object, trusted: tuple) -> bool:
    """Whether a server's forwarded-allow list trusts exactly the proxies in `trusted`."""
    try:
        networks = {ipaddress.ip_network(item, strict=False) for item in _allow_list(value)}
    except ValueError:  # "*", a unix socket path, or garbage: never the same list
        return False
    return networks == set(trusted)


def _listed(trusted: tuple) -> str:
    return ",".join(str(network) for network in trusted)


def _disagreement(server: str, value: object, trusted: tuple, fix: str) -> ConfigError:
    ours = _listed(trusted) or "unset"
    theirs = ",".join(_allow_list(value)) or "nobody"
    return ConfigError(
        f"{server} believes X-Forwarded-For/-Proto from {theirs} but MLFLOW_SECURE_TRUSTED_PROXIES"
        f" is {ours}: clients could forge their address. {fix}"
    )


def _loader(cls: type) -> Any:
    """The `cls` instance up the call stack that is loading this app factory, if any."""
    frame = sys._getframe(1)
    while frame is not None:
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, cls):
            return candidate
        frame = frame.f_back
    return None


def _align_uvicorn(trusted: tuple, environ: Any, argv: list[str]) -> None:
    from uvicorn.config import Config  # uvicorn wraps the factory's app after it returns

    config = _loader(Config)
    fix = (
        "Set MLFLOW_SECURE_TRUSTED_PROXIES to your reverse proxies and unset FORWARDED_ALLOW_IPS"
        " / drop --forwarded-allow-ips from --uvicorn-opts (the secure app sets uvicorn's list"
        " from MLFLOW_SECURE_TRUSTED_PROXIES), or make both the same list."
    )
    if config is not None:
        if not config.proxy_headers or _agrees(config.forwarded_allow_ips, trusted):
            return
        explicit = (
            "FORWARDED_ALLOW_IPS" in environ
            or _option_given(argv, "--forwarded-allow-ips")
            or _allow_list(config.forwarded_allow_ips) != _SERVER_DEFAULT_ALLOW
        )
        if explicit:
            raise _disagreement("uvicorn", config.forwarded_allow_ips, trusted, fix)
        config.forwarded_allow_ips = [str(network) for network in trusted]
        return
    # Not loaded by uvicorn's Config (a program serving the app itself): check what it reads.
    if _option_given(argv, "--no-proxy-headers"):
        return
    value = _option_value(argv, "--forwarded-allow-ips")
    if value is None:
        value = environ.get("FORWARDED_ALLOW_IPS", ",".join(_SERVER_DEFAULT_ALLOW))
    if not _agrees(value, trusted):
        listed = _listed(trusted)
        raise _disagreement(
            "uvicorn",
            value,
            trusted,
            f"Set FORWARDED_ALLOW_IPS={listed} in the server's environment"
            if listed
            else "Pass --no-proxy-headers to uvicorn (or set FORWARDED_ALLOW_IPS to an empty "
            "string)",
        )


def _align_gunicorn(trusted: tuple, environ: Any, argv: list[str]) -> None:
    from gunicorn.app.base import BaseApplication  # loads the factory in each worker

    application = _loader(BaseApplication)
    listed = _listed(trusted)
    fix = (
        "Set MLFLOW_SECURE_TRUSTED_PROXIES to your reverse proxies and unset FORWARDED_ALLOW_IPS"
        " / drop --forwarded-allow-ips from --gunicorn-opts (the secure app sets gunicorn's list"
        " from MLFLOW_SECURE_TRUSTED_PROXIES), or make both the same list."
    )
    if application is None:
        value = _option_value(argv, "--forwarded-allow-ips")
        if value is None:
            value = environ.get("FORWARDED_ALLOW_IPS", ",".join(_SERVER_DEFAULT_ALLOW))
        if not _agrees(value, trusted):
            raise _disagreement(
                "gunicorn", value, trusted, f"Set FORWARDED_ALLOW_IPS='{listed}' for gunicorn."
            )
        return
    cfg = application.cfg
    current = cfg.forwarded_allow_ips
    if _agrees(current, trusted):
        return
    explicit = (
        "FORWARDED_ALLOW_IPS" in environ
        or _option_given(argv, "--forwarded-allow-ips")
        or _allow_list(current) != _SERVER_DEFAULT_ALLOW
    )
    if explicit:
        raise _disagreement("gunicorn", current, trusted, fix)
    cfg.set("forwarded_allow_ips", listed)
    if hasattr(cfg, "_forwarded_allow_networks"):
        cfg._forwarded_allow_networks = None  # gunicorn caches the parsed list


def _waitress_options() -> dict | None:
    """The options waitress's command-line runner is about to serve the factory's app with."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_globals.get("__name__") == "waitress.runner" and frame.f_code.co_name == "run":
            options = frame.f_locals.get("kw")
            return options if isinstance(options, dict) else None
        frame = frame.f_back
    return None


def _align_waitress(trusted: tuple, environ: Any, argv: list[str]) -> None:
    options = _waitress_options()
    if (options or {}).get("trusted_proxy") or _option_given(argv, "--trusted-proxy"):
        raise ConfigError(
            "waitress is told to rewrite client addresses itself (--trusted-proxy): remove "
            "--trusted-proxy and its companions from --waitress-opts and list the proxy in "
            "MLFLOW_SECURE_TRUSTED_PROXIES (the secure app reads the forwarding headers itself)"
        )
    if not trusted:
        return  # waitress drops forwarding headers by default, and the front door ignores them
    keeps = "--no-clear-untrusted-proxy-headers"
    if options is None:
        if not _option_given(argv, keeps):
            raise ConfigError(
                "MLFLOW_SECURE_TRUSTED_PROXIES is set but waitress drops X-Forwarded-For before "
                f"the secure app sees it: add --waitress-opts '{keeps}'"
            )
        return
    if options.get("clear_untrusted_proxy_headers") == "true":
        raise ConfigError(
            "MLFLOW_SECURE_TRUSTED_PROXIES is set but --clear-untrusted-proxy-headers makes "
            "waitress drop X-Forwarded-For before the secure app sees it: remove it"
        )
    options["clear_untrusted_proxy_headers"] = "false"  # the front door decides whom to believe


def align_forwarding(trusted: tuple, server: str, environ: Any = None, argv: Any = None) -> None:
    """Make `server` (uvicorn, gunicorn or waitress) believe forwarding headers from exactly
    `trusted` (MLFLOW_SECURE_TRUSTED_PROXIES); ConfigError when it is set to disagree."""
    environ = os.environ if environ is None else environ
    argv = list(sys.argv if argv is None else argv)
    aligners = {"uvicorn": _align_uvicorn, "gunicorn": _align_gunicorn, "waitress": _align_waitress}
    aligner = aligners.get(server)
    if aligner is not None and server in sys.modules:  # served by it, not imported elsewhere
        aligner(trusted, environ, argv)


def _stamp_flask_user() -> None:
    """MLflow's own features (review queues, jobs) read the user from flask.g."""
    from flask import g

    from mlflow_secure.identity.subject import current_subject

    with contextlib.suppress(RuntimeError):  # the public health probe has no subject
        g.mlflow_authenticated_user = current_subject().name


def _index_tag_tables(tracking_store: Any, registry_store: Any) -> None:
    """The indexes a pushed-down search uses (store_indexes.py), and the look for policy tag
    keys in another case (tag_keys.py); never fatal: a store that cannot be opened yet is
    MLflow's to report on the first request."""
    from mlflow_secure.request.listings import store_indexes, tag_keys

    for name, store, ensure, table in (
        (
            "experiment",
            tracking_store,
            store_indexes.ensure_listing_indexes,
            store_indexes.EXPERIMENT_TAGS,
        ),
        (
            "registered-model",
            registry_store,
            store_indexes.ensure_registry_indexes,
            store_indexes.REGISTERED_MODEL_TAGS,
        ),
    ):
        try:
            opened = store()
            ensure(opened)
            tag_keys.look_for_case_variants(opened, table)
        except Exception as exc:
            _logger.warning("%s tag tables not checked: %s", name, str(exc).splitlines()[0])


def create_app() -> Any:
    _configure_logging()
    install_access_log_redaction()
    try:
        settings = load_settings()
        check_bind(sys.argv, settings.allow_insecure_bind)
        trusted_proxies = _trusted_proxies(settings.trusted_proxies)
        align_forwarding(trusted_proxies, os.environ.get("_MLFLOW_SGI_NAME", "uvicorn"))
        identity = start_identity(settings)
        audit = open_audit_log(identity.uri, settings.audit_log_file)
        master_key = load_master_key(settings.master_key, settings.master_key_file, identity.uri)
        engine = start_policy_engine(settings)
        shadow = start_shadow(settings)
    except (ConfigError, OpaToolchainError, StartupError, MasterKeyError) as exc:
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
    register_key_api(
        flask_app, identity.sessions, master_key, settings.encrypt_from, _add_static_prefix
    )
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
    _index_tag_tables(_get_tracking_store, _get_model_registry_store)
    mlflow_validation.schemas()  # MLflow's handler schemas, read once before any request
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
        decryption=ServerDecryption(identity.sessions, master_key),
        encrypt_from=settings.encrypt_from,
        decisions=DecisionCache(settings.decision_cache_ttl)
        if settings.decision_cache_ttl
        else None,
    )
    if fastapi_app is not None:
        return SecureASGIMiddleware(fastapi_app, config)
    return SecureWSGIMiddleware(flask_app, config)
