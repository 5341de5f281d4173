"""Identity edges on a real `mlflow server --app-name secure` with a real managed OPA.

- A locked-out account refuses its correct password too, with 429 and Retry-After.
- Client addresses come from the socket unless the peer is a trusted proxy: uvicorn's own
  proxy-header handling (which believes X-Forwarded-For from loopback by default) is set from
  MLFLOW_SECURE_TRUSTED_PROXIES, and so are gunicorn's and waitress's.
- Audit events of identity changes name the target and what changed.

Distinct client addresses come from real sockets bound to 127.0.0.x source addresses, so
nothing here trusts a header to tell clients apart.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from mlflow_secure.identity import api_keys
from tests.support import servers

pytestmark = pytest.mark.e2e

API = "/api/2.0/mlflow-secure"
BOB_PASSWORD = "bob's long enough password"
FAILURES = {"MLFLOW_SECURE_AUTH_MAX_FAILURES": "3", "MLFLOW_SECURE_AUTH_BLOCK_SECONDS": "60"}


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def call(
    server: servers.Server,
    method: str,
    path: str,
    *,
    source: str = "127.0.0.1",
    headers: dict[str, str] | None = None,
    **kwargs,
) -> httpx.Response:
    """One request from a socket bound to `source` (a loopback address of this host)."""
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(transport=transport, timeout=30) as client:
        return client.request(method, server.url + path, headers=headers or {}, **kwargs)


def audit_events(server: servers.Server, admin: str, **query: str) -> list[dict]:
    # From an address no test blocks.
    response = call(
        server,
        "GET",
        f"{API}/audit/events",
        source="127.0.0.250",
        headers=bearer(admin),
        params={"max_results": "1000", **query},
    )
    assert response.status_code == 200, response.text
    return response.json()["events"]


def event_by_agent(server: servers.Server, admin: str, agent: str) -> dict:
    """The audit event of the request sent with User-Agent `agent` (written asynchronously)."""
    found: list[dict] = []

    def present() -> bool:
        found[:] = [e for e in audit_events(server, admin) if e["user_agent"] == agent]
        return bool(found)

    server.wait_for(present, timeout=20, what=f"the audit event of {agent}")
    assert len(found) == 1, found
    return found[0]


def unknown_key() -> str:
    """A well-formed API key the server never issued."""
    return api_keys.generate()[0]


def agent() -> str:
    return f"edges-test/{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.Server]:
    """uvicorn with two worker processes and MLFLOW_SECURE_TRUSTED_PROXIES unset."""
    server = servers.start(tmp_path_factory.mktemp("edges-plain"), workers=2, env=FAILURES)
    yield server
    server.interrupt()


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.Server]:
    """uvicorn behind a (pretend) reverse proxy on 127.0.0.1."""
    server = servers.start(
        tmp_path_factory.mktemp("edges-proxied"),
        workers=2,
        env={**FAILURES, "MLFLOW_SECURE_TRUSTED_PROXIES": "127.0.0.1/32"},
    )
    yield server
    server.interrupt()


# ---------------------------------------------------------------- the account lock


def test_a_locked_account_refuses_its_correct_password(plain: servers.Server) -> None:
    admin = plain.admin_key()
    created = call(
        plain,
        "POST",
        f"{API}/users/create",
        headers=bearer(admin),
        json={"name": "bob", "password": BOB_PASSWORD},
    )
    assert created.status_code == 200, created.text
    key = call(
        plain,
        "POST",
        f"{API}/keys/create",
        headers=bearer(admin),
        json={"principal": "bob", "scopes": ["read"]},
    ).json()["key"]
    # Warm both workers' caches with a successful login (a remembered password must not
    # outlive the lock either).
    for _ in range(6):
        ok = call(
            plain, "GET", f"{API}/whoami", source="127.0.0.9", headers=basic("bob", BOB_PASSWORD)
        )
        assert ok.status_code == 200, ok.text

    # Three wrong passwords, each from its own client address: no client is blocked, the
    # account is.
    for attempt, source in enumerate(("127.0.0.5", "127.0.0.6", "127.0.0.7")):
        wrong = call(
            plain, "GET", f"{API}/whoami", source=source, headers=basic("bob", f"wrong {attempt}")
        )
        assert wrong.status_code in {401, 429}, wrong.text
    time.sleep(0.6)  # other workers adopt the block within their poll interval

    for source in ("127.0.0.8", "127.0.0.9", "127.0.0.8", "127.0.0.9"):
        refused = call(
            plain, "GET", f"{API}/whoami", source=source, headers=basic("bob", BOB_PASSWORD)
        )
        assert refused.status_code == 429, refused.text
        assert 0 < int(refused.headers["retry-after"]) <= 61
    # The lock is on the account's password: its API keys (which cannot be guessed) still
    # work, and so does another account from the same addresses.
    assert (
        call(plain, "GET", f"{API}/whoami", source="127.0.0.8", headers=bearer(key)).status_code
        == 200
    )
    assert (
        call(plain, "GET", f"{API}/whoami", source="127.0.0.8", headers=bearer(admin)).status_code
        == 200
    )


# ---------------------------------------------------------------- client addresses


def test_without_trusted_proxies_forwarding_headers_are_ignored(plain: servers.Server) -> None:
    admin = plain.admin_key()
    name = agent()
    response = call(
        plain,
        "GET",
        f"{API}/whoami",
        headers={**bearer(admin), "X-Forwarded-For": "203.0.113.9", "User-Agent": name},
    )
    assert response.status_code == 200, response.text
    event = event_by_agent(plain, admin, name)
    assert event["client_ip"] == "127.0.0.1"  # not the forged address


def test_a_trusted_proxy_names_the_client(proxied: servers.Server) -> None:
    admin = proxied.admin_key()
    name = agent()
    forwarded = {**bearer(admin), "X-Forwarded-For": "203.0.113.9", "User-Agent": name}
    assert call(proxied, "GET", f"{API}/whoami", headers=forwarded).status_code == 200
    assert event_by_agent(proxied, admin, name)["client_ip"] == "203.0.113.9"

    # A peer that is not the trusted proxy cannot name a client.
    name = agent()
    forged = {**bearer(admin), "X-Forwarded-For": "203.0.113.9", "User-Agent": name}
    assert (
        call(proxied, "GET", f"{API}/whoami", source="127.0.0.2", headers=forged).status_code == 200
    )
    assert event_by_agent(proxied, admin, name)["client_ip"] == "127.0.0.2"


def test_behind_a_trusted_proxy_throttling_keys_on_the_forwarded_client(
    proxied: servers.Server,
) -> None:
    admin = proxied.admin_key()
    bad = unknown_key()
    for _ in range(3):
        call(
            proxied,
            "GET",
            f"{API}/whoami",
            headers={**bearer(bad), "X-Forwarded-For": "203.0.113.20"},
        )
    time.sleep(0.6)
    same_client = {**bearer(admin), "X-Forwarded-For": "203.0.113.20"}
    assert call(proxied, "GET", f"{API}/whoami", headers=same_client).status_code == 429
    other_client = {**bearer(admin), "X-Forwarded-For": "203.0.113.21"}
    assert call(proxied, "GET", f"{API}/whoami", headers=other_client).status_code == 200


def test_gunicorn_believes_only_the_trusted_proxy(tmp_path) -> None:
    """The WSGI front door reads forwarding headers itself; gunicorn's own list (which
    decides whom it believes X-Forwarded-Proto from) is set from the same setting."""
    server = servers.start(
        tmp_path,
        extra_args=("--gunicorn-opts", "--timeout 60"),
        env={"MLFLOW_SECURE_TRUSTED_PROXIES": "127.0.0.1/32"},
    )
    try:
        admin = server.admin_key()
        name = agent()
        forwarded = {**bearer(admin), "X-Forwarded-For": "203.0.113.9", "User-Agent": name}
        assert call(server, "GET", f"{API}/whoami", headers=forwarded).status_code == 200
        assert event_by_agent(server, admin, name)["client_ip"] == "203.0.113.9"
        name = agent()
        forged = {**bearer(admin), "X-Forwarded-For": "203.0.113.9", "User-Agent": name}
        response = call(server, "GET", f"{API}/whoami", source="127.0.0.2", headers=forged)
        assert response.status_code == 200
        assert event_by_agent(server, admin, name)["client_ip"] == "127.0.0.2"
    finally:
        server.interrupt()


def test_an_operator_setting_that_disagrees_refuses_to_start(tmp_path) -> None:
    server = servers.launch(tmp_path, env={"FORWARDED_ALLOW_IPS": "*"})
    try:
        server.process.wait(timeout=90)
    except servers.subprocess.TimeoutExpired:
        server.kill()
        raise AssertionError(f"server did not refuse to start:\n{server.log()}") from None
    log = server.log()
    assert "mlflow-secure: cannot start: uvicorn believes X-Forwarded-For" in log, log
    assert "MLFLOW_SECURE_TRUSTED_PROXIES" in log
    assert "Traceback" not in log


# ---------------------------------------------------------------- identity changes in the trail


def test_identity_changes_name_their_target_in_the_audit_trail(plain: servers.Server) -> None:
    admin = plain.admin_key()

    def admin_call(method: str, path: str, body: dict) -> None:
        response = call(
            plain, method, f"{API}/{path}", source="127.0.0.11", headers=bearer(admin), json=body
        )
        assert response.status_code == 200, response.text

    admin_call("POST", "teams/create", {"name": "fraud-team"})
    admin_call("POST", "users/create", {"name": "alice", "password": "alice's long password"})
    admin_call("POST", "teams/add-member", {"team": "fraud-team", "principal": "alice"})
    admin_call("POST", "roles/grant", {"principal": "alice", "role": "auditor"})
    admin_call("POST", "projects/create", {"name": "fraud"})
    admin_call(
        "POST", "projects/set-member", {"project": "fraud", "role": "editor", "team": "fraud-team"}
    )
    admin_call("POST", "service-accounts/create", {"name": "ci-bot", "owner": "alice"})
    admin_call(
        "PATCH",
        "users/update",
        {"name": "alice", "default_project": "fraud", "password": "a new long password"},
    )
    admin_call(
        "POST",
        "keys/create",
        {"principal": "ci-bot", "scopes": ["write", "read"], "projects": ["fraud"]},
    )

    def context(resource: str, change: str) -> dict:
        found: list[dict] = []

        def present() -> bool:
            events = audit_events(plain, admin, resource=resource)
            found[:] = [e for e in events if e["resource_context"].get("change") == change]
            return bool(found)

        plain.wait_for(present, timeout=20, what=f"the {change} event of {resource}")
        event = found[-1]
        assert event["decision"] == "allow"
        assert event["status"] == 200
        return event["resource_context"]

    assert context("team:fraud-team", "add_member") == {"change": "add_member", "member": "alice"}
    assert context("principal:alice", "grant_role") == {"change": "grant_role", "role": "auditor"}
    assert context("project:fraud", "set_member") == {
        "change": "set_member",
        "team": "fraud-team",
        "role": "editor",
    }
    assert context("service_account:ci-bot", "create")["owner"] == "alice"
    updated = context("user:alice", "update")
    assert updated == {
        "change": "update",
        "fields": "default_project,password",
        "default_project": "fraud",
    }
    keys = [
        e
        for e in audit_events(plain, admin, subject="admin")
        if e["endpoint"] == "mlflow-secure.keys.create"
        and e["resource_context"].get("owner") == "ci-bot"
    ]
    assert keys
    assert keys[-1]["resource_type"] == "api_key"
    assert keys[-1]["resource_context"] == {
        "change": "create",
        "owner": "ci-bot",
        "owner_kind": "service",
        "scopes": "read,write",
        "projects": "fraud",
    }
    everything = str(audit_events(plain, admin))
    assert "identity_store" not in everything
    assert "a new long password" not in everything


def test_without_trusted_proxies_throttling_keys_on_the_socket(plain: servers.Server) -> None:
    """uvicorn believes X-Forwarded-For from loopback by default: a local client naming a new
    address on every attempt would never be blocked. (Last of the module: it blocks 127.0.0.1.)"""
    admin = plain.admin_key()
    bad = unknown_key()
    for hop in range(3):  # a different forged address on every attempt
        forged = {**bearer(bad), "X-Forwarded-For": f"203.0.113.{hop + 1}"}
        call(plain, "GET", f"{API}/whoami", source="127.0.0.1", headers=forged)
    time.sleep(0.6)
    blocked = call(
        plain,
        "GET",
        f"{API}/whoami",
        source="127.0.0.1",
        headers={**bearer(admin), "X-Forwarded-For": "203.0.113.99"},
    )
    assert blocked.status_code == 429, blocked.text  # the real address is blocked
    assert "retry-after" in blocked.headers
    assert (
        call(plain, "GET", f"{API}/whoami", source="127.0.0.4", headers=bearer(admin)).status_code
        == 200
    )
