"""Running a real `mlflow server --app-name secure` as a subprocess, the way users do.

Each server gets its own process group (so the test can press "Ctrl-C" on it as a terminal
would) and its own runtime directory (so the test can find exactly the OPA processes that
belong to it by scanning /proc).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

MLFLOW = str(Path(sys.executable).with_name("mlflow"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def processes_mentioning(text: str) -> list[int]:
    """PIDs whose command line contains `text` (zombies have an empty cmdline: skipped)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if text.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
    return found


def opa_pids(runtime_dir: Path) -> list[int]:
    return [
        pid
        for pid in processes_mentioning(str(runtime_dir))
        if b"opa\x00run" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    runtime_dir: Path
    log_path: Path
    backend_uri: str
    env: dict[str, str] = field(repr=False)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get(self, path: str, **kwargs) -> httpx.Response:
        return httpx.get(self.url + path, timeout=30, **kwargs)

    def post(self, path: str, **kwargs) -> httpx.Response:
        return httpx.post(self.url + path, timeout=30, **kwargs)

    def opa_pids(self) -> list[int]:
        return opa_pids(self.runtime_dir)

    def admin_key(self) -> str:
        """The bootstrap administrator's key, as an operator would read it from the file."""
        return Path(self.env["MLFLOW_SECURE_BOOTSTRAP_KEY_FILE"]).read_text().strip()

    def api(self, method: str, path: str, key: str | None = None, **kwargs) -> httpx.Response:
        headers = kwargs.pop("headers", {})
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        return httpx.request(method, self.url + path, headers=headers, timeout=30, **kwargs)

    def wait_for(self, predicate, timeout: float = 30.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if predicate():
                    return
            if self.process.poll() is not None:
                raise AssertionError(f"server exited while waiting for {what}:\n{self.log()}")
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}:\n{self.log()[-4000:]}")

    def interrupt(self, timeout: float = 60.0) -> int:
        """Ctrl-C, as in a terminal: SIGINT to the server's whole process group."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGINT)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"server ignored Ctrl-C for {timeout}s:\n{self.log()}") from None

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        for pid in self.opa_pids():  # never leave anything behind a failed test
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def server_env(tmp_path: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    # pytest's temporary paths can be too long for a unix socket: keep the runtime dir short.
    runtime = tempfile.mkdtemp(prefix="mls-", dir="/tmp")
    return {
        **os.environ,
        "MLFLOW_SECURE_RUNTIME_DIR": runtime,
        "MLFLOW_SECURE_BOOTSTRAP_KEY_FILE": str(tmp_path / "admin.key"),
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "PYTHONUNBUFFERED": "1",
        **(extra or {}),
    }


def spawn(
    tmp_path: Path, command: list[str], env: dict[str, str], port: int, backend_uri: str
) -> Server:
    log_path = tmp_path / f"server-{port}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    return Server(
        f"http://127.0.0.1:{port}",
        process,
        Path(env["MLFLOW_SECURE_RUNTIME_DIR"]),
        log_path,
        backend_uri,
        env,
    )


def launch(
    tmp_path: Path,
    *,
    backend_uri: str | None = None,
    workers: int = 1,
    extra_args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    host: str = "127.0.0.1",
) -> Server:
    """Start `mlflow server --app-name secure` without waiting; see `start`."""
    port = free_port()
    backend_uri = backend_uri or f"sqlite:///{tmp_path / 'mlflow.db'}"
    (tmp_path / "artifacts").mkdir(exist_ok=True)
    command = [
        MLFLOW,
        "server",
        "--app-name",
        "secure",
        "--backend-store-uri",
        backend_uri,
        "--artifacts-destination",
        str(tmp_path / "artifacts"),
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
        *extra_args,
    ]
    return spawn(tmp_path, command, server_env(tmp_path, env), port, backend_uri)


def wait_healthy(server: Server, timeout: float = 90.0) -> Server:
    try:
        server.wait_for(lambda: server.get("/health").status_code == 200, timeout, "/health")
    except BaseException:
        server.kill()
        raise
    return server


def start(tmp_path: Path, timeout: float = 90.0, **kwargs) -> Server:
    """Start the server and wait until /health answers 200."""
    return wait_healthy(launch(tmp_path, **kwargs), timeout)
