"""The decision client against a real OPA process, and against servers that misbehave."""

import asyncio
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from mlflow_secure.config import ConfigError
from mlflow_secure.policy.client import (
    Decision,
    DecisionClient,
    OpaEndpoint,
    PolicyUnavailable,
    interpret,
    parse_opa_url,
)


def run_opa(opa_binary: Path, policy_dir: Path, sock: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [
            str(opa_binary),
            "run",
            "--server",
            "--addr",
            f"unix://{sock}",
            "--skip-version-check",
            "--log-level",
            "error",
            str(policy_dir),
        ],
    )
    client = httpx.Client(transport=httpx.HTTPTransport(uds=str(sock)))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if client.get("http://opa/health").status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.05)
    process.kill()
    raise AssertionError("OPA did not start")


@pytest.fixture
def policy_dir(tmp_path):
    directory = tmp_path / "policies"
    directory.mkdir()
    return directory


def opa_with(opa_binary, policy_dir, tmp_path, rego: str):
    (policy_dir / "p.rego").write_text(rego)
    sock = tmp_path / "opa.sock"
    return run_opa(opa_binary, policy_dir, sock), OpaEndpoint("http://opa", uds=str(sock))


def test_allow_and_deny_with_reasons_from_real_opa(opa_binary, policy_dir, tmp_path):
    rego = """package mlflow.authz
default allow := false
allow if input.subject.id == "alice"
decision := {"allow": allow, "reasons": ["not alice"]} if not allow
decision := {"allow": true, "reasons": []} if allow
"""
    process, endpoint = opa_with(opa_binary, policy_dir, tmp_path, rego)
    try:
        client = DecisionClient(endpoint, timeout=2)
        assert client.decide_sync({"subject": {"id": "alice"}}).allow is True
        denied = client.decide_sync({"subject": {"id": "bob"}})
        assert denied.allow is False
        assert denied.reasons == ("not alice",)
        assert asyncio.run(client.decide({"subject": {"id": "alice"}})).allow is True
    finally:
        process.kill()


def test_undefined_decision_is_unavailable_not_allow(opa_binary, policy_dir, tmp_path):
    rego = 'package mlflow.authz\ndecision := {"allow": true, "reasons": []} if input.x\n'
    process, endpoint = opa_with(opa_binary, policy_dir, tmp_path, rego)
    try:
        client = DecisionClient(endpoint, timeout=2)
        with pytest.raises(PolicyUnavailable, match="no decision"):
            client.decide_sync({})
        with pytest.raises(PolicyUnavailable, match="no decision"):
            asyncio.run(client.decide({}))
    finally:
        process.kill()


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"result": True},
        {"result": {"allow": "true"}},
        {"result": {"allow": 1}},
        {"result": {"allow": True, "reasons": "none"}},
        {"result": {"allow": True, "reasons": [1]}},
        [],
    ],
)
def test_malformed_results_never_allow(payload):
    with pytest.raises(PolicyUnavailable):
        interpret(payload)


def test_unreachable_opa_is_unavailable(tmp_path):
    client = DecisionClient(OpaEndpoint("http://opa", uds=str(tmp_path / "missing.sock")), 1)
    with pytest.raises(PolicyUnavailable, match="unreachable"):
        client.decide_sync({})
    with pytest.raises(PolicyUnavailable, match="unreachable"):
        asyncio.run(client.decide({}))


def test_http_error_from_opa_is_unavailable():
    """A real HTTP server answering 500: both the sync and the async clients refuse."""
    import http.server

    class Failing(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            body = b'{"code": "internal_error"}'
            self.send_response(500)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Failing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        client = DecisionClient(OpaEndpoint(f"http://127.0.0.1:{server.server_port}"), 1)
        with pytest.raises(PolicyUnavailable, match="HTTP 500"):
            client.decide_sync({})
        with pytest.raises(PolicyUnavailable, match="HTTP 500"):
            client.filter_sync({"resources": []})
        with pytest.raises(PolicyUnavailable, match="HTTP 500"):
            asyncio.run(client.decide({}))
    finally:
        server.shutdown()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:8181", OpaEndpoint("http://127.0.0.1:8181")),
        ("https://opa.internal:8443/", OpaEndpoint("https://opa.internal:8443")),
        ("unix:///run/opa.sock", OpaEndpoint("http://opa", uds="/run/opa.sock")),
    ],
)
def test_valid_opa_urls(url, expected):
    assert parse_opa_url(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "ftp://opa:21",
        "127.0.0.1:8181",
        "http://",
        "unix://relative.sock",
        "http://user:secret@opa:8181",
        "http://opa:8181/?x=1",
        "http://opa:port",
    ],
)
def test_invalid_opa_urls_are_refused_without_echoing_them(url):
    with pytest.raises(ConfigError, match="MLFLOW_SECURE_OPA_URL") as info:
        parse_opa_url(url)
    assert "secret" not in str(info.value)


def test_async_pool_replaces_a_connection_gone_stale_after_an_opa_restart(
    opa_binary, policy_dir, tmp_path
):
    rego = 'package mlflow.authz\ndecision := {"allow": false, "reasons": ["r"]}\n'
    process, endpoint = opa_with(opa_binary, policy_dir, tmp_path, rego)
    client = DecisionClient(endpoint, timeout=2)

    async def scenario():
        first = await client.decide({})
        process.kill()
        process.wait()
        restarted = await asyncio.to_thread(run_opa, opa_binary, policy_dir, Path(endpoint.uds))
        try:
            return first, await client.decide({})  # the pooled connection is dead by now
        finally:
            restarted.kill()

    first, second = asyncio.run(scenario())
    assert first == second == Decision(allow=False, reasons=("r",))
