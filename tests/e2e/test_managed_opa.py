"""The managed OPA inside a real multi-worker server: one OPA, fail closed, never orphaned."""

import contextlib
import http.server
import os
import shutil
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.support import servers

pytestmark = pytest.mark.e2e


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def wait_until(predicate, timeout=30.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def health(server) -> int:
    return server.get("/health").status_code


def test_one_opa_for_all_workers_and_none_after_ctrl_c(tmp_path):
    server = servers.start(tmp_path, workers=2)
    try:
        pids = server.opa_pids()
        assert len(pids) == 1, pids
        # It listens on a private unix socket only: no TCP port was opened.
        assert (server.runtime_dir.stat().st_mode & 0o777) == 0o700
        sockets = list(server.runtime_dir.rglob("opa.sock"))
        assert len(sockets) == 1
        assert (sockets[0].stat().st_mode & 0o777) == 0o600
    finally:
        exit_code = server.interrupt()
    assert wait_until(lambda: server.opa_pids() == [], timeout=5), server.opa_pids()
    assert exit_code == 0, server.log()[-3000:]


def test_opa_down_means_503_then_recovery(tmp_path, opa_binary):
    # A private copy of OPA, so the test can make restarts fail for a while.
    binary = tmp_path / "bin" / "opa"
    binary.parent.mkdir()
    shutil.copy2(opa_binary, binary)
    server = servers.start(tmp_path, workers=2, env={"MLFLOW_SECURE_OPA_BINARY": str(binary)})
    try:
        assert health(server) == 200
        # 1. OPA dies and cannot come back: every probe is 503, API calls stay refused.
        hidden = binary.rename(binary.with_name("opa.hidden"))
        (old_pid,) = server.opa_pids()
        os.kill(old_pid, signal.SIGKILL)
        assert wait_until(lambda: health(server) == 503), server.log()[-3000:]
        # Each worker re-probes on its own schedule: wait until both have noticed.
        assert wait_until(lambda: all(health(server) == 503 for _ in range(6)))
        response = server.get("/health")
        assert response.status_code == 503, (response.status_code, response.text)
        assert response.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
        assert response.headers["retry-after"] == "1"
        assert (
            server.post("/api/2.0/mlflow/experiments/create", json={"name": "x"}).status_code == 401
        )
        time.sleep(1.5)
        assert health(server) == 503
        assert "managed OPA exited" in server.log()
        # 2. OPA can start again: the supervisor brings it back without a server restart.
        hidden.rename(binary)
        assert wait_until(lambda: health(server) == 200, timeout=30), server.log()[-3000:]
        (new_pid,) = server.opa_pids()
        assert new_pid != old_pid
        assert (
            server.api("GET", "/api/2.0/mlflow-secure/whoami", server.admin_key()).status_code
            == 200
        )
        # 3. A plain crash recovers by itself.
        os.kill(new_pid, signal.SIGKILL)
        assert wait_until(lambda: server.opa_pids() not in ([], [new_pid]), timeout=15)
        assert wait_until(lambda: health(server) == 200, timeout=15)
        assert len(server.opa_pids()) == 1
    finally:
        server.interrupt()
    assert wait_until(lambda: server.opa_pids() == [], timeout=5)


def test_crash_of_the_supervising_worker_hands_over(tmp_path):
    server = servers.start(tmp_path, workers=2)
    try:
        (opa_pid,) = server.opa_pids()
        supervisor = parent_of(opa_pid)
        os.kill(supervisor, signal.SIGKILL)
        # The kernel takes OPA down with its worker; another worker takes over.
        assert wait_until(lambda: server.opa_pids() not in ([], [opa_pid]), timeout=30)
        assert wait_until(lambda: health(server) == 200, timeout=30)
        (new_pid,) = server.opa_pids()
        assert parent_of(new_pid) != supervisor
    finally:
        server.interrupt()
    assert wait_until(lambda: server.opa_pids() == [], timeout=5)


def test_sigkill_of_the_whole_server_leaves_no_opa(tmp_path):
    server = servers.start(tmp_path, workers=2)
    assert len(server.opa_pids()) == 1
    # SIGKILL cannot be caught: only the kernel's parent-death signal can clean up.
    os.killpg(server.process.pid, signal.SIGKILL)
    server.process.wait(timeout=10)
    assert wait_until(lambda: server.opa_pids() == [], timeout=10), server.opa_pids()


def test_policy_edits_take_effect_without_restart(tmp_path):
    policies = tmp_path / "policies"
    shutil.copytree(Path(__file__).resolve().parents[2] / "rego", policies)
    authz = policies / "mlflow" / "authz" / "authz.rego"
    original = authz.read_text()
    server = servers.start(tmp_path, env={"MLFLOW_SECURE_POLICY_DIR": str(policies)})
    try:
        assert health(server) == 200
        # A broken edit: OPA keeps serving the last policy that compiled.
        authz.write_text(original + "\nthis is not rego\n")
        time.sleep(2.5)
        assert health(server) == 200
        # A policy that no longer defines the decision: the server refuses (fail closed).
        authz.write_text(original.replace("decision :=", "decision_disabled :="))
        assert wait_until(lambda: health(server) == 503, timeout=20), server.log()[-3000:]
        # The repaired policy is picked up.
        authz.write_text(original)
        assert wait_until(lambda: health(server) == 200, timeout=20), server.log()[-3000:]
    finally:
        server.interrupt()


def test_external_opa(tmp_path, opa_binary):
    port = servers.free_port()
    rego = Path(__file__).resolve().parents[2] / "rego"

    def run_opa():
        return servers.subprocess.Popen(
            [
                str(opa_binary),
                "run",
                "--server",
                "--addr",
                f"127.0.0.1:{port}",
                "--skip-version-check",
                "--ignore",
                "*_test.rego",
                str(rego),
            ],
            stdout=servers.subprocess.DEVNULL,
            stderr=servers.subprocess.DEVNULL,
        )

    opa = run_opa()
    server = servers.start(tmp_path, env={"MLFLOW_SECURE_OPA_URL": f"http://127.0.0.1:{port}"})
    try:
        assert health(server) == 200
        assert server.opa_pids() == []  # nothing managed when an external OPA is configured
        admin = server.admin_key()
        repeated = "/api/2.0/mlflow/experiments/get?experiment_id=0"
        assert server.api("GET", repeated, admin).status_code == 200
        opa.kill()
        opa.wait()
        assert wait_until(lambda: health(server) == 503, timeout=10)
        # A reused decision lasts until the worker's revision watcher fails (every 2 s).
        assert wait_until(lambda: server.api("GET", repeated, admin).status_code == 503, 5)
        assert server.post("/api/2.0/mlflow/experiments/create", json={}).status_code == 401
        opa = run_opa()
        assert wait_until(lambda: health(server) == 200, timeout=20)
    finally:
        server.interrupt()
        opa.kill()


def _opa_decisions(server) -> float:
    """How many decisions and filters OPA has answered (its Prometheus counter of POSTs to
    /v1/data, read over the managed OPA's private socket)."""
    (socket_path,) = server.runtime_dir.rglob("opa.sock")
    transport = httpx.HTTPTransport(uds=str(socket_path))
    with httpx.Client(transport=transport, base_url="http://opa") as client:
        metrics = client.get("/metrics").text
    counted = [
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("http_request_duration_seconds_count{")
        and 'handler="v1/data"' in line
        and 'method="post"' in line
    ]
    return sum(counted)


def test_decisions_are_reused_by_default_and_never_past_the_managed_opas_death(
    tmp_path, opa_binary
):
    """Nothing configured: a repeated request reuses its decision (OPA is not asked again),
    another request is decided afresh, and once OPA is killed the repeat fails closed at
    once, without waiting for the revision watcher."""
    binary = tmp_path / "bin" / "opa"
    binary.parent.mkdir()
    shutil.copy2(opa_binary, binary)
    server = servers.start(tmp_path, env={"MLFLOW_SECURE_OPA_BINARY": str(binary)})
    try:
        admin = server.admin_key()
        repeated = "/api/2.0/mlflow/experiments/get?experiment_id=0"
        assert server.api("GET", repeated, admin).status_code == 200
        asked = _opa_decisions(server)
        for _ in range(5):
            assert server.api("GET", repeated, admin).status_code == 200
        assert _opa_decisions(server) == asked
        other = "/api/2.0/mlflow/experiments/search?max_results=1"
        assert server.api("GET", other, admin).status_code == 200
        assert _opa_decisions(server) > asked
        binary.rename(binary.with_name("opa.hidden"))
        (pid,) = server.opa_pids()
        os.kill(pid, signal.SIGKILL)
        assert wait_until(lambda: server.opa_pids() == [])
        assert server.api("GET", repeated, admin).status_code == 503  # decided a moment ago
        assert server.api("GET", other, admin).status_code == 503
    finally:
        server.interrupt()


CLOCK_RULE = """package mlflow.authz

import rego.v1

# Bob may read the Default experiment until a deadline: an answer that changes with time.
allow if {
	input.subject.id == "bob"
	input.action.endpoint == "mlflow.experiments.get"
	time.now_ns() < %d
}
"""


def test_a_policy_that_reads_the_clock_is_asked_every_time(tmp_path):
    """A rule calling time.now_ns can answer the same input differently a moment later: the
    server finds it in the loaded modules and stops reusing decisions, so a grant that
    expires is refused at once, not when a reused allow would have expired."""
    policies = tmp_path / "policies"
    shutil.copytree(Path(__file__).resolve().parents[2] / "rego", policies)
    (tmp_path / "server").mkdir()
    server = servers.start(tmp_path / "server", env={"MLFLOW_SECURE_POLICY_DIR": str(policies)})
    try:
        admin = server.admin_key()
        api = "/api/2.0/mlflow-secure/"
        created = server.api("POST", api + "users/create", admin, json={"name": "bob"})
        assert created.status_code == 200, created.text
        asked = {"principal": "bob", "scopes": ["read"]}
        made = server.api("POST", api + "keys/create", admin, json=asked)
        bob = made.json()["key"]
        read = "/api/2.0/mlflow/experiments/get?experiment_id=0"
        assert server.api("GET", read, bob).status_code == 403  # no rule lets him yet
        deadline = time.time() + 15  # the grant's end (OPA's clock and ours are one)
        hidden = policies / "mlflow" / "authz" / ".clock.rego"
        hidden.write_text(CLOCK_RULE % int(deadline * 1e9))
        hidden.rename(hidden.with_name("clock.rego"))
        assert wait_until(lambda: server.api("GET", read, bob).status_code == 200, 10)
        assert wait_until(lambda: "calls time.now_ns" in server.log(), 10), server.log()[-2000:]
        # Allowed until shortly before the end (a request sent just before it may be
        # evaluated just after it on a loaded machine), refused at once after it: a reused
        # allow would still answer 200 for the reuse TTL (30 s).
        while time.time() < deadline - 1.5:
            assert server.api("GET", read, bob).status_code == 200
            time.sleep(0.2)
        time.sleep(max(0.0, deadline - time.time()) + 0.2)
        assert server.api("GET", read, bob).status_code == 403  # the grant ran out: refused
    finally:
        server.interrupt()


def test_a_stopped_managed_opa_is_503_quickly_in_every_worker_then_recovers(tmp_path):
    """A stopped OPA keeps its socket open but answers nothing: every worker sees from its
    pid that it does not run and refuses after MLFLOW_SECURE_OPA_TIMEOUT, not 5 s later."""
    server = servers.start(tmp_path, workers=2)
    try:
        admin = server.admin_key()
        search = "/api/2.0/mlflow/experiments/search?max_results=1"
        assert server.api("GET", search, admin).status_code == 200
        (pid,) = server.opa_pids()
        os.kill(pid, signal.SIGSTOP)
        try:
            for _ in range(6):  # both workers, the decision and the filter alike
                started = time.monotonic()
                assert server.api("GET", search, admin).status_code == 503
                assert time.monotonic() - started < 3.0
        finally:
            os.kill(pid, signal.SIGCONT)
        assert wait_until(lambda: server.api("GET", search, admin).status_code == 200)
        assert server.opa_pids() == [pid]  # it was slow to answer, not restarted
    finally:
        server.interrupt()


class _SlowForward(http.server.BaseHTTPRequestHandler):
    """In front of a real OPA: every decision and filter question answered 0.8 s late."""

    protocol_version = "HTTP/1.1"
    upstream = ""
    delay = 0.8

    def do_GET(self):
        self._forward("GET", None)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        time.sleep(self.delay)
        self._forward("POST", body)

    def _forward(self, method, body):
        answer = httpx.request(method, self.upstream + self.path, content=body, timeout=30)
        self.send_response(answer.status_code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer.content)))
        self.end_headers()
        self.wfile.write(answer.content)

    def log_message(self, *args):
        pass


class _Front(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, handler) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.connections = []

    def get_request(self):
        connection, address = super().get_request()
        self.connections.append(connection)
        return connection, address

    def stop(self) -> None:
        """Gone: no listener, and every kept-alive connection closed."""
        self.shutdown()
        self.server_close()
        for connection in self.connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


def test_an_opa_slower_than_the_timeout_is_waited_for_not_refused(tmp_path, opa_binary):
    """Decisions that take longer than MLFLOW_SECURE_OPA_TIMEOUT (0.5 s) because OPA is busy
    are decisions, not 503s; when OPA goes away, the refusal is immediate."""
    port = servers.free_port()
    opa = servers.subprocess.Popen(
        [
            str(opa_binary),
            "run",
            "--server",
            "--addr",
            f"127.0.0.1:{port}",
            "--skip-version-check",
            "--ignore",
            "*_test.rego",
            str(Path(__file__).resolve().parents[2] / "rego"),
        ],
        stdout=servers.subprocess.DEVNULL,
        stderr=servers.subprocess.DEVNULL,
    )
    handler = type("Slow", (_SlowForward,), {"upstream": f"http://127.0.0.1:{port}"})
    front = _Front(handler)
    threading.Thread(target=front.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{front.server_address[1]}"
    # Every decision goes to OPA: reused ones would neither wait nor, for up to 2 s after
    # an external OPA goes away, be refused (the documented window of decision reuse).
    env = {"MLFLOW_SECURE_OPA_URL": url, "MLFLOW_SECURE_DECISION_CACHE_TTL": "0"}
    server = servers.start(tmp_path, env=env)
    try:
        admin = server.admin_key()
        paths = ["/api/2.0/mlflow-secure/whoami", "/api/2.0/mlflow/experiments/search"] * 4
        with ThreadPoolExecutor(8) as threads:
            answers = list(threads.map(lambda path: server.api("GET", path, admin), paths))
        assert [answer.status_code for answer in answers] == [200] * 8
        front.stop()
        started = time.monotonic()
        assert server.api("GET", paths[0], admin).status_code == 503
        assert time.monotonic() - started < 2.0
    finally:
        server.interrupt()
        front.server_close()
        opa.kill()
