"""Opening the identity store and migrating it (SQLite beside the tracking store, or the same
SQL database with ``mls_`` tables and its own Alembic version table)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_PG_MIGRATION_LOCK = 0x6D6C7365  # "mlse": serialises migrations across replicas
WAL_ATTEMPTS = 600  # 30 s, as long as the busy timeout
WAL_RETRY_SECONDS = 0.05


def default_identity_uri(backend_store_uri: str | None) -> str:
    """Beside the tracking database: a sibling SQLite file, or the same SQL database."""
    if not backend_store_uri:
        return f"sqlite:///{Path.cwd() / 'mlflow-secure.db'}"
    if "://" not in backend_store_uri:  # a file store directory
        return f"sqlite:///{Path(backend_store_uri).resolve().parent / 'mlflow-secure.db'}"
    url = make_url(backend_store_uri)
    if url.get_backend_name() == "sqlite":
        database = Path(url.database or "mlflow.db")
        return f"sqlite:///{database.resolve().parent / (database.stem + '-secure.db')}"
    return backend_store_uri


def _create_private(database: str) -> None:
    """Key digests, password hashes and the audit trail: readable by the server's user only.

    SQLite gives its -wal and -shm files the database file's permissions, so creating the
    (empty, hence valid) database file 0600 first covers all three.
    """
    path = Path(database)
    # A missing directory stays an error for SQLite to report; only the file is created here.
    if database != ":memory:" and path.parent.is_dir() and not path.exists():
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def open_engine(uri: str) -> Engine:
    url = make_url(uri)
    if url.get_backend_name() == "sqlite":
        if url.database:
            _create_private(url.database)
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(connection, _record) -> None:
            cursor = connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            _use_wal(cursor)
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


def _use_wal(cursor: sqlite3.Cursor) -> None:
    """Switch the database file to WAL (it stays so), retrying while another connection
    holds it: SQLite answers "database is locked" to the switch at once, without waiting
    out the busy timeout (escalating a shared lock could deadlock), so two workers or the
    audit writer and a migration opening a new file together would otherwise fail."""
    if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
        return
    for attempt in range(WAL_ATTEMPTS):
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == WAL_ATTEMPTS - 1:
                raise
            time.sleep(WAL_RETRY_SECONDS)


@contextlib.contextmanager
def migration_lock(engine: Engine) -> Iterator[None]:
    """Only one worker (or replica) migrates; the others wait and then find nothing to do."""
    backend = engine.url.get_backend_name()
    if backend == "sqlite" and engine.url.database:
        lock_path = Path(engine.url.database).resolve().with_suffix(".migrate.lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)
    elif backend == "postgresql":
        with engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_MIGRATION_LOCK})
                connection.commit()
    else:
        yield


def migrate(engine: Engine) -> None:
    """Upgrade to the newest schema; callers hold `migration_lock` across workers."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)
