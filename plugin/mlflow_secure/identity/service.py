"""Bringing up identity for one worker: store, migrations, bootstrap, authenticator."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from mlflow_secure.config import ConfigError, Settings
from mlflow_secure.identity import store
from mlflow_secure.identity.authenticator import Authenticator
from mlflow_secure.identity.bootstrap import BootstrapError, bootstrap_admin, default_key_file
from mlflow_secure.identity.oidc import OidcSettings, OidcVerifier
from mlflow_secure.identity.throttle import Throttle

# Set by `mlflow server` for its workers.
BACKEND_STORE_ENV = "_MLFLOW_SERVER_FILE_STORE"


@dataclass
class IdentityService:
    uri: str
    sessions: sessionmaker[Session]
    authenticator: Authenticator


def _oidc(settings: Settings) -> OidcVerifier | None:
    if not settings.oidc_issuer:
        return None
    if not settings.oidc_audience:
        raise ConfigError("MLFLOW_SECURE_OIDC_AUDIENCE is required with MLFLOW_SECURE_OIDC_ISSUER")
    try:
        oidc_settings = OidcSettings(
            issuer=settings.oidc_issuer,
            audience=settings.oidc_audience,
            jwks_url=settings.oidc_jwks_url,
            username_claim=settings.oidc_username_claim,
            groups_claim=settings.oidc_groups_claim,
        )
    except ValueError as exc:
        raise ConfigError(f"OIDC settings: {exc}") from None
    return OidcVerifier(oidc_settings)


def start_identity(settings: Settings) -> IdentityService:
    uri = settings.database_uri or store.default_identity_uri(os.environ.get(BACKEND_STORE_ENV))
    oidc = _oidc(settings)
    try:
        engine = store.open_engine(uri)
        sessions = store.session_factory(engine)
        with store.migration_lock(engine):
            store.migrate(engine)
            key_file = Path(settings.bootstrap_key_file or default_key_file(uri))
            bootstrap_admin(
                sessions, settings.bootstrap_admin, settings.bootstrap_admin_key, key_file
            )
    except BootstrapError as exc:
        raise ConfigError(str(exc)) from None
    except (SQLAlchemyError, OSError) as exc:
        raise ConfigError(
            f"cannot open the identity store ({type(exc).__name__}); check "
            "MLFLOW_SECURE_DATABASE_URI and that the database is reachable"
        ) from None
    throttle = Throttle(
        sessions,
        max_failures=settings.auth_max_failures,
        window_seconds=settings.auth_failure_window,
        block_seconds=settings.auth_block_seconds,
    )
    authenticator = Authenticator(sessions, throttle, oidc, settings.oidc_auto_provision)
    authenticator.start()
    return IdentityService(uri, sessions, authenticator)
