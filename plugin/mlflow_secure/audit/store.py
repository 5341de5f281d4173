"""The audit trail in SQL: the event table, the chain head, appending, querying and exporting.

Appending is the only place a ``seq`` is assigned, and it happens under the chain head's lock
(PostgreSQL and others: ``SELECT ... FOR UPDATE`` on the one-row ``mls_audit_head``; SQLite:
``BEGIN IMMEDIATE``, its single writer), so every worker of every replica extends one total
order with no gaps: a gap or a mismatch later can only mean tampering or a lost write.

Every hashed field is stored as its own column with a type that round-trips exactly (the time
as fixed-width text, JSON for lists), so `verify` recomputes the hash from the row itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    JSON,
    BigInteger,
    Connection,
    Engine,
    Float,
    Integer,
    String,
    and_,
    bindparam,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from mlflow_secure.audit.events import (
    MAX_PATH,
    MAX_TEXT,
    OPTIONAL_FIELDS,
    AuditEvent,
    format_time,
    from_columns,
    parse_time,
    seal,
)
from mlflow_secure.identity.store import open_engine

__all__ = [
    "AuditEventRow",
    "AuditHead",
    "append_events",
    "iter_all",
    "iter_events",
    "migrate",
    "open_engine",
    "query_events",
    "read_head",
    "row_to_record",
    "seq_range",
    "snapshot",
]

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
HEAD_ID = 1
MAX_RESULTS_LIMIT = 1000


class AuditBase(DeclarativeBase):
    pass


class AuditEventRow(AuditBase):
    """One sealed event; columns are named exactly like the record's fields."""

    __tablename__ = "mls_audit_events"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    v: Mapped[int] = mapped_column(Integer)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    event: Mapped[str] = mapped_column(String(256))
    time: Mapped[str] = mapped_column(String(32), index=True)
    subject: Mapped[str | None] = mapped_column(String(256), index=True)
    subject_kind: Mapped[str | None] = mapped_column(String(256))
    auth: Mapped[str | None] = mapped_column(String(256))
    key_id: Mapped[str | None] = mapped_column(String(256))
    client_ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(256))
    method: Mapped[str | None] = mapped_column(String(256))
    path: Mapped[str | None] = mapped_column(String(MAX_PATH))
    query_params: Mapped[list[str]] = mapped_column(JSON)
    endpoint: Mapped[str | None] = mapped_column(String(256))
    resource_type: Mapped[str | None] = mapped_column(String(256))
    resource_id: Mapped[str | None] = mapped_column(String(256), index=True)
    resource_context: Mapped[dict[str, str]] = mapped_column(JSON)
    decision: Mapped[str | None] = mapped_column(String(256), index=True)
    reasons: Mapped[list[str]] = mapped_column(JSON)
    decision_id: Mapped[str | None] = mapped_column(String(256))
    policy_revision: Mapped[str | None] = mapped_column(String(256))
    status: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    dropped: Mapped[int] = mapped_column(Integer)
    # OPTIONAL_FIELDS: NULL when the event has no value (the record then has no such key).
    client: Mapped[str | None] = mapped_column(String(MAX_TEXT))


class AuditHead(AuditBase):
    """The chain head: the last ``seq`` and its hash. Its row lock serialises appends, and it
    lets `verify` notice events deleted from the end of the chain."""

    __tablename__ = "mls_audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))


EVENTS = AuditEventRow.__table__
HEAD = AuditHead.__table__


# ---------------------------------------------------------------- schema


def migrate(engine: Engine) -> None:
    """Upgrade the audit tables to the newest schema (own version table).

    Callers hold `mlflow_secure.identity.store.migration_lock(engine)` across workers, as for
    the identity store; taking it here would deadlock a caller that already holds it.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


# ---------------------------------------------------------------- appending


# Built once: constructing them per batch (column comparisons, generative copies) was a
# fifth of the writer's Python time per batch.
_READ_HEAD = select(HEAD.c.seq, HEAD.c.hash).where(HEAD.c.id == HEAD_ID)
_LOCK_HEAD = _READ_HEAD.with_for_update()
_MOVE_HEAD = (
    update(HEAD)
    .where(HEAD.c.id == HEAD_ID)
    .values(seq=bindparam("new_seq"), hash=bindparam("new_hash"))
)
_INSERT_EVENTS = insert(EVENTS)


def _append_locked(connection: Connection, events: Sequence[AuditEvent]) -> list[dict[str, Any]]:
    # SQLite is already locked by BEGIN IMMEDIATE; other databases lock the head row.
    head = _READ_HEAD if connection.dialect.name == "sqlite" else _LOCK_HEAD
    row = connection.execute(head).one_or_none()
    if row is None:
        raise RuntimeError("the audit chain head is missing: run the audit migrations")
    seq, prev_hash = int(row.seq), row.hash
    records = []
    for event in events:
        seq += 1
        record = seal(event, seq, prev_hash)
        prev_hash = record["hash"]
        records.append(record)
    if records:
        # One shape for the whole batch: an optional field a record lacks is stored as NULL.
        absent = dict.fromkeys(OPTIONAL_FIELDS)
        connection.execute(_INSERT_EVENTS, [{**absent, **record} for record in records])
        connection.execute(_MOVE_HEAD, {"new_seq": seq, "new_hash": prev_hash})
    return records


def append_events(engine: Engine, events: Sequence[AuditEvent]) -> list[dict[str, Any]]:
    """Append `events` in order, in one transaction; returns the sealed records.

    Raises what the database raises (nothing is appended then).
    """
    if engine.dialect.name != "sqlite":
        with engine.begin() as connection:
            return _append_locked(connection, events)
    # pysqlite defers BEGIN until the first write, so the head would be read unlocked: take
    # SQLite's write lock up front instead (it waits up to the connection's busy timeout).
    with engine.connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT")
        connection.exec_driver_sql("BEGIN IMMEDIATE")
        try:
            records = _append_locked(connection, events)
            connection.exec_driver_sql("COMMIT")
        except BaseException:
            with contextlib.suppress(Exception):  # no transaction left to roll back
                connection.exec_driver_sql("ROLLBACK")
            raise
        return records


# ---------------------------------------------------------------- reading


@contextlib.contextmanager
def snapshot(engine: Engine) -> Iterator[Connection]:
    """A read-only connection whose statements all see one consistent state of the chain.

    Writers keep appending while an auditor verifies or exports; without a snapshot the head
    read first and the events read later would disagree, and look like tampering.
    """
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            # pysqlite runs SELECTs outside any transaction; an explicit (deferred) BEGIN
            # pins one WAL snapshot from the first read until the end.
            connection.execution_options(isolation_level="AUTOCOMMIT")
            connection.exec_driver_sql("BEGIN")
            try:
                yield connection
            finally:
                with contextlib.suppress(Exception):
                    connection.exec_driver_sql("COMMIT")
            return
        if engine.dialect.name == "postgresql":
            connection.execution_options(isolation_level="REPEATABLE READ")
        with connection.begin():
            yield connection


def row_to_record(row: Any) -> dict[str, Any]:
    """A stored row as the record it was sealed from (``RECORD_FIELDS`` order, then the
    optional fields it has)."""
    record = from_columns(row._mapping)
    record["seq"] = int(record["seq"])
    return record


def read_head(connection: Connection | Session) -> tuple[int, str]:
    row = connection.execute(select(HEAD.c.seq, HEAD.c.hash).where(HEAD.c.id == HEAD_ID)).one()
    return int(row.seq), row.hash


def _instant(value: datetime | str | None) -> str | None:
    if value is None or value == "":
        return None
    return parse_time(value) if isinstance(value, str) else format_time(value)


def query_events(
    connection: Connection | Session,
    *,
    subject: str | None = None,
    resource: str | None = None,
    decision: str | None = None,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    max_results: int = 100,
    after_seq: int | None = None,
) -> tuple[list[dict[str, Any]], int | None]:
    """One page of events in chain order, and the ``seq`` to continue after (None: no more).

    `resource` matches a resource id, or ``type:id``; `since`/`until` are inclusive bounds on
    the event time.
    """
    if not 1 <= max_results <= MAX_RESULTS_LIMIT:
        raise ValueError(f"max_results must be between 1 and {MAX_RESULTS_LIMIT}")
    conditions = []
    if subject is not None:
        conditions.append(EVENTS.c.subject == subject)
    if decision is not None:
        conditions.append(EVENTS.c.decision == decision)
    if resource is not None:
        match = EVENTS.c.resource_id == resource
        kind, sep, ident = resource.partition(":")
        if sep:
            match = or_(match, and_(EVENTS.c.resource_type == kind, EVENTS.c.resource_id == ident))
        conditions.append(match)
    if (start := _instant(since)) is not None:
        conditions.append(EVENTS.c.time >= start)
    if (end := _instant(until)) is not None:
        conditions.append(EVENTS.c.time <= end)
    if after_seq is not None:
        conditions.append(EVENTS.c.seq > after_seq)
    rows = connection.execute(
        select(EVENTS).where(*conditions).order_by(EVENTS.c.seq).limit(max_results + 1)
    ).all()
    records = [row_to_record(row) for row in rows[:max_results]]
    more = len(rows) > max_results
    return records, (records[-1]["seq"] if more else None)


def seq_range(
    connection: Connection | Session,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
) -> tuple[int, int] | None:
    """The contiguous seq range covering every event in [since, until] (None: no event).

    Workers' clocks and queues make event times only roughly follow ``seq``; an export of a
    contiguous range stays verifiable, at the cost of a few events just outside the window.
    """
    first = select(func.min(EVENTS.c.seq))
    last = select(func.max(EVENTS.c.seq))
    if (start := _instant(since)) is not None:
        first = first.where(EVENTS.c.time >= start)
    if (end := _instant(until)) is not None:
        last = last.where(EVENTS.c.time <= end)
    low, high = connection.execute(first).scalar(), connection.execute(last).scalar()
    if low is None or high is None or low > high:
        return None
    return int(low), int(high)


def iter_events(
    connection: Connection | Session,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    batch_size: int = 1000,
) -> Iterator[dict[str, Any]]:
    """Every event of `seq_range(since, until)` in chain order, read in keyset pages."""
    bounds = seq_range(connection, since, until)
    if bounds is None:
        return
    after, high = bounds[0] - 1, bounds[1]
    while after < high:
        rows = connection.execute(
            select(EVENTS)
            .where(EVENTS.c.seq > after, EVENTS.c.seq <= high)
            .order_by(EVENTS.c.seq)
            .limit(batch_size)
        ).all()
        if not rows:
            return
        for row in rows:
            yield row_to_record(row)
        after = int(rows[-1].seq)


def iter_all(connection: Connection | Session, batch_size: int = 1000) -> Iterator[dict[str, Any]]:
    """Every stored event in seq order, including any outside the head (for `verify`)."""
    after = None
    while True:
        query = select(EVENTS).order_by(EVENTS.c.seq).limit(batch_size)
        if after is not None:
            query = query.where(EVENTS.c.seq > after)
        rows = connection.execute(query).all()
        if not rows:
            return
        for row in rows:
            yield row_to_record(row)
        after = int(rows[-1].seq)
