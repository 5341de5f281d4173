"""The managed local OPA: one per server, supervised, never orphaned.

Design (uvicorn and gunicorn run our app factory once in *every* worker process):

* All workers of one server share a private directory (mode 0700) named after MLflow's
  per-boot id, holding ``opa.sock`` (OPA's only listener, a unix socket with mode 0600: no
  TCP port, so nothing off the machine and no other local user can reach or reprogram it)
  and ``opa.lock``.
* Each worker starts a daemon thread that blocks on ``flock(opa.lock)``. The one that gets it
  becomes the supervisor: it starts ``opa run --server --watch`` and restarts it with backoff
  whenever it exits. The others keep waiting on the lock; if the supervising worker dies, the
  kernel releases its lock and another worker takes over. So there is exactly one OPA.
* OPA runs in its own session (terminal signals do not hit it) with ``PR_SET_PDEATHSIG``: when
  the supervising thread's process dies for any reason, even SIGKILL, the kernel terminates
  OPA. A clean shutdown also stops it explicitly (``atexit``). So there is never an orphan.
* The supervisor writes OPA's pid to ``opa.pid`` beside the socket while it runs, so that
  every worker can tell a slow OPA from a dead or stopped one (``opa_running``): the decision
  client waits for the first and refuses at once on the second (connection.py).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import logging
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

_logger = logging.getLogger(__name__)

SOCKET_NAME = "opa.sock"
_PR_SET_PDEATHSIG = 1
# sun_path holds 108 bytes on Linux (104 on BSDs): longer socket paths cannot be bound.
MAX_SOCKET_PATH = 103


def ensure_private_dir(path: Path) -> Path:
    """Create `path` (and parents) as 0700 dirs we own; refuse anything another user could touch.

    The runtime root often lives under /tmp, where another local user could pre-create it
    or plant a symlink to capture our policy socket.
    """
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise PermissionError(f"{path} is not a plain directory; refusing to use it")
    if info.st_uid != os.getuid():
        raise PermissionError(f"{path} is owned by uid {info.st_uid}, not us; refusing to use it")
    if stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(path, 0o700)
    return path


def instance_dir(runtime_root: Path, socket_name: str = SOCKET_NAME) -> Path:
    """One directory per server instance, shared by its workers and no one else's.

    `mlflow server` gives every worker of one boot the same `_MLFLOW_SERVER_BOOT_ID`; when
    the factory is run by a bare uvicorn/gunicorn, the process group stands in for it.
    `socket_name` is the socket that must fit inside (each managed OPA has its own).
    """
    boot_id = os.environ.get("_MLFLOW_SERVER_BOOT_ID") or f"pgid-{os.getpgid(0)}"
    # Short: the socket path inside must fit a unix socket address.
    safe = "".join(ch for ch in boot_id if ch.isalnum() or ch in "-_")[:16] or "default"
    socket_path = runtime_root / safe / socket_name
    if len(os.fsencode(socket_path)) > MAX_SOCKET_PATH:
        raise PermissionError(
            f"{runtime_root} is too long for a unix socket path ({socket_path} exceeds "
            f"{MAX_SOCKET_PATH} bytes); choose a shorter directory"
        )
    ensure_private_dir(runtime_root)
    return ensure_private_dir(runtime_root / safe)


def _die_with_parent_hook() -> object:
    """preexec_fn for OPA: ask the kernel to SIGTERM it when its parent thread goes away."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getpid()

    def hook() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return hook


def process_running(pid: int) -> bool | None:
    """False when `pid` has exited, is a zombie or is stopped (SIGSTOP, a debugger): it will
    not answer. None where /proc cannot tell (not Linux)."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False if Path("/proc/self/stat").exists() else None
    except OSError:
        return None
    state = stat_line.rsplit(")", 1)[-1].split()[:1]
    return not state or state[0] not in {"Z", "X", "x", "T", "t"}


def opa_command(opa_binary: Path, policy_dir: Path, socket_path: Path) -> list[str]:
    return [
        str(opa_binary),
        "run",
        "--server",
        "--addr",
        f"unix://{socket_path}",
        "--unix-socket-perm",
        "0600",
        "--watch",
        "--ignore",
        "*_test.rego",
        "--ignore",
        ".*",
        "--skip-version-check",
        "--log-level",
        "error",
        "--log-format",
        "text",
        "--shutdown-grace-period",
        "1",
        str(policy_dir),
    ]


def opa_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """OPA's environment, with Go runtime settings suited to small, frequent decisions.

    Measured here (2 cores): with Go's defaults one decision cost OPA 0.60 ms of CPU; with a
    quarter of the cores as Go processors (at least one) and a lazier collector (GOGC=400;
    OPA's heap is a few tens of MB) 0.37 ms, and 30% less latency. Each decision is short
    and single-threaded, so more Go processors mostly add scheduling hand-offs. An operator's
    own GOMAXPROCS or GOGC is kept.
    """
    tuned = dict(environ)
    tuned.setdefault("GOMAXPROCS", str(max(1, (os.cpu_count() or 1) // 4)))
    tuned.setdefault("GOGC", "400")
    return tuned


class OpaSupervisor:
    """Elects one supervising worker per server and keeps its OPA running.

    `name` tells apart several OPAs of one server (the active policies as ``opa``, a shadow
    candidate as ``shadow``): each has its own socket and lock, so its own election.
    """

    def __init__(
        self, opa_binary: Path, policy_dir: Path, directory: Path, name: str = "opa"
    ) -> None:
        self.policy_dir = policy_dir
        self.socket_path = directory / f"{name}.sock"
        self.lock_path = directory / f"{name}.lock"
        self.pid_path = directory / f"{name}.pid"
        self.command = opa_command(opa_binary, policy_dir, self.socket_path)
        self.label = "managed OPA" if name == "opa" else f"managed OPA ({name})"
        self._stopping = threading.Event()
        self._process: subprocess.Popen[bytes] | None = None
        self._lock_fd: int | None = None
        self._thread = threading.Thread(target=self._run, name=f"mlflow-secure-{name}", daemon=True)

    @property
    def is_supervisor(self) -> bool:
        return self._lock_fd is not None

    @property
    def opa_pid(self) -> int | None:
        process = self._process
        return process.pid if process and process.poll() is None else None

    def opa_running(self) -> bool | None:
        """Whether this server's OPA process runs, from any of its workers (for the decision
        client, consulted only when OPA is slow to answer). False when it has exited or is
        stopped; None when it cannot be told (no pid recorded: then OPA's socket is gone too,
        and connecting fails by itself)."""
        process = self._process
        if process is not None and process.poll() is not None:
            return False
        try:
            pid = int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            return None
        return process_running(pid) if pid > 0 else None

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # blocks until this worker is the supervisor
        except OSError:
            os.close(fd)
            raise
        self._lock_fd = fd
        if self._stopping.is_set():
            return
        _logger.info("this worker (pid %d) supervises the %s", os.getpid(), self.label)
        backoff = 0.2
        while not self._stopping.is_set():
            started = time.monotonic()
            code = self._run_once()
            if self._stopping.is_set():
                break
            if time.monotonic() - started > 30:
                backoff = 0.2
            _logger.error(
                "%s exited with code %s; restarting in %.1fs (no decisions from it until it "
                "answers)",
                self.label,
                code,
                backoff,
            )
            if self._stopping.wait(backoff):
                break
            backoff = min(backoff * 2, 5.0)

    def _run_once(self) -> int:
        # The lock holder alone owns the socket path; a socket left by a dead predecessor
        # would make OPA's listen() fail.
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        try:
            self._process = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                env=opa_environment(os.environ),
                start_new_session=True,
                preexec_fn=_die_with_parent_hook(),
            )
        except OSError as exc:
            _logger.error("cannot start the %s (%s): %s", self.label, self.command[0], exc)
            return -1
        self._write_pid(self._process.pid)
        try:
            return self._process.wait()
        finally:
            with contextlib.suppress(FileNotFoundError):
                self.pid_path.unlink()

    def _write_pid(self, pid: int) -> None:
        partial = self.pid_path.with_name(f".{self.pid_path.name}.{os.getpid()}")
        try:
            partial.write_text(f"{pid}\n")
            partial.replace(self.pid_path)  # atomic: a reader never sees half a number
        except OSError as exc:  # liveness is then unknown to the other workers: not fatal
            _logger.warning("cannot record the %s's pid in %s: %s", self.label, self.pid_path, exc)

    def stop(self) -> None:
        """Stop OPA (if we supervise it) and give up the lock; safe to call twice."""
        self._stopping.set()
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        if self._lock_fd is not None:
            with contextlib.suppress(FileNotFoundError):
                self.socket_path.unlink()
            with contextlib.suppress(FileNotFoundError):
                self.pid_path.unlink()
            os.close(self._lock_fd)
            self._lock_fd = None
