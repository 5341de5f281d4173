"""A slow OPA is waited for, a dead one refused: the deadlines of the decision client.

Fake OPAs (small local HTTP servers that sleep, queue or never answer) and the real one
(slowed by its policy, stopped, killed). The rule is in policy/connection.py's docstring.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import os
import signal
import socket
import socketserver
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from mlflow_secure.policy.client import Decision, DecisionClient, OpaEndpoint, PolicyUnavailable
from mlflow_secure.policy.connection import (
    Deadlines,
    OpaConnectionPool,
    Overloaded,
    SyncOpaConnectionPool,
)
from mlflow_secure.policy.managed_opa import process_running
from tests.unit.test_decision_client import opa_with

ALLOW = Decision(allow=True, reasons=())


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as OPA
    delay = 0.0

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        time.sleep(self.delay)
        body = json.dumps({"result": {"allow": True, "reasons": []}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class _OneAtATime(socketserver.TCPServer):
    """Serves one connection at a time, the others wait in the listen queue: a busy OPA."""

    request_queue_size = 128
    allow_reuse_address = True


def fake_opa(delay: float, one_at_a_time: bool = False):
    """A local OPA stand-in that answers `allow` after `delay` seconds; stop with .shutdown()."""
    handler = type("Slow", (_Handler,), {"delay": delay})
    if one_at_a_time:
        handler.protocol_version = "HTTP/1.0"  # close after each answer: the next one's turn
        server = _OneAtATime(("127.0.0.1", 0), handler)
    else:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, OpaEndpoint(f"http://127.0.0.1:{server.server_address[1]}")


@pytest.fixture
def silent_opa(tmp_path):
    """A unix socket that accepts connections and never answers: a hung OPA."""
    path = tmp_path / "silent.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen(64)
    held, stop = [], threading.Event()

    def accept_forever():
        listener.settimeout(0.05)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept_forever, daemon=True)
    thread.start()
    yield OpaEndpoint("http://opa", uds=str(path))
    stop.set()
    thread.join()
    listener.close()
    for connection in held:
        connection.close()


@pytest.fixture
def policy_dir(tmp_path):
    directory = tmp_path / "policies"
    directory.mkdir()
    return directory


def eventually(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def all_threads_stopped(pid: int) -> bool:
    """SIGSTOP is delivered asynchronously, thread by thread: wait until none of OPA's runs."""
    tasks = list(Path(f"/proc/{pid}/task").iterdir())
    return all((task / "stat").read_text().rsplit(")", 1)[1].split()[0] == "T" for task in tasks)


def timed(call):
    started = time.monotonic()
    try:
        return call(), time.monotonic() - started
    except PolicyUnavailable as exc:
        return exc, time.monotonic() - started


# ------------------------------------------------------------------ answering slowly: decided


def test_a_slow_opa_answering_within_the_deadline_is_a_decision_not_a_503():
    server, endpoint = fake_opa(delay=1.0)
    try:
        client = DecisionClient(endpoint, timeout=0.3)  # answers take 3x the setting
        assert client.decide_sync({}) == ALLOW
        assert asyncio.run(client.decide({})) == ALLOW
    finally:
        server.shutdown()


def test_decisions_queued_behind_a_busy_opa_are_answered_not_refused():
    """16 callers at once before an OPA that answers one at a time in 0.1 s: the last waits
    about 1.6 s, five times the setting, and still gets its decision."""
    server, endpoint = fake_opa(delay=0.1, one_at_a_time=True)
    try:
        client = DecisionClient(endpoint, timeout=0.3)
        with ThreadPoolExecutor(16) as threads:
            answers = list(threads.map(lambda _: timed(lambda: client.decide_sync({})), range(16)))
        assert [answer for answer, _ in answers] == [ALLOW] * 16
        assert max(seconds for _, seconds in answers) > 0.9  # really queued

        async def many():
            return await asyncio.gather(*(client.decide({}) for _ in range(16)))

        assert asyncio.run(many()) == [ALLOW] * 16
    finally:
        server.shutdown()


def test_callers_beyond_the_pool_wait_for_a_slot():
    server, endpoint = fake_opa(delay=0.3)
    deadlines = Deadlines.from_timeout(0.2)
    body = b'{"input": {}}'
    try:
        pool = SyncOpaConnectionPool(endpoint.base_url, None, deadlines, max_connections=2)
        with ThreadPoolExecutor(8) as threads:
            statuses = list(threads.map(lambda _: pool.post_json("/", body)[0], range(8)))
        assert statuses == [200] * 8  # four rounds of 0.3 s: the queue is ours, not OPA's

        async def many():
            pool = OpaConnectionPool(endpoint.base_url, None, deadlines, max_connections=2)
            return [
                status
                for status, _ in await asyncio.gather(
                    *(pool.post_json("/", body) for _ in range(8))
                )
            ]

        assert asyncio.run(many()) == [200] * 8
    finally:
        server.shutdown()


def test_a_queue_for_a_slot_is_bounded():
    server, endpoint = fake_opa(delay=1.0)
    deadlines = Deadlines(connect=0.5, patience=0.5, answer=5.0, slot=0.2)
    try:
        pool = SyncOpaConnectionPool(endpoint.base_url, None, deadlines, max_connections=1)
        with ThreadPoolExecutor(2) as threads:
            first = threads.submit(pool.post_json, "/", b"{}")
            time.sleep(0.1)
            with pytest.raises(Overloaded, match=r"no free connection within 0\.2s"):
                pool.post_json("/", b"{}")
            assert first.result()[0] == 200
    finally:
        server.shutdown()


def test_a_real_opa_slower_than_the_timeout_still_decides(opa_binary, policy_dir, tmp_path):
    """The real OPA, made slow by its policy (about half a second per decision)."""
    rego = """package mlflow.authz
slow := count([x | some x in numbers.range(1, input.n); x % 7 == 0])
decision := {"allow": slow > 0, "reasons": []}
"""
    process, endpoint = opa_with(opa_binary, policy_dir, tmp_path, rego)
    try:
        client = DecisionClient(endpoint, timeout=0.1, alive=lambda: process_running(process.pid))
        slow_input = {"n": 500_000}
        decision, seconds = timed(lambda: client.decide_sync(slow_input))
        assert decision == ALLOW
        assert seconds > 0.1, "the policy was not slow enough to test anything"
        assert asyncio.run(client.decide(slow_input)) == ALLOW
    finally:
        process.kill()


# -------------------------------------------------------------------- not answering: refused


@pytest.mark.parametrize("kind", ["missing", "refused", "tcp"])
def test_a_dead_socket_is_refused_at_once(tmp_path, kind):
    """However generous the timeout: nothing listens, so nothing is waited for."""
    if kind == "missing":
        endpoint = OpaEndpoint("http://opa", uds=str(tmp_path / "missing.sock"))
    elif kind == "refused":  # the socket file of an OPA that died: connection refused
        path = tmp_path / "dead.sock"
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(str(path))
        listener.close()
        endpoint = OpaEndpoint("http://opa", uds=str(path))
    else:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        endpoint = OpaEndpoint(f"http://127.0.0.1:{port}")
    client = DecisionClient(endpoint, timeout=5)
    for call in (lambda: client.decide_sync({}), lambda: asyncio.run(client.decide({}))):
        refusal, seconds = timed(call)
        assert isinstance(refusal, PolicyUnavailable)
        assert "unreachable" in str(refusal)
        assert seconds < 1.0  # the timeout is 5 s


def test_a_silent_opa_is_refused_at_the_answer_deadline(silent_opa):
    client = DecisionClient(silent_opa, timeout=0.2, answer_deadline=1.0)
    for call in (lambda: client.decide_sync({}), lambda: asyncio.run(client.decide({}))):
        refusal, seconds = timed(call)
        assert isinstance(refusal, PolicyUnavailable)
        assert "timed out: no answer within 1s" in str(refusal)
        assert 0.9 < seconds < 3.0  # past the setting (0.2 s): silence, then the deadline


def test_a_silent_opa_whose_process_is_not_running_is_refused_after_patience(silent_opa):
    client = DecisionClient(silent_opa, timeout=0.2, answer_deadline=30, alive=lambda: False)
    for call in (lambda: client.decide_sync({}), lambda: asyncio.run(client.decide({}))):
        refusal, seconds = timed(call)
        assert isinstance(refusal, PolicyUnavailable)
        assert "its process is not running" in str(refusal)
        assert seconds < 2.0  # the answer deadline is 30 s


ALLOW_ALL = 'package mlflow.authz\ndecision := {"allow": true, "reasons": []}\n'


def test_a_killed_opa_is_refused_at_once(opa_binary, policy_dir, tmp_path):
    """Fail closed stays: the kept-alive connections of a killed OPA are not an answer."""
    process, endpoint = opa_with(opa_binary, policy_dir, tmp_path, ALLOW_ALL)
    client = DecisionClient(endpoint, timeout=5, answer_deadline=30)

    async def decide_then_kill_then_decide():
        assert await client.decide({}) == ALLOW
        process.kill()
        process.wait()
        return await client.decide({})  # on the kept-alive connection, then a fresh one

    assert client.decide_sync({}) == ALLOW
    with pytest.raises(PolicyUnavailable, match="unreachable"):
        asyncio.run(decide_then_kill_then_decide())
    refusal, seconds = timed(lambda: client.decide_sync({}))
    assert isinstance(refusal, PolicyUnavailable)
    assert seconds < 1.0


def test_an_opa_killed_while_a_decision_waits_is_refused_at_once(opa_binary, policy_dir, tmp_path):
    process, endpoint = opa_with(opa_binary, policy_dir, tmp_path, ALLOW_ALL)
    client = DecisionClient(endpoint, timeout=0.2, answer_deadline=30)  # liveness unknown
    try:
        assert client.decide_sync({}) == ALLOW
        os.kill(process.pid, signal.SIGSTOP)
        assert eventually(lambda: all_threads_stopped(process.pid))
        with ThreadPoolExecutor(1) as threads:
            waiting = threads.submit(timed, lambda: client.decide_sync({}))
            time.sleep(0.6)
            assert not waiting.done()  # silent, but not past the answer deadline: waited for
            killed_at = time.monotonic()
            process.kill()
            refusal, _ = waiting.result(timeout=5)
        assert isinstance(refusal, PolicyUnavailable)
        assert time.monotonic() - killed_at < 2.0
    finally:
        process.kill()
        process.wait()


def test_a_stopped_opa_is_refused_once_its_process_is_seen_not_running(
    opa_binary, policy_dir, tmp_path
):
    process, endpoint = opa_with(opa_binary, policy_dir, tmp_path, ALLOW_ALL)
    client = DecisionClient(
        endpoint, timeout=0.2, answer_deadline=30, alive=lambda: process_running(process.pid)
    )
    try:
        assert client.decide_sync({}) == ALLOW
        os.kill(process.pid, signal.SIGSTOP)
        assert eventually(lambda: all_threads_stopped(process.pid))
        for call in (lambda: client.decide_sync({}), lambda: asyncio.run(client.decide({}))):
            refusal, seconds = timed(call)
            assert isinstance(refusal, PolicyUnavailable)
            assert "its process is not running" in str(refusal)
            assert seconds < 3.0  # the answer deadline is 30 s
        os.kill(process.pid, signal.SIGCONT)
        assert client.decide_sync({}) == ALLOW
        assert asyncio.run(client.decide({})) == ALLOW
    finally:
        process.kill()
        process.wait()


def test_process_running_tells_running_stopped_and_gone(opa_binary, policy_dir, tmp_path):
    process, _ = opa_with(opa_binary, policy_dir, tmp_path, ALLOW_ALL)
    try:
        assert process_running(process.pid) is True
        os.kill(process.pid, signal.SIGSTOP)  # signals are delivered asynchronously
        assert eventually(lambda: process_running(process.pid) is False)
        os.kill(process.pid, signal.SIGCONT)
        assert eventually(lambda: process_running(process.pid) is True)
        process.kill()
        assert eventually(lambda: process_running(process.pid) is False)  # a zombie
        process.wait()
        assert process_running(process.pid) is False
    finally:
        process.kill()
