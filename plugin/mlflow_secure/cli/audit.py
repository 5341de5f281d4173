"""``mlflow-secure audit``: verify the hash chain and export the trail as JSON lines.

Both commands read the database directly (or a file), not through the server: an auditor
checking the trail should not depend on the service being audited. They never migrate or
write the database. SQLAlchemy and the audit modules are imported when a command runs, not
when the CLI starts.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING

import click

from mlflow_secure.config import ConfigError, load_settings

if TYPE_CHECKING:
    from sqlalchemy import Engine

DATABASE_URI_HELP = "SQLAlchemy URI of the audit database; defaults to MLFLOW_SECURE_DATABASE_URI."


def _engine(uri: str | None) -> Engine:
    from sqlalchemy import inspect
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from mlflow_secure.audit import store

    if not uri:
        try:
            uri = load_settings().database_uri
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None
    if not uri:
        raise click.ClickException(
            "no database given: pass --database-uri or set MLFLOW_SECURE_DATABASE_URI"
        )
    try:
        url = make_url(uri)
        if url.get_backend_name() == "sqlite" and not Path(url.database or "").is_file():
            raise click.ClickException(f"no SQLite database at {url.database!r}")
        engine = store.open_engine(uri)
        if not inspect(engine).has_table(store.EVENTS.name):
            raise click.ClickException("this database holds no audit trail (no audit tables)")
    except (SQLAlchemyError, ValueError) as exc:  # ArgumentError for a malformed URI
        raise click.ClickException(f"cannot open the database ({type(exc).__name__})") from None
    return engine


def _instant(value: str | None, option: str) -> str | None:
    from mlflow_secure.audit.events import parse_time

    if value is None:
        return None
    try:
        return parse_time(value)
    except ValueError:
        raise click.BadParameter("expected an ISO-8601 date or time", param_hint=option) from None


@click.group()
def audit() -> None:
    """The audit trail: verify its hash chain, export it as JSON lines."""


@audit.command("verify")
@click.option("--database-uri", help=DATABASE_URI_HELP)
@click.option(
    "--file",
    "path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Verify a JSON lines file (MLFLOW_SECURE_AUDIT_LOG_FILE or an export) instead.",
)
@click.option(
    "--partial",
    is_flag=True,
    help="The events may start after seq 1 (an export with --since, a rotated file, a pruned "
    "table): the first event's prev_hash is taken on trust.",
)
def verify(database_uri: str | None, path: Path | None, partial: bool) -> None:
    """Walk the hash chain; exit 0 when intact, 1 at the first break (named by seq)."""
    from sqlalchemy.exc import SQLAlchemyError

    from mlflow_secure.audit.verify import verify_database, verify_file

    if database_uri and path:
        raise click.UsageError("give either --database-uri or --file, not both")
    if path is not None:
        try:
            result = verify_file(path, partial=partial)
        except (OSError, UnicodeDecodeError) as exc:
            raise click.ClickException(f"cannot read {path}: {exc}") from None
    else:
        engine = _engine(database_uri)
        try:
            result = verify_database(engine, partial=partial)
        except SQLAlchemyError as exc:
            raise click.ClickException(f"cannot read the database ({type(exc).__name__})") from None
        finally:
            engine.dispose()
    click.echo(result.describe())
    if not result.ok:
        sys.exit(1)


def _open_output(path: Path | None) -> IO[str]:
    if path is None:
        return click.get_text_stream("stdout")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    return os.fdopen(fd, "w", encoding="utf-8", newline="\n")


@audit.command("export")
@click.option("--database-uri", help=DATABASE_URI_HELP)
@click.option("--since", help="Start of the period (ISO-8601, inclusive).")
@click.option("--until", help="End of the period (ISO-8601, inclusive).")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to this file (created with mode 0600) instead of standard output.",
)
def export(
    database_uri: str | None, since: str | None, until: str | None, output: Path | None
) -> None:
    """Write events as JSON lines in chain order, exactly as stored (hashes included).

    With --since/--until the export is the contiguous range of seq numbers covering the period
    (so it can be verified with `audit verify --file --partial`), which can include a few
    events just outside it.
    """
    from sqlalchemy.exc import SQLAlchemyError

    from mlflow_secure.audit import store
    from mlflow_secure.audit.events import canonical_json

    start, end = _instant(since, "--since"), _instant(until, "--until")
    engine = _engine(database_uri)
    count = 0
    try:
        with store.snapshot(engine) as connection:
            stream = _open_output(output)
            try:
                for record in store.iter_events(connection, start, end):
                    stream.write(canonical_json(record) + "\n")
                    count += 1
                stream.flush()
                if output is not None:
                    os.fsync(stream.fileno())
            finally:
                if output is not None:
                    stream.close()
    except SQLAlchemyError as exc:
        raise click.ClickException(f"cannot read the database ({type(exc).__name__})") from None
    finally:
        engine.dispose()
    click.echo(f"exported {count} events", err=True)


def register(main: click.Group) -> None:
    """Attach the `audit` group to the `mlflow-secure` command."""
    main.add_command(audit)
