"""The first administrator: no default password, ever.

On a store without an enabled admin, one is created. Its API key is either the one the
operator supplies in ``MLFLOW_SECURE_BOOTSTRAP_ADMIN_KEY`` (e.g. from a secret manager), or a
fresh random key written to a file only the server's user can read, whose path is logged
once. The caller holds the migration lock, so exactly one worker of one replica does this.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from mlflow_secure.identity import api_keys, store
from mlflow_secure.identity.models import ApiKey

_logger = logging.getLogger(__name__)


class BootstrapError(RuntimeError):
    pass


def default_key_file(identity_uri: str) -> Path:
    from sqlalchemy.engine import make_url

    url = make_url(identity_uri)
    if url.get_backend_name() == "sqlite" and url.database:
        return Path(url.database).resolve().parent / "mlflow-secure-admin.key"
    return Path.home() / ".config" / "mlflow-secure" / "admin.key"


def _write_private(path: Path, content: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    staging = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(content + "\n")
        os.replace(staging, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            staging.unlink()
        raise


def bootstrap_admin(
    sessions: sessionmaker[Session], admin_name: str, supplied_key: str | None, key_file: Path
) -> Path | None:
    """Create the first admin if there is none; returns the key file written, if any."""
    with sessions.begin() as session:
        if store.count_admins(session) > 0:
            return None
        try:
            principal = store.get_principal(session, admin_name)
            store.update_principal(
                session, admin_name, roles=[*principal.roles, "admin"], disabled=False
            )
        except store.NotFound:
            store.create_principal(
                session, admin_name, "user", roles=["admin"], clearance="restricted"
            )
        if supplied_key:
            try:
                parsed = api_keys.parse(supplied_key.strip())
            except api_keys.MalformedKey:
                raise BootstrapError(
                    "MLFLOW_SECURE_BOOTSTRAP_ADMIN_KEY is not a well-formed API key; generate "
                    "one with `mlflow-secure keys generate`"
                ) from None
            session.add(
                ApiKey(
                    id=parsed.key_id,
                    principal_id=store.get_principal(session, admin_name).id,
                    name="bootstrap",
                    digest=parsed.digest,
                    scopes=["admin", "read", "write"],
                    created_by="bootstrap",
                )
            )
            _logger.warning(
                "created administrator %r with the API key from MLFLOW_SECURE_BOOTSTRAP_ADMIN_KEY",
                admin_name,
            )
            return None
        key, _ = store.create_key(
            session,
            admin_name,
            ["admin", "read", "write"],
            name="bootstrap",
            created_by="bootstrap",
        )
        _write_private(key_file, key)
    _logger.warning(
        "created administrator %r; its API key is in %s (mode 0600). Store it in your secret "
        "manager and delete the file.",
        admin_name,
        key_file,
    )
    return key_file
