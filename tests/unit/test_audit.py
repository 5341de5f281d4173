"""The audit trail on real SQLite and PostgreSQL: chain, concurrency, tampering, losses, access.

Writers run as threads and as separate processes against one database (and one JSON lines
file), as uvicorn workers and replicas do; tampering is done with plain SQL and plain file
edits, as an insider would.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import multiprocessing
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import Engine, inspect, text, update

from mlflow_secure.audit import api as audit_api
from mlflow_secure.audit import store
from mlflow_secure.audit.events import (
    EVENT_FIELDS,
    GAP,
    GENESIS_HASH,
    HASHED_FIELDS,
    AuditEvent,
    client_ip,
    compute_hash,
    format_time,
    parse_time,
    parse_trusted_proxies,
    scrub_path,
    seal,
)
from mlflow_secure.audit.log import AuditLog, open_audit_log
from mlflow_secure.audit.verify import verify_database, verify_file
from mlflow_secure.cli import audit as audit_cli
from mlflow_secure.identity import api_keys
from mlflow_secure.identity import store as identity_store

# ---------------------------------------------------------------- fixtures and helpers


def _migrated(uri: str) -> Engine:
    engine = store.open_engine(uri)
    with identity_store.migration_lock(engine):
        store.migrate(engine)
    return engine


@pytest.fixture(params=["sqlite", "postgres"])
def db_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'audit.db'}"
    server = request.getfixturevalue("postgres_server")
    return server.make_database(f"audit_{abs(hash(request.node.nodeid)) % 10**9}")


@pytest.fixture
def engine(db_uri: str) -> Iterator[Engine]:
    engine = _migrated(db_uri)
    yield engine
    engine.dispose()


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    engine = _migrated(f"sqlite:///{tmp_path / 'audit.db'}")
    yield engine
    engine.dispose()


def request_event(n: int = 0, **overrides: Any) -> AuditEvent:
    fields: dict[str, Any] = {
        "method": "GET",
        "path": "/api/2.0/mlflow/runs/get",
        "query": f"run_id=r{n}",
        "decision": "allow",
        "status": 200,
        "client_ip": "10.1.2.3",
        "user_agent": "mlflow-python-client/3.1",
        "subject": "alice",
        "subject_kind": "user",
        "auth": "api_key",
        "key_id": "AbCdEfGh1234",
        "endpoint": "mlflow.runs.get",
        "resource": {"type": "run", "id": f"r{n}", "experiment_id": "1", "project": "fraud"},
        "reasons": (),
        "decision_id": f"d{n}",
        "policy_revision": "rev-1",
        "latency_ms": 1.5 + n,
    }
    fields.update(overrides)
    return AuditEvent.for_request(**fields)


def append(engine: Engine, count: int, **overrides: Any) -> list[dict[str, Any]]:
    return store.append_events(engine, [request_event(n, **overrides) for n in range(count)])


def all_records(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        return list(store.iter_all(connection))


def exported_lines(engine: Engine) -> list[str]:
    with engine.connect() as connection:
        return [
            json.dumps(r, sort_keys=True, separators=(",", ":")) for r in store.iter_all(connection)
        ]


def tamper(engine: Engine, sql: str, **params: Any) -> None:
    with engine.begin() as connection:
        connection.execute(text(sql), params)


def wait_until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


# ---------------------------------------------------------------- schema


def test_migration_creates_prefixed_tables_with_own_version_table(engine: Engine) -> None:
    with identity_store.migration_lock(engine):
        store.migrate(engine)  # idempotent
        identity_store.migrate(engine)  # coexists with the identity store's migrations
    names = set(inspect(engine).get_table_names())
    assert {"mls_audit_events", "mls_audit_head", "mls_audit_alembic_version"} <= names
    assert "mls_alembic_version" in names
    with engine.connect() as connection:
        assert store.read_head(connection) == (0, GENESIS_HASH)
        version = connection.execute(text("SELECT version_num FROM mls_audit_alembic_version"))
        assert version.scalar() == "0002"


def test_open_audit_log_migrates_once_and_writes(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'secure.db'}"
    logs = [open_audit_log(uri, batch_size=4) for _ in range(2)]  # two workers starting
    for n, log in enumerate(logs):
        log.record(request_event(n))
        log.close()
    assert verify_database(logs[0].engine).checked == 2
    for log in logs:
        log.engine.dispose()


# ---------------------------------------------------------------- hashing


def test_hash_is_sha256_of_canonical_json_of_the_documented_fields() -> None:
    record = seal(request_event(1), 7, "ab" * 32)
    assert set(record) == {*HASHED_FIELDS, "hash"}
    assert ("v", "seq", "prev_hash", *EVENT_FIELDS) == HASHED_FIELDS
    hashed = {name: value for name, value in record.items() if name != "hash"}
    canonical = json.dumps(hashed, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert record["hash"] == hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    assert record["seq"] == 7
    assert record["prev_hash"] == "ab" * 32
    assert record["v"] == 1
    assert compute_hash({**record, "subject": "mallory"}) != record["hash"]


def test_appending_chains_from_genesis_with_dense_seq(engine: Engine) -> None:
    first = append(engine, 3)
    second = append(engine, 2)
    records = all_records(engine)
    assert records == first + second  # what was sealed is exactly what is stored
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5]
    assert records[0]["prev_hash"] == GENESIS_HASH
    assert all(b["prev_hash"] == a["hash"] for a, b in itertools.pairwise(records))
    with engine.connect() as connection:
        assert store.read_head(connection) == (5, records[-1]["hash"])
    result = verify_database(engine)
    assert result.ok
    assert result.checked == 5
    assert (result.first_seq, result.last_seq) == (1, 5)


def test_unicode_and_odd_values_round_trip_through_the_database(engine: Engine) -> None:
    store.append_events(
        engine,
        [
            request_event(
                path="/api/2.0/mlflow/artifacts/get/模型/\udcff",
                reasons=["projet « fraude » refusé", "ok"],
                latency_ms=0.1 + 0.2,
                resource={"type": "experiment", "id": 12, "classification": "restricted"},
            )
        ],
    )
    record = all_records(engine)[0]
    assert record["path"].endswith("模型/?")  # a lone surrogate cannot be stored as UTF-8
    assert record["resource_id"] == "12"
    assert verify_database(engine).ok


# ---------------------------------------------------------------- scrubbing and secrets


def test_scrub_path_keeps_the_path_and_only_parameter_names() -> None:
    assert scrub_path("/api/2.0/mlflow/runs/search", b"max_results=5&filter=a%3D1&filter=b") == (
        "/api/2.0/mlflow/runs/search",
        ("filter", "max_results"),
    )
    _path, names = scrub_path("/x", "api_key=s3cr3t&bare-value&page%20token=1&x=1;y=2")
    assert names == ("api_key", "x", "y")  # a bare value and an odd name are not names
    key = api_keys.generate()[0]
    assert scrub_path("/x", f"{key}=1&eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.sig=2")[1] == ()
    assert scrub_path(f"/api/2.0/mlflow/runs/get/{key}", b"")[0] == (
        "/api/2.0/mlflow/runs/get/mlsk_[REDACTED]"
    )


def test_no_secret_from_the_request_reaches_any_copy_of_the_event(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    key = api_keys.generate()[0]
    key_id = api_keys.parse(key).key_id
    secret_part = key[len(api_keys.PREFIX) + len(key_id) :]
    jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
    password = "correct horse battery staple"
    headers = [
        (b"authorization", f"Bearer {key}".encode()),
        (b"cookie", f"session={jwt}".encode()),
        (b"x-api-key", key.encode()),
        (b"user-agent", f"curl/8.0 {key} {jwt} ".encode() + b"x" * 400),
        (b"x-forwarded-for", b"203.0.113.9"),
    ]
    user_agent = dict(headers)[b"user-agent"]
    event = AuditEvent.for_request(
        method="GET",
        path=f"/api/2.0/mlflow/experiments/get/{jwt}",
        query=f"api_key={key}&token={jwt}&password={password}&experiment_id=1".encode(),
        decision="unauthenticated",
        status=401,
        client_ip=client_ip("10.0.0.1", headers, ["10.0.0.0/8"]),
        user_agent=user_agent,
        key_id=key_id,
        reasons=[f"bad key {key}"],
        resource={"type": "experiment", "id": "1", "tags": {"secret": password}},
    )
    log_file = tmp_path / "audit.jsonl"
    log = AuditLog(sqlite_engine, log_file=log_file)
    log.record(event)
    log.close()

    copies = {
        "event": json.dumps(event.to_record(), ensure_ascii=False),
        "database": json.dumps(all_records(sqlite_engine), ensure_ascii=False),
        "file": log_file.read_text(encoding="utf-8"),
    }
    for where, content in copies.items():
        for secret in (key, secret_part, jwt, "c2lnbmF0dXJl", password, "Bearer"):
            assert secret not in content, f"{secret!r} leaked into the {where}"
    assert event.query_params == ("api_key", "experiment_id", "password", "token")
    assert event.client_ip == "203.0.113.9"
    assert event.user_agent is not None
    assert len(event.user_agent) == 256
    assert event.user_agent.startswith("curl/8.0 mlsk_[REDACTED] [REDACTED] ")
    assert event.resource_context == {}  # tags are never kept
    assert event.key_id == key_id  # the public key id is kept; the key never is


# ---------------------------------------------------------------- client address


TRUSTED = ["10.0.0.0/8", "192.0.2.1", "2001:db8::/32"]


@pytest.mark.parametrize(
    ("peer", "headers", "trusted", "expected"),
    [
        # Nobody trusted: forwarding headers are ignored, whoever sends them.
        ("198.51.100.7", {"X-Forwarded-For": "1.2.3.4"}, [], "198.51.100.7"),
        # An untrusted peer cannot claim an address by sending the header itself.
        ("198.51.100.7", {"X-Forwarded-For": "10.0.0.5"}, TRUSTED, "198.51.100.7"),
        ("198.51.100.7", {"Forwarded": "for=1.2.3.4"}, TRUSTED, "198.51.100.7"),
        # Behind a trusted proxy: the rightmost untrusted hop, not a spoofed left entry.
        ("10.0.0.1", {"X-Forwarded-For": "6.6.6.6, 203.0.113.5"}, TRUSTED, "203.0.113.5"),
        ("10.0.0.1", {"X-Forwarded-For": "6.6.6.6, 203.0.113.5, 10.9.9.9"}, TRUSTED, "203.0.113.5"),
        ("192.0.2.1", {"x-forwarded-for": "203.0.113.5:4711"}, TRUSTED, "203.0.113.5"),
        # Only internal hops: the leftmost one is the client.
        ("10.0.0.1", {"X-Forwarded-For": "10.3.3.3, 10.2.2.2"}, TRUSTED, "10.3.3.3"),
        # A trusted proxy that forwarded nothing: the proxy is all we know.
        ("10.0.0.1", {}, TRUSTED, "10.0.0.1"),
        # Garbage stops the walk at the last trusted hop; client text is never returned.
        ("10.0.0.1", {"X-Forwarded-For": "203.0.113.5, <script>"}, TRUSTED, "10.0.0.1"),
        ("10.0.0.1", {"X-Forwarded-For": "unknown, 10.2.2.2"}, TRUSTED, "10.2.2.2"),
        # RFC 7239 Forwarded, with quoted IPv6 and ports; obfuscated identifiers stop the walk.
        (
            "10.0.0.1",
            {"Forwarded": 'for=192.0.2.60;proto=http, for="[2001:db8:cafe::17]:4711"'},
            ["10.0.0.0/8"],
            "2001:db8:cafe::17",
        ),
        ("10.0.0.1", {"Forwarded": "for=6.6.6.6, For=198.51.100.2;by=x"}, TRUSTED, "198.51.100.2"),
        ("10.0.0.1", {"Forwarded": "for=_hidden"}, TRUSTED, "10.0.0.1"),
        # X-Forwarded-For wins over Forwarded when both are present.
        (
            "10.0.0.1",
            {"Forwarded": "for=6.6.6.6", "X-Forwarded-For": "203.0.113.5"},
            TRUSTED,
            "203.0.113.5",
        ),
        # IPv4-mapped IPv6 peers match IPv4 ranges; IPv6 peers match IPv6 ranges.
        ("::ffff:10.0.0.1", {"X-Forwarded-For": "203.0.113.5"}, TRUSTED, "203.0.113.5"),
        ("2001:db8::1", {"X-Forwarded-For": "2001:db9::5"}, TRUSTED, "2001:db9::5"),
        # No usable peer address (a unix socket): nothing can be trusted.
        ("", {"X-Forwarded-For": "1.2.3.4"}, TRUSTED, ""),
    ],
)
def test_client_ip(peer: str, headers: dict[str, str], trusted: list[str], expected: str) -> None:
    assert client_ip(peer, headers, trusted) == expected


def test_client_ip_from_a_wsgi_environ() -> None:
    environ = {"REMOTE_ADDR": "10.0.0.1", "HTTP_X_FORWARDED_FOR": "203.0.113.5"}
    headers = {
        "x-forwarded-for": environ.get("HTTP_X_FORWARDED_FOR"),
        "forwarded": environ.get("HTTP_FORWARDED"),  # absent: None is skipped
    }
    assert client_ip(environ["REMOTE_ADDR"], headers, TRUSTED) == "203.0.113.5"
    assert client_ip("10.0.0.1", {"x-forwarded-for": None}, TRUSTED) == "10.0.0.1"


def test_client_ip_reads_repeated_raw_asgi_headers_in_order() -> None:
    headers = [
        (b"x-forwarded-for", b"6.6.6.6"),
        (b"host", b"mlflow"),
        (b"x-forwarded-for", b"203.0.113.5, 10.1.1.1"),
    ]
    networks = parse_trusted_proxies("10.0.0.0/8, 192.0.2.1")
    assert client_ip("10.0.0.2", headers, networks) == "203.0.113.5"


def test_trusted_proxies_setting_is_parsed_strictly() -> None:
    assert [str(n) for n in parse_trusted_proxies(" 10.0.0.0/8 ,192.0.2.1,,::1 ")] == [
        "10.0.0.0/8",
        "192.0.2.1/32",
        "::1/128",
    ]
    assert parse_trusted_proxies("") == ()
    with pytest.raises(ValueError, match="not an IP address"):
        parse_trusted_proxies("10.0.0.0/8, proxy.internal")


# ---------------------------------------------------------------- the writer


def test_audit_log_writes_db_and_jsonl_file_in_chain_order(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    log_file = tmp_path / "audit.jsonl"
    log = AuditLog(sqlite_engine, log_file=log_file, batch_size=7)
    for n in range(50):
        log.record(request_event(n))
    assert log.flush()
    log.close()
    assert stat.S_IMODE(log_file.stat().st_mode) == 0o600
    lines = log_file.read_text(encoding="utf-8").splitlines()
    assert lines == exported_lines(sqlite_engine)
    assert [json.loads(line)["decision_id"] for line in lines] == [f"d{n}" for n in range(50)]
    assert verify_file(log_file).ok
    assert log.stats().written == 50
    assert log.stats().lost == 0


def test_concurrent_threads_and_writers_form_one_dense_total_order(engine: Engine) -> None:
    logs = [AuditLog(engine, batch_size=16), AuditLog(engine, batch_size=5)]
    threads_per_log, per_thread = 4, 60

    def produce(log: AuditLog, name: str) -> None:
        for n in range(per_thread):
            log.record(request_event(n, subject=name))

    threads = [
        threading.Thread(target=produce, args=(log, f"w{i}-t{t}"))
        for i, log in enumerate(logs)
        for t in range(threads_per_log)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for log in logs:
        log.close()

    records = all_records(engine)
    total = len(logs) * threads_per_log * per_thread
    assert [r["seq"] for r in records] == list(range(1, total + 1))
    for thread_name in {r["subject"] for r in records}:  # each producer's order is kept
        ids = [r["decision_id"] for r in records if r["subject"] == thread_name]
        assert ids == [f"d{n}" for n in range(per_thread)]
    assert verify_database(engine).ok


def test_verify_sees_a_consistent_snapshot_while_writers_append(engine: Engine) -> None:
    log = AuditLog(engine, batch_size=3, flush_interval=0.001)
    stop = threading.Event()

    def produce() -> None:
        n = 0
        while not stop.is_set():
            log.record(request_event(n))
            n += 1
            time.sleep(0.0005)

    producer = threading.Thread(target=produce)
    producer.start()
    try:
        wait_until(lambda: log.stats().written > 20)
        results = [verify_database(engine) for _ in range(10)]
    finally:
        stop.set()
        producer.join()
        log.close()
    assert all(result.ok for result in results), [r.describe() for r in results]
    assert results[-1].checked > results[0].checked > 0


def _child_writer(uri: str, log_file: str, name: str, threads: int, per_thread: int) -> None:
    """Runs in a separate process: a second worker with its own AuditLog and engine."""
    engine = store.open_engine(uri)
    log = AuditLog(engine, log_file=log_file, batch_size=8)

    def produce(thread: int) -> None:
        for n in range(per_thread):
            log.record(request_event(n, subject=f"{name}-{thread}"))

    workers = [threading.Thread(target=produce, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    log.close()
    engine.dispose()


def test_writer_processes_share_one_chain_and_one_file(
    engine: Engine, db_uri: str, tmp_path: Path
) -> None:
    log_file = tmp_path / "audit.jsonl"
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_child_writer, args=(db_uri, str(log_file), f"p{i}", 3, 80))
        for i in range(2)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
        assert process.exitcode == 0

    records = all_records(engine)
    assert [r["seq"] for r in records] == list(range(1, 2 * 3 * 80 + 1))
    assert {r["subject"] for r in records} == {f"p{i}-{t}" for i in range(2) for t in range(3)}
    for subject in {r["subject"] for r in records}:
        ids = [r["decision_id"] for r in records if r["subject"] == subject]
        assert ids == [f"d{n}" for n in range(80)]
    assert verify_database(engine).ok
    # Both processes appended to the same file, and its order is the chain's order.
    assert log_file.read_text(encoding="utf-8").splitlines() == exported_lines(engine)
    assert verify_file(log_file).ok


def _hold_sqlite_write_lock(engine: Engine) -> sqlite3.Connection:
    holder = sqlite3.connect(engine.url.database, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    return holder


def test_full_queue_drops_without_blocking_and_leaves_a_gap_marker(
    sqlite_engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="mlflow_secure.audit")
    holder = _hold_sqlite_write_lock(sqlite_engine)  # the writer now waits on the database
    log = AuditLog(sqlite_engine, max_queue=5, batch_size=2, flush_interval=0.01)
    try:
        started = time.perf_counter()
        for n in range(40):
            log.record(request_event(n))  # never raises, never waits
        assert time.perf_counter() - started < 0.5
        wait_until(lambda: log.stats().lost > 0)
    finally:
        holder.execute("COMMIT")
        holder.close()
    assert log.flush()
    log.close()

    records = all_records(sqlite_engine)
    stats = log.stats()
    gaps = [r for r in records if r["event"] == GAP]
    requests = [r for r in records if r["event"] == "request"]
    assert len(gaps) >= 1
    assert sum(g["dropped"] for g in gaps) == stats.lost >= 40 - 5 - 2
    assert len(requests) + stats.lost == 40 == stats.recorded + stats.lost
    assert "queue full" in gaps[0]["reasons"][0]
    warnings = [r.getMessage() for r in caplog.records if "queue full" in r.getMessage()]
    assert len(warnings) == 1  # counted on every drop, logged at most every few seconds
    assert gaps[0]["decision"] is None
    assert gaps[0]["subject"] is None
    assert verify_database(sqlite_engine).ok  # a gap is recorded, not hidden


def test_database_down_then_up_loses_nothing_silently(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'later' / 'audit.db'}"  # the directory does not exist yet
    engine = store.open_engine(uri)
    log = AuditLog(engine, max_queue=4, batch_size=3, flush_interval=0.01, retry_max_delay=0.05)
    for n in range(20):
        log.record(request_event(n))
    wait_until(lambda: log.stats().lost > 0)
    assert log.stats().written == 0

    (tmp_path / "later").mkdir()  # the database comes back
    _migrated(uri).dispose()
    assert log.flush()
    for n in range(20, 23):  # and later events still chain on
        log.record(request_event(n))
    log.close()

    records = all_records(engine)
    stats = log.stats()
    written = [r for r in records if r["event"] == "request"]
    gaps = [r for r in records if r["event"] == GAP]
    assert len(written) + sum(g["dropped"] for g in gaps) == 23
    assert stats.lost == sum(g["dropped"] for g in gaps) > 0
    assert [r["decision_id"] for r in written][-3:] == ["d20", "d21", "d22"]
    assert verify_database(engine).ok
    engine.dispose()


def test_close_during_an_outage_returns_and_counts_the_loss(tmp_path: Path) -> None:
    engine = store.open_engine(f"sqlite:///{tmp_path / 'missing' / 'audit.db'}")
    log = AuditLog(engine, retry_max_delay=0.05)
    for n in range(3):
        log.record(request_event(n))
    started = time.monotonic()
    log.close(timeout=0.3)
    assert time.monotonic() - started < 6
    assert log.stats().lost == 3
    log.record(request_event(4))  # after close: counted, not raised
    assert log.stats().lost == 4


def test_rejected_batch_becomes_a_gap_marker(sqlite_engine: Engine, monkeypatch) -> None:
    real_append = store.append_events
    calls = {"n": 0}

    def reject_first(engine: Engine, events: list[AuditEvent]) -> list[dict[str, Any]]:
        calls["n"] += 1
        if calls["n"] <= 2:  # the second batch holds the first one's gap marker
            raise ValueError("a value the database refuses")
        return real_append(engine, events)

    monkeypatch.setattr(store, "append_events", reject_first)
    log = AuditLog(sqlite_engine, batch_size=100, flush_interval=0.05, retry_max_delay=0.01)
    for n in range(3):
        log.record(request_event(n))
    assert log.flush()
    log.record(request_event(3))
    log.close()
    records = all_records(sqlite_engine)
    gaps = [r for r in records if r["event"] == GAP]
    assert gaps
    assert gaps[0]["dropped"] + len(records) - len(gaps) == 4
    assert "rejected by the database" in gaps[0]["reasons"][0]
    assert log.stats().lost == gaps[0]["dropped"]
    assert verify_database(sqlite_engine).ok


def test_file_problems_never_stop_the_database_copy(sqlite_engine: Engine, tmp_path: Path):
    log = AuditLog(sqlite_engine, log_file=tmp_path)  # a directory: cannot be opened
    for n in range(3):
        log.record(request_event(n))
    log.close()
    assert len(all_records(sqlite_engine)) == 3
    assert log.stats().file_failures >= 1


def test_a_rotated_file_is_reopened_and_links_to_the_old_one(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    log_file, rotated = tmp_path / "audit.jsonl", tmp_path / "audit.jsonl.1"
    log = AuditLog(sqlite_engine, log_file=log_file)
    for n in range(3):
        log.record(request_event(n))
    assert log.flush()
    log_file.rename(rotated)
    for n in range(3, 5):
        log.record(request_event(n))
    log.close()
    old = [json.loads(line) for line in rotated.read_text().splitlines()]
    new = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert [r["seq"] for r in old + new] == [1, 2, 3, 4, 5]
    assert verify_file(rotated).ok
    assert verify_file(log_file, partial=True).ok
    assert new[0]["prev_hash"] == old[-1]["hash"]


# ---------------------------------------------------------------- tamper detection


@pytest.fixture
def chain(engine: Engine) -> Engine:
    append(engine, 10)
    assert verify_database(engine).ok
    return engine


def test_an_edited_event_is_named_by_seq(chain: Engine) -> None:
    tamper(chain, "UPDATE mls_audit_events SET subject = 'mallory' WHERE seq = 4")
    result = verify_database(chain)
    assert not result.ok
    assert result.seq == 4
    assert result.problem == "edited"
    assert "seq 4" in result.describe()


def test_an_edited_number_or_list_is_detected(chain: Engine) -> None:
    tamper(chain, "UPDATE mls_audit_events SET status = 403 WHERE seq = 2")
    assert (verify_database(chain).seq, verify_database(chain).problem) == (2, "edited")


def test_a_deleted_event_is_named_by_seq(chain: Engine) -> None:
    tamper(chain, "DELETE FROM mls_audit_events WHERE seq IN (6, 7)")
    result = verify_database(chain)
    assert not result.ok
    assert result.problem == "deleted"
    assert result.seq == 6
    assert "6..7" in result.message


def test_events_deleted_from_the_end_are_detected_by_the_head(chain: Engine) -> None:
    tamper(chain, "DELETE FROM mls_audit_events WHERE seq >= 9")
    result = verify_database(chain)
    assert not result.ok
    assert result.problem == "deleted"
    assert result.seq == 9


def test_a_deleted_then_renumbered_chain_is_detected(chain: Engine) -> None:
    tamper(chain, "DELETE FROM mls_audit_events WHERE seq = 5")
    for seq in range(6, 11):
        tamper(
            chain, "UPDATE mls_audit_events SET seq = :new WHERE seq = :old", new=seq - 1, old=seq
        )
    tamper(chain, "UPDATE mls_audit_head SET seq = 9")
    result = verify_database(chain)
    assert not result.ok
    assert result.seq == 5


def test_swapped_rows_are_reported_as_reordered(chain: Engine) -> None:
    rows = {r["seq"]: r for r in all_records(chain) if r["seq"] in (3, 4)}
    with chain.begin() as connection:
        for seq, other in ((3, 4), (4, 3)):
            content = {name: value for name, value in rows[other].items() if name != "seq"}
            connection.execute(
                update(store.EVENTS).where(store.EVENTS.c.seq == seq).values(**content)
            )
    result = verify_database(chain)
    assert not result.ok
    assert result.problem == "reordered"
    assert result.seq == 3
    assert "content of event seq 4" in result.message


def test_an_event_forged_behind_the_writer_is_detected(chain: Engine) -> None:
    forged = seal(request_event(99, subject="mallory"), 11, all_records(chain)[-1]["hash"])
    with chain.begin() as connection:  # around append_events: the head is not moved
        connection.execute(store.EVENTS.insert(), [forged])
    result = verify_database(chain)
    assert not result.ok
    assert result.problem == "head"
    assert result.seq == 11


@pytest.fixture
def jsonl(sqlite_engine: Engine, tmp_path: Path) -> Path:
    log_file = tmp_path / "audit.jsonl"
    log = AuditLog(sqlite_engine, log_file=log_file)
    for n in range(8):
        log.record(request_event(n))
    log.close()
    assert verify_file(log_file).ok
    return log_file


def _edit_lines(path: Path, edit: Any) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join(edit(lines)) + "\n", encoding="utf-8")


def test_jsonl_edit_is_detected(jsonl: Path) -> None:
    def edit(lines: list[str]) -> list[str]:
        record = json.loads(lines[4])
        record["decision"] = "deny"
        lines[4] = json.dumps(record)
        return lines

    _edit_lines(jsonl, edit)
    result = verify_file(jsonl)
    assert (result.ok, result.problem, result.seq) == (False, "edited", 5)
    assert "line 5" in result.message


def test_jsonl_deletion_reorder_and_additions_are_detected(jsonl: Path) -> None:
    original = jsonl.read_text(encoding="utf-8")

    _edit_lines(jsonl, lambda lines: lines[:2] + lines[3:])
    result = verify_file(jsonl)
    assert (result.problem, result.seq) == ("deleted", 3)

    jsonl.write_text(original, encoding="utf-8")
    _edit_lines(jsonl, lambda lines: [*lines[:2], lines[3], lines[2], *lines[4:]])
    result = verify_file(jsonl)
    assert (result.problem, result.seq) == ("reordered", 3)

    jsonl.write_text(original, encoding="utf-8")
    _edit_lines(jsonl, lambda lines: [*lines[:5], lines[1], *lines[5:]])
    assert verify_file(jsonl).problem == "reordered"

    jsonl.write_text(original, encoding="utf-8")
    _edit_lines(jsonl, lambda lines: [lines[0][:-1] + ',"note":"x"}', *lines[1:]])
    assert (verify_file(jsonl).problem, verify_file(jsonl).seq) == ("malformed", 1)

    jsonl.write_text(original, encoding="utf-8")
    _edit_lines(jsonl, lambda lines: lines[1:])  # the start is gone
    assert (verify_file(jsonl).problem, verify_file(jsonl).seq) == ("deleted", 1)
    assert verify_file(jsonl, partial=True).ok  # unless the file is known to be partial

    jsonl.write_text(original + "not json\n", encoding="utf-8")
    assert verify_file(jsonl).problem == "malformed"


# ---------------------------------------------------------------- querying


@pytest.fixture
def varied(engine: Engine) -> Engine:
    events = []
    for n in range(12):
        events.append(
            request_event(
                n,
                subject=["alice", "bob", None][n % 3],
                decision=["allow", "deny", "unauthenticated", "unavailable"][n % 4],
                resource={"type": "run" if n % 2 else "experiment", "id": f"id{n % 4}"},
                started=1_700_000_000 + n * 60,
            )
        )
    store.append_events(engine, events)
    return engine


def _query(engine: Engine, **filters: Any) -> list[int]:
    with engine.connect() as connection:
        records, _ = store.query_events(connection, max_results=1000, **filters)
    return [r["seq"] for r in records]


def test_query_filters(varied: Engine) -> None:
    assert _query(varied) == list(range(1, 13))
    assert _query(varied, subject="alice") == [1, 4, 7, 10]
    assert _query(varied, decision="deny") == [2, 6, 10]
    assert _query(varied, resource="id1") == [2, 6, 10]
    assert _query(varied, resource="run:id1") == [2, 6, 10]
    assert _query(varied, resource="experiment:id1") == []
    start = format_time(1_700_000_000 + 3 * 60)
    assert _query(varied, since=start, until="2023-11-14T22:20:00Z") == [4, 5, 6, 7]
    assert _query(varied, subject="bob", decision="deny", resource="id1") == [2]


def test_query_pages_by_seq(varied: Engine) -> None:
    seen, token = [], None
    with varied.connect() as connection:
        while True:
            page, token = store.query_events(connection, max_results=5, after_seq=token)
            seen += [r["seq"] for r in page]
            if token is None:
                break
        assert seen == list(range(1, 13))
        with pytest.raises(ValueError, match="max_results"):
            store.query_events(connection, max_results=1001)


def test_export_iterates_the_contiguous_range_of_a_period(varied: Engine) -> None:
    with varied.connect() as connection:
        assert len(list(store.iter_events(connection))) == 12
        window = [
            r["seq"]
            for r in store.iter_events(
                connection, since=parse_time("2023-11-14T22:16:00Z"), until="2023-11-14T22:19:30Z"
            )
        ]
        assert list(store.iter_events(connection, since="2030-01-01")) == []
    assert window == [4, 5, 6, 7]


# ---------------------------------------------------------------- HTTP API


@pytest.fixture
def client(varied: Engine) -> Any:
    app = Flask(__name__)
    audit_api.register_audit_api(
        app, identity_store.session_factory(varied), lambda path: "/prefix" + path
    )
    return app.test_client()


URL = "/prefix/api/2.0/mlflow-secure/audit/events"


def test_api_filters_and_pages(client: Any) -> None:
    response = client.get(URL, query_string={"subject": "bob", "max_results": "2"})
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert [e["seq"] for e in body["events"]] == [2, 5]
    assert body["next_page_token"] == "5"
    body = client.get(URL, query_string={"subject": "bob", "page_token": "5"}).get_json()
    assert [e["seq"] for e in body["events"]] == [8, 11]
    assert body["next_page_token"] is None
    event = body["events"][0]
    assert set(event) == {*HASHED_FIELDS, "hash"}
    assert compute_hash(event) == event["hash"]

    body = client.get(
        URL,
        query_string={
            "resource": "run:id1",
            "decision": "deny",
            "since": "2023-11-14T22:14:00+00:00",
            "until": "2023-11-14T23:00:00Z",
        },
    ).get_json()
    assert [e["seq"] for e in body["events"]] == [2, 6, 10]
    assert len(client.get(URL).get_json()["events"]) == 12  # default page is 100


@pytest.mark.parametrize(
    "query",
    [
        "decision=maybe",
        "max_results=0",
        "max_results=1001",
        "max_results=ten",
        "max_results=%C2%B2",
        "page_token=-1",
        "since=yesterday",
        "since=2024-02-01&until=2024-01-01",
        "subject=a&subject=b",
        "subjects=alice",
        "subject=",
        "resource=" + "x" * 300,
    ],
)
def test_api_rejects_bad_parameters(client: Any, query: str) -> None:
    response = client.get(f"{URL}?{query}")
    assert response.status_code == 400
    body = response.get_json()
    assert body["error_code"] == "INVALID_PARAMETER_VALUE"
    assert body["message"]


def test_api_answers_503_when_the_store_is_unavailable(tmp_path: Path) -> None:
    engine = store.open_engine(f"sqlite:///{tmp_path / 'empty.db'}")  # no audit tables
    app = Flask(__name__)
    audit_api.register_audit_api(app, identity_store.session_factory(engine))
    response = app.test_client().get("/api/2.0/mlflow-secure/audit/events")
    assert response.status_code == 503
    assert response.get_json()["error_code"] == "TEMPORARILY_UNAVAILABLE"


# ---------------------------------------------------------------- CLI


@pytest.fixture
def cli() -> Any:
    group = click.Group()
    audit_cli.register(group)
    runner = CliRunner()

    def run(*args: str, env: dict[str, str] | None = None) -> Any:
        return runner.invoke(group, ["audit", *args], env=env)

    return run


def test_cli_verify_database_and_tampering(cli: Any, chain: Engine, db_uri: str) -> None:
    result = cli("verify", "--database-uri", db_uri)
    assert result.exit_code == 0, result.output
    assert "intact: 10 events" in result.output
    result = cli("verify", env={"MLFLOW_SECURE_DATABASE_URI": db_uri})
    assert result.exit_code == 0, result.output

    with chain.begin() as connection:
        connection.execute(
            update(store.EVENTS).where(store.EVENTS.c.seq == 7).values(reasons=["forged"])
        )
    result = cli("verify", "--database-uri", db_uri)
    assert result.exit_code == 1
    assert "BROKEN at seq 7" in result.output


def test_cli_export_then_verify_the_file(cli: Any, varied: Engine, db_uri: str, tmp_path: Path):
    result = cli("export", "--database-uri", db_uri)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == exported_lines(varied)
    assert "exported 12 events" in result.stderr

    output = tmp_path / "export.jsonl"
    result = cli("export", "--database-uri", db_uri, "--output", str(output))
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(output.stat().st_mode) == 0o600
    assert cli("verify", "--file", str(output)).exit_code == 0

    window = tmp_path / "window.jsonl"
    args = ("--since", "2023-11-14T22:16:00Z", "--until", "2023-11-14T22:19:30Z")
    result = cli("export", "--database-uri", db_uri, *args, "--output", str(window))
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["seq"] for line in window.read_text().splitlines()] == [4, 5, 6, 7]
    assert cli("verify", "--file", str(window)).exit_code == 1  # does not start at seq 1
    result = cli("verify", "--file", str(window), "--partial")
    assert result.exit_code == 0
    assert "seq 4..7" in result.output

    window.write_text(window.read_text().replace('"deny"', '"allow"'))
    result = cli("verify", "--file", str(window), "--partial")
    assert result.exit_code == 1
    assert "seq 6" in result.output


def test_cli_needs_a_database(cli: Any, tmp_path: Path) -> None:
    result = cli("verify")
    assert result.exit_code != 0
    assert "MLFLOW_SECURE_DATABASE_URI" in result.output
    result = cli("export", "--database-uri", f"sqlite:///{tmp_path / 'nothing.db'}")
    assert result.exit_code != 0
    assert "no SQLite database" in result.output
    assert not (tmp_path / "nothing.db").exists()
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    result = cli("verify", "--database-uri", f"sqlite:///{empty}")
    assert result.exit_code != 0
    assert "no audit trail" in result.output
    result = cli("export", "--database-uri", f"sqlite:///{empty}", "--since", "soon")
    assert result.exit_code == 2
    assert "ISO-8601" in result.output
    result = cli("verify", "--database-uri", "sqlite://", "--file", __file__)
    assert result.exit_code == 2


def test_cli_verifies_a_file_without_a_database(cli: Any, jsonl: Path) -> None:
    result = cli("verify", "--file", str(jsonl))
    assert result.exit_code == 0
    assert "intact: 8 events" in result.output
    assert os.environ.get("MLFLOW_SECURE_DATABASE_URI") is None
