"""A real, throw-away PostgreSQL server for tests, reachable on loopback only.

MLflow's SQL store behaves differently on PostgreSQL than on SQLite (transactions, locking,
migrations, type coercion), so the tests that matter for a deployment run against the real
thing. Docker is not available everywhere the tests run, so instead of a container we use the
server binaries from the distribution package and start a private cluster per test session:

* the cluster lives in a directory the caller owns, so concurrent sessions never share state;
* it listens on 127.0.0.1 only, on a port picked at start time, with its unix socket inside
  the cluster directory, so it never collides with (or is reachable like) a system server;
* durability is switched off (``fsync=off`` and friends): the data is disposable and speed
  matters more than surviving a power cut;
* ``PostgresServer.stop()`` guarantees that no server process survives it.

PostgreSQL refuses to run as root. When the tests run as root (CI containers) every server
binary is executed as the ``postgres`` system user created by the Debian package.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "PostgresServer",
    "ensure_postgres_installed",
    "find_postgres_bindir",
    "start_postgres",
]

#: Binaries a usable server installation must provide.
REQUIRED_BINARIES = ("initdb", "pg_ctl", "postgres")
#: Where Debian/Ubuntu install the server binaries, one directory per major version.
DEBIAN_POSTGRES_ROOT = Path("/usr/lib/postgresql")
#: The superuser created by initdb; also the OS account used when we are root.
SUPERUSER = "postgres"
HOST = "127.0.0.1"
URI_SCHEME = "postgresql"

READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0
INITDB_TIMEOUT_S = 120.0
APT_TIMEOUT_S = 900.0
#: A port picked as free can be taken by a concurrent session before the server binds it.
PORT_ATTEMPTS = 5
#: Linux limits a unix socket path (sun_path) to 107 bytes plus the terminating NUL.
MAX_SOCKET_PATH = 107

_DB_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_PORT_IN_USE_MARKERS = ("could not bind", "address already in use")

# Servers started by this process and not stopped yet; stopped at interpreter exit as a safety
# net, for sessions whose teardown never ran (a crash in a fixture, an interrupted run).
_RUNNING: set[PostgresServer] = set()


def _version_key(name: str) -> tuple[int, ...] | None:
    """Sort key for Debian's per-version directories ("15", "9.6"); None for anything else."""
    try:
        return tuple(int(part) for part in name.split("."))
    except ValueError:
        return None


def _has_server_binaries(bindir: Path) -> bool:
    return all(os.access(bindir / name, os.X_OK) for name in REQUIRED_BINARIES)


def find_postgres_bindir() -> Path | None:
    """Return the directory holding ``initdb``, ``pg_ctl`` and ``postgres``, or None.

    Lookup order:

    1. ``PG_BINDIR`` from the environment, for a specific version or a non-Debian build. If it
       is set but incomplete we raise instead of silently falling back to another version,
       because a test run against the wrong major version is worse than no run.
    2. The highest version under ``/usr/lib/postgresql/<ver>/bin`` (Debian/Ubuntu keep the
       server binaries off ``PATH``; only the client wrappers are on it).
    3. The directory of ``pg_ctl`` found on ``PATH`` (other distributions, Homebrew).
    """
    override = os.environ.get("PG_BINDIR", "").strip()
    if override:
        bindir = Path(override).expanduser()
        if not _has_server_binaries(bindir):
            raise RuntimeError(
                f"PG_BINDIR={override!r} does not contain executable {', '.join(REQUIRED_BINARIES)}"
            )
        return bindir

    candidates: list[tuple[tuple[int, ...], Path]] = []
    if DEBIAN_POSTGRES_ROOT.is_dir():
        for entry in DEBIAN_POSTGRES_ROOT.iterdir():
            key = _version_key(entry.name)
            if key is not None and _has_server_binaries(entry / "bin"):
                candidates.append((key, entry / "bin"))
    if candidates:
        return max(candidates)[1]

    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl:
        bindir = Path(pg_ctl).resolve().parent
        if _has_server_binaries(bindir):
            return bindir
    return None


def _is_root() -> bool:
    return os.geteuid() == 0


def _tail(text: str | bytes | None, lines: int = 30) -> str:
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    return "\n".join(text.strip().splitlines()[-lines:])


def ensure_postgres_installed() -> Path:
    """Return the server bindir, installing the Debian ``postgresql`` package if needed.

    Installing is only attempted as root (a CI container): it is the one case where we can do
    it without asking anybody, and where the image is disposable. Anyone else gets told how to
    install it, because silently needing sudo in a test run is a bad surprise.
    """
    bindir = find_postgres_bindir()
    if bindir is not None:
        return bindir

    if not _is_root():
        raise RuntimeError(
            "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found. Install them "
            "with `sudo apt-get install postgresql` (Debian/Ubuntu), or point PG_BINDIR at the "
            "directory that holds them."
        )
    if shutil.which("apt-get") is None:
        raise RuntimeError(
            "PostgreSQL server binaries were not found and apt-get is not available to install "
            "them; install PostgreSQL and/or set PG_BINDIR."
        )

    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    commands = (
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", "postgresql"],
    )
    for command in commands:
        try:
            result = subprocess.run(
                command,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=APT_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(
                f"`{' '.join(command)}` did not finish within {APT_TIMEOUT_S:.0f}s:\n"
                f"{_tail(exc.output)}"
            ) from exc
        if result.returncode != 0:
            raise RuntimeError(
                f"`{' '.join(command)}` failed with exit code {result.returncode}:\n"
                f"{_tail(result.stdout)}"
            )

    bindir = find_postgres_bindir()
    if bindir is None:
        raise RuntimeError(
            "apt-get installed `postgresql` but no server binaries were found under "
            f"{DEBIAN_POSTGRES_ROOT}"
        )
    return bindir


def _free_port() -> int:
    """Ask the kernel for a currently unused loopback port (the caller handles the race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _as_server_user() -> list[str]:
    """Command prefix that drops root privileges to the ``postgres`` account (empty if not root).

    ``setpriv`` exec()s the target, so the process we spawn *is* the server and signals and
    ``wait()`` reach it directly; ``runuser`` (which forks and waits) is the fallback.
    """
    if not _is_root():
        return []
    if shutil.which("setpriv"):
        return [
            "setpriv",
            f"--reuid={SUPERUSER}",
            f"--regid={SUPERUSER}",
            "--init-groups",
            "--",
        ]
    return ["runuser", "-u", SUPERUSER, "--"]


def _server_user_ids() -> tuple[int, int]:
    import pwd

    try:
        entry = pwd.getpwnam(SUPERUSER)
    except KeyError as exc:
        raise RuntimeError(
            f"running as root, but there is no {SUPERUSER!r} system user to run PostgreSQL as "
            "(PostgreSQL refuses to run as root; the Debian `postgresql` package creates it)"
        ) from exc
    return entry.pw_uid, entry.pw_gid


def _server_env() -> dict[str, str]:
    """Environment for server binaries: no PG* variables that could redirect them."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    env["LC_ALL"] = "C"
    return env


def _server_can_reach(path: Path) -> bool:
    """Whether the ``postgres`` account can traverse every ancestor of ``path``.

    pytest's temporary directories live under a 0700 root-owned ``/tmp/pytest-of-root``, which
    the server account cannot enter even after we chown the leaf directory.
    """
    result = subprocess.run(
        [*_as_server_user(), "test", "-d", str(path)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=10,
        check=False,
    )
    return result.returncode == 0


def _make_owned_dir(path: Path, uid_gid: tuple[int, int] | None) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if uid_gid is not None:
        os.chown(path, *uid_gid)
    return path


def _pids_with_cwd(directory: Path) -> list[int]:
    """PIDs whose working directory is ``directory``.

    Every PostgreSQL process (postmaster and all its children) chdir()s into the data directory,
    while only the postmaster mentions it on its command line, so this finds all of them.
    """
    target = str(directory.resolve())
    pids: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if os.readlink(entry / "cwd") == target:
                pids.append(int(entry.name))
    return pids


def _connect(port: int, dbname: str, timeout: float = 5.0) -> Any:
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError(
            "psycopg is required to talk to the test PostgreSQL server; install the test "
            "extras (`pip install -e '.[test]'`) or `pip install 'psycopg[binary]'`"
        ) from exc
    return psycopg.connect(
        host=HOST,
        port=port,
        user=SUPERUSER,
        dbname=dbname,
        connect_timeout=max(1, int(timeout)),
        sslmode="disable",
    )


@dataclass(eq=False)
class PostgresServer:
    """A running private PostgreSQL cluster; call :meth:`stop` (or use ``with``) when done."""

    port: int
    data_dir: Path
    socket_dir: Path
    log_file: Path
    bindir: Path
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _scratch_dirs: list[Path] = field(default_factory=list, repr=False)

    @property
    def host(self) -> str:
        return HOST

    @property
    def pid(self) -> int | None:
        """PID of the postmaster (None once stopped)."""
        return self._process.pid if self._process is not None else None

    @property
    def uri(self) -> str:
        """SQLAlchemy URI of the ``mlflow`` database created at start."""
        return self.uri_for("mlflow")

    def uri_for(self, dbname: str) -> str:
        """SQLAlchemy URI of database ``dbname`` on this server.

        A bare ``postgresql://``, as users write it: SQLAlchemy 2.1 maps it to psycopg 3,
        which the package's ``postgres`` extra installs.
        """
        return f"{URI_SCHEME}://{SUPERUSER}@{HOST}:{self.port}/{dbname}"

    def make_database(self, name: str) -> str:
        """Create database ``name`` and return its SQLAlchemy URI.

        Lets a test get a pristine schema (e.g. to run MLflow's migrations from scratch)
        without paying for a second cluster.
        """
        if not _DB_NAME.match(name):
            raise ValueError(f"unsafe database name {name!r}; use letters, digits and '_'")
        from psycopg import sql

        conn = _connect(self.port, "postgres")
        try:
            conn.autocommit = True  # CREATE DATABASE cannot run inside a transaction
            with conn.cursor() as cur:
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        finally:
            conn.close()
        return self.uri_for(name)

    def stop(self) -> None:
        """Stop the server; afterwards no process of this cluster is left. Idempotent.

        Escalates like ``pg_ctl stop``: SIGINT is PostgreSQL's "fast" shutdown (what
        ``pg_ctl stop -m fast`` sends), SIGQUIT its "immediate" one, and SIGKILL the last
        resort. We hold the postmaster's process handle, so we signal it and reap it directly
        rather than going through ``pg_ctl`` and its pid file.
        """
        process, self._process = self._process, None
        _RUNNING.discard(self)
        try:
            if process is not None:
                _terminate(process)
            # Backends exit on postmaster death by themselves, but "never leave a process
            # behind" is a promise, so sweep anything still sitting in the data directory.
            for _ in range(50):
                leftovers = _pids_with_cwd(self.data_dir)
                if not leftovers:
                    break
                for pid in leftovers:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                time.sleep(0.1)
        finally:
            for scratch in self._scratch_dirs:
                shutil.rmtree(scratch, ignore_errors=True)
            self._scratch_dirs.clear()

    def __enter__(self) -> PostgresServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _terminate(process: subprocess.Popen[bytes]) -> None:
    steps = ((signal.SIGINT, STOP_TIMEOUT_S), (signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0))
    for sig, timeout in steps:
        if process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=timeout)
    process.poll()


@atexit.register
def _stop_leftover_servers() -> None:
    for server in list(_RUNNING):
        with contextlib.suppress(Exception):
            server.stop()


def _initdb(bindir: Path, data_dir: Path, cwd: Path) -> None:
    command = [
        *_as_server_user(),
        str(bindir / "initdb"),
        "-D",
        str(data_dir),
        "-U",
        SUPERUSER,
        "-A",
        "trust",
        "-E",
        "UTF8",
        "--locale=C",
        "--no-sync",
    ]
    try:
        result = subprocess.run(
            command,
            cwd=cwd,
            env=_server_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=INITDB_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"initdb timed out after {INITDB_TIMEOUT_S:.0f}s") from exc
    if result.returncode != 0:
        raise RuntimeError(f"initdb failed ({result.returncode}):\n{_tail(result.stdout)}")
    # initdb's defaults already only trust loopback, but state it rather than rely on it:
    # the unix socket (inside a 0700 directory) and 127.0.0.1, nothing else, no replication.
    (data_dir / "pg_hba.conf").write_text(
        "# written by tests/support/postgres.py: trust, loopback only\n"
        "local   all   all                  trust\n"
        "host    all   all   127.0.0.1/32   trust\n"
    )


def _spawn(
    bindir: Path, data_dir: Path, socket_dir: Path, port: int, log_file: Path
) -> subprocess.Popen[bytes]:
    command = [
        *_as_server_user(),
        str(bindir / "postgres"),
        "-D",
        str(data_dir),
        "-p",
        str(port),
        "-k",
        str(socket_dir),
        "-c",
        f"listen_addresses={HOST}",
        "-c",
        "fsync=off",
        "-c",
        "synchronous_commit=off",
        "-c",
        "full_page_writes=off",
        "-c",
        "max_connections=100",
    ]
    # The log is opened by us (possibly as root) and handed over as a file descriptor, so it
    # can sit in the caller's directory even when the server account could not open it.
    with open(log_file, "ab") as log:
        return subprocess.Popen(
            command,
            cwd=data_dir,
            env=_server_env(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Own session: a Ctrl-C aimed at pytest must not hit the server before teardown.
            start_new_session=True,
        )


def _wait_ready(process: subprocess.Popen[bytes], port: int, deadline: float) -> bool:
    """Poll until the server accepts connections (True) or its process exits (False)."""
    import psycopg

    while True:
        if process.poll() is not None:
            return False
        try:
            _connect(port, "postgres", timeout=2).close()
            return True
        except psycopg.OperationalError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError
        time.sleep(0.1)


def start_postgres(base_dir: Path) -> PostgresServer:
    """Create a fresh cluster under ``base_dir``, start it on 127.0.0.1 and create ``mlflow``.

    ``base_dir`` is owned by the caller (typically a pytest temporary directory) and must not
    already hold a cluster. When running as root, ``base_dir`` is handed to the ``postgres``
    account; if that account cannot reach it (pytest's 0700 ``/tmp/pytest-of-root``), the cluster
    goes into a private directory under the system temp dir instead, removed by ``stop()``. The
    server log always stays at ``base_dir/postgres.log``.
    """
    bindir = ensure_postgres_installed()
    base_dir = Path(base_dir).resolve()
    base_dir.mkdir(parents=True, exist_ok=True)
    owner = _server_user_ids() if _is_root() else None
    scratch_dirs: list[Path] = []

    cluster_root = base_dir
    if owner is not None:
        os.chown(base_dir, *owner)
        os.chmod(base_dir, 0o700)
        if not _server_can_reach(base_dir):
            cluster_root = Path(tempfile.mkdtemp(prefix="mlflow-secure-pg-"))
            os.chown(cluster_root, *owner)
            scratch_dirs.append(cluster_root)

    data_dir = cluster_root / "data"
    if data_dir.exists() and any(data_dir.iterdir()):
        raise RuntimeError(f"{data_dir} already holds a cluster; pass a fresh directory")
    _make_owned_dir(data_dir, owner)

    socket_dir = cluster_root / "sock"
    if len(str(socket_dir / ".s.PGSQL.65535.lock")) > MAX_SOCKET_PATH:
        # Deeply nested pytest directories exceed the unix socket path limit.
        socket_dir = Path(tempfile.mkdtemp(prefix="pgsock-"))
        scratch_dirs.append(socket_dir)
    _make_owned_dir(socket_dir, owner)

    log_file = base_dir / "postgres.log"
    try:
        _initdb(bindir, data_dir, cwd=cluster_root)
        server = _start_on_free_port(bindir, data_dir, socket_dir, log_file)
    except BaseException:
        for scratch in scratch_dirs:
            shutil.rmtree(scratch, ignore_errors=True)
        raise
    server._scratch_dirs = scratch_dirs
    try:
        server.make_database("mlflow")
    except BaseException:
        server.stop()
        raise
    return server


def _start_on_free_port(
    bindir: Path, data_dir: Path, socket_dir: Path, log_file: Path
) -> PostgresServer:
    """Start the postmaster, retrying with a new port if another session grabbed ours."""
    for _ in range(PORT_ATTEMPTS):
        port = _free_port()
        log_offset = log_file.stat().st_size if log_file.exists() else 0
        process = _spawn(bindir, data_dir, socket_dir, port, log_file)
        server = PostgresServer(
            port=port,
            data_dir=data_dir,
            socket_dir=socket_dir,
            log_file=log_file,
            bindir=bindir,
            _process=process,
        )
        _RUNNING.add(server)
        try:
            ready = _wait_ready(process, port, time.monotonic() + READY_TIMEOUT_S)
        except TimeoutError:
            server.stop()
            raise RuntimeError(
                f"PostgreSQL did not accept connections within {READY_TIMEOUT_S:.0f}s; "
                f"log {log_file}:\n{_tail(_read_from(log_file, log_offset))}"
            ) from None
        except BaseException:
            server.stop()
            raise
        if ready:
            return server
        server.stop()
        log = _read_from(log_file, log_offset)
        if not any(marker in log.lower() for marker in _PORT_IN_USE_MARKERS):
            raise RuntimeError(f"PostgreSQL exited during start-up; log {log_file}:\n{_tail(log)}")
    raise RuntimeError(f"could not find a free port for PostgreSQL in {PORT_ATTEMPTS} attempts")


def _read_from(path: Path, offset: int) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            return handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
