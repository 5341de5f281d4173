"""Tests for tests/support/postgres.py against a real PostgreSQL server (no mocks).

The helper is what every PostgreSQL-backed test stands on, so it gets its own checks: it must
really serve SQL, be reachable on loopback only, and leave no process behind.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import struct
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.support.postgres import PostgresServer, find_postgres_bindir, start_postgres

pytestmark = pytest.mark.postgres

TCP_LISTEN = "0A"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    pg = start_postgres(tmp_path_factory.mktemp("pg"))
    yield pg
    pg.stop()


def _processes_mentioning(data_dir: Path) -> list[tuple[int, str]]:
    """(pid, reason) of every process whose command line or working directory is the cluster's.

    The postmaster has ``-D <data_dir>`` on its command line; its children rename themselves
    ("postgres: checkpointer") but all run with the data directory as working directory.
    """
    target = str(data_dir.resolve())
    found: list[tuple[int, str]] = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if target in cmdline:
            found.append((int(proc.name), f"cmdline: {cmdline.strip()}"))
            continue
        try:
            # A cluster in a scratch dir removed by stop() shows up as "<dir> (deleted)".
            if os.readlink(proc / "cwd") in (target, f"{target} (deleted)"):
                found.append((int(proc.name), f"cwd: {cmdline.strip()}"))
        except OSError:
            continue
    return found


def _listening_addresses(port: int) -> list[str]:
    """Local addresses with a TCP socket in LISTEN state on ``port``, from /proc/net/tcp{,6}."""
    addresses: list[str] = []
    for table, family in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 6)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state = fields[1], fields[3]
            addr_hex, port_hex = local.split(":")
            if state != TCP_LISTEN or int(port_hex, 16) != port:
                continue
            if family == 4:
                # The kernel prints the address as a host-order 32-bit word.
                addresses.append(socket.inet_ntoa(struct.pack("=I", int(addr_hex, 16))))
            else:
                addresses.append(f"ipv6:{addr_hex}")
    return addresses


def _non_loopback_ipv4() -> str | None:
    """Some local non-loopback IPv4 address, found without sending any packet."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: only selects a route/source address
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def test_sql_roundtrip_through_sqlalchemy(server: PostgresServer) -> None:
    assert server.uri == f"postgresql://postgres@127.0.0.1:{server.port}/mlflow"
    engine = sa.create_engine(server.uri)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE roundtrip (id serial PRIMARY KEY, name text)"))
            conn.execute(
                sa.text("INSERT INTO roundtrip (name) VALUES (:a), (:b)"),
                {"a": "alpha", "b": "bêta ✓"},
            )
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT name FROM roundtrip ORDER BY id")).scalars().all()
            version = conn.execute(sa.text("SHOW server_version")).scalar_one()
            encoding = conn.execute(sa.text("SHOW server_encoding")).scalar_one()
    finally:
        engine.dispose()
    assert rows == ["alpha", "bêta ✓"]
    assert encoding == "UTF8"
    assert version


def test_listens_on_loopback_only(server: PostgresServer) -> None:
    engine = sa.create_engine(server.uri)
    try:
        with engine.connect() as conn:
            listen = conn.execute(sa.text("SHOW listen_addresses")).scalar_one()
            fsync = conn.execute(sa.text("SHOW fsync")).scalar_one()
    finally:
        engine.dispose()
    assert listen == "127.0.0.1"
    assert fsync == "off"

    assert _listening_addresses(server.port) == ["127.0.0.1"]

    other = _non_loopback_ipv4()
    if other is not None:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((other, server.port), timeout=2).close()


def test_unix_socket_is_private_to_the_cluster(server: PostgresServer) -> None:
    sockets = list(server.socket_dir.glob(".s.PGSQL.*"))
    assert server.socket_dir / f".s.PGSQL.{server.port}" in sockets
    assert stat.S_IMODE(server.socket_dir.stat().st_mode) == 0o700


def test_make_database_creates_a_separate_database(server: PostgresServer) -> None:
    uri = server.make_database("scratch_one")
    assert uri == f"postgresql://postgres@127.0.0.1:{server.port}/scratch_one"

    engine = sa.create_engine(uri)
    try:
        with engine.begin() as conn:
            assert conn.execute(sa.text("SELECT current_database()")).scalar_one() == "scratch_one"
            conn.execute(sa.text("CREATE TABLE only_here (x int)"))
    finally:
        engine.dispose()

    main = sa.create_engine(server.uri)
    try:
        assert "only_here" not in sa.inspect(main).get_table_names()
    finally:
        main.dispose()

    with pytest.raises(ValueError, match="unsafe database name"):
        server.make_database('x"; DROP DATABASE mlflow; --')


def test_stop_leaves_no_process_behind(tmp_path: Path) -> None:
    pg = start_postgres(tmp_path / "pg")
    pid = pg.pid
    data_dir = pg.data_dir
    assert pid is not None
    assert _processes_mentioning(data_dir), "sanity: the running cluster must be visible"

    # An open session means a live backend process that must go too.
    engine = sa.create_engine(pg.uri)
    conn = engine.connect()
    try:
        conn.execute(sa.text("SELECT 1"))
        pg.stop()
    finally:
        conn.invalidate()
        engine.dispose()

    assert _processes_mentioning(data_dir) == []
    assert not Path(f"/proc/{pid}").exists()
    assert pg.pid is None
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", pg.port), timeout=2).close()
    pg.stop()  # idempotent


def test_cluster_lives_in_base_dir_when_reachable() -> None:
    # A directory every account can traverse, unlike pytest's 0700 tmp root when run as root.
    parent = Path(tempfile.mkdtemp(prefix="pg-support-test-"))
    try:
        parent.chmod(0o711)
        pg = start_postgres(parent / "pg")
        try:
            assert pg.data_dir == (parent / "pg" / "data").resolve()
            assert pg.socket_dir == (parent / "pg" / "sock").resolve()
            assert (pg.data_dir / "PG_VERSION").is_file()
        finally:
            pg.stop()
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def test_concurrent_servers_get_distinct_ports(tmp_path: Path) -> None:
    servers: list[PostgresServer] = []
    errors: list[BaseException] = []

    def start(name: str) -> None:
        try:
            servers.append(start_postgres(tmp_path / name))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(f"pg{i}",)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    try:
        assert not errors, errors
        assert len({s.port for s in servers}) == 3
        assert len({s.data_dir for s in servers}) == 3
        for s in servers:
            engine = sa.create_engine(s.uri)
            try:
                with engine.connect() as conn:
                    assert conn.execute(sa.text("SELECT inet_server_port()")).scalar_one() == (
                        s.port
                    )
            finally:
                engine.dispose()
    finally:
        for s in servers:
            s.stop()
    for s in servers:
        assert _processes_mentioning(s.data_dir) == []


def _fake_bindir(directory: Path, names: tuple[str, ...]) -> Path:
    directory.mkdir()
    for name in names:
        exe = directory / name
        exe.write_text("#!/bin/sh\nexit 0\n")
        exe.chmod(0o755)
    return directory


def test_find_postgres_bindir_honours_pg_bindir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    complete = _fake_bindir(tmp_path / "complete", ("initdb", "pg_ctl", "postgres"))
    monkeypatch.setenv("PG_BINDIR", str(complete))
    assert find_postgres_bindir() == complete

    # A wrong override must fail loudly, not silently fall back to another installation.
    incomplete = _fake_bindir(tmp_path / "incomplete", ("initdb", "pg_ctl"))
    monkeypatch.setenv("PG_BINDIR", str(incomplete))
    with pytest.raises(RuntimeError, match="PG_BINDIR"):
        find_postgres_bindir()
