"""The identity CLI against a real HTTP server running the admin API on a real SQLite store.

A tiny WSGI wrapper stands in for the front door: it binds a fixed admin subject to every
request (the real authentication and OPA decision are covered by the end-to-end tests), and
records the Authorization header so credential handling can be checked.
"""

from __future__ import annotations

import io
import json
import logging
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result
from flask import Flask
from mlflow.exceptions import MlflowException
from mlflow.server import get_app_client
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.serving import WSGIRequestHandler, make_server

from mlflow_secure import __version__
from mlflow_secure.admin.api import register_admin_api
from mlflow_secure.admin.client import SecureAdminClient
from mlflow_secure.cli.identity import register
from mlflow_secure.cli.transport import AdminApiError, HttpTransport
from mlflow_secure.client import context
from mlflow_secure.identity import api_keys, passwords, store
from mlflow_secure.identity.store import migrate, open_engine, session_factory
from mlflow_secure.identity.subject import Subject, bind_subject, unbind_subject

KEY_RE = re.compile(r"mlsk_[0-9A-Za-z]{61}")
STRONG_PASSWORD = "correct horse battery staple"
DENIED_TOKEN = "mlsk_" + "D" * 61


class QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        """No access log in test output."""


@dataclass
class Seen:
    """One request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None


@dataclass
class Server:
    url: str
    sessions: sessionmaker[Session]
    authorizations: list[str | None] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)


def _denial(start_response: Any) -> list[bytes]:
    body = json.dumps(
        {
            "error_code": "PERMISSION_DENIED",
            "message": "Permission denied.",
            "decision_id": "dec-123",
            "reasons": ["keys.create needs the admin scope"],
        }
    ).encode()
    start_response("403 FORBIDDEN", [("Content-Type", "application/json")])
    return [body]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    engine = open_engine(f"sqlite:///{tmp_path}/id.db")
    migrate(engine)
    sessions = session_factory(engine)
    with sessions.begin() as session:
        root_id = store.create_principal(session, "root", "user", roles=["admin"]).id
    app = Flask(__name__)
    register_admin_api(app, sessions)
    authorizations: list[str | None] = []
    seen: list[Seen] = []

    def front_door(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        authorization = environ.get("HTTP_AUTHORIZATION")
        authorizations.append(authorization)
        raw = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        environ["wsgi.input"] = io.BytesIO(raw)
        headers = {
            name[5:].replace("_", "-").lower(): value
            for name, value in environ.items()
            if name.startswith("HTTP_")
        }
        body = json.loads(raw) if raw else None
        seen.append(Seen(environ["REQUEST_METHOD"], environ["PATH_INFO"], headers, body))
        if authorization == f"Bearer {DENIED_TOKEN}":
            return _denial(start_response)
        with sessions() as session:
            identity = store.load_identity(session, root_id)
        token = bind_subject(Subject(identity=identity, auth="api_key", key_id="rootkey00000"))
        try:
            return list(app(environ, start_response))
        finally:
            unbind_subject(token)

    httpd = make_server("127.0.0.1", 0, front_door, threaded=True, request_handler=QuietHandler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield Server(f"http://127.0.0.1:{httpd.server_port}", sessions, authorizations, seen)
    finally:
        httpd.shutdown()
        thread.join()
        engine.dispose()


@pytest.fixture(autouse=True)
def _no_tracking_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.mlflow/credentials of the shell
    for name in (
        "MLFLOW_TRACKING_URI",
        "MLFLOW_TRACKING_TOKEN",
        "MLFLOW_TRACKING_USERNAME",
        "MLFLOW_TRACKING_PASSWORD",
        "MLFLOW_TRACKING_AUTH",
        "MLFLOW_TRACKING_AWS_SIGV4",
        "MLFLOW_TRACKING_INSECURE_TLS",
        "MLFLOW_TRACKING_SERVER_CERT_PATH",
        "MLFLOW_TRACKING_CLIENT_CERT_PATH",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
        "MLFLOW_SECURE_API_KEY",
        "MLFLOW_SECURE_API_KEY_FILE",
        "MLFLOW_SECURE_PROJECT",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")


@pytest.fixture
def cli(server: Server) -> Any:
    group = click.Group("mlflow-secure")
    register(group)
    runner = CliRunner()

    def run(*args: str, input: str | None = None, env: dict | None = None) -> Result:
        environment = {"MLFLOW_TRACKING_URI": server.url, **(env or {})}
        return runner.invoke(group, list(args), input=input, env=environment)

    return run


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.output


def failed(result: Result, exit_code: int = 1) -> str:
    assert result.exit_code == exit_code, result.output
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
    return result.output


def stored_key(server: Server, key_id: str) -> tuple[Any, str]:
    with server.sessions() as session:
        return store.get_key(session, key_id), store.key_owner(session, key_id).name


def aware(moment: datetime | None) -> datetime | None:
    return moment.replace(tzinfo=UTC) if moment and moment.tzinfo is None else moment


# ---------------------------------------------------------------- keys


def test_keys_create_for_a_service_account(cli: Any, server: Server) -> None:
    ok(cli("projects", "create", "fraud"))
    ok(cli("service-accounts", "create", "ci-bot"))

    before = datetime.now(UTC)
    output = ok(
        cli(
            "keys",
            "create",
            "--service-account",
            "ci-bot",
            "--scope",
            "write",
            "--project",
            "fraud",
            "--expires",
            "30d",
        )
    )

    keys = KEY_RE.findall(output)
    assert len(keys) == 1  # printed exactly once
    parsed = api_keys.parse(keys[0])
    assert "Store this key now" in output
    assert "for ci-bot" in output
    record, owner = stored_key(server, parsed.key_id)
    assert owner == "ci-bot"
    assert record.scopes == ["write"]
    assert record.projects == ["fraud"]
    assert record.created_by == "root"
    expires = aware(record.expires_at)
    assert (
        before + timedelta(days=30, seconds=-5) <= expires <= before + timedelta(days=30, seconds=5)
    )
    assert api_keys.matches(parsed, record.digest)


def test_keys_create_json_and_defaults(cli: Any, server: Server) -> None:
    ok(cli("users", "create", "alice"))

    payload = json.loads(
        ok(
            cli(
                "keys",
                "create",
                "--user",
                "alice",
                "--scope",
                "read",
                "--scope",
                "write",
                "--name",
                "laptop",
                "--expires",
                "12h",
                "--json",
            )
        )
    )
    assert api_keys.parse(payload["key"]).key_id == payload["api_key"]["key_id"]
    assert payload["api_key"]["principal"] == "alice"
    assert payload["api_key"]["name"] == "laptop"
    assert payload["api_key"]["scopes"] == ["read", "write"]
    assert payload["api_key"]["projects"] is None

    mine = json.loads(ok(cli("keys", "create", "--scope", "read", "--json")))
    assert mine["api_key"]["principal"] == "root"  # neither flag: the caller
    assert mine["api_key"]["expires_at"] is None


@pytest.mark.parametrize(
    ("expires", "seconds"), [("90m", 5400), ("12h", 43200), ("30d", 2592000), ("52w", 31449600)]
)
def test_expiry_units(cli: Any, server: Server, expires: str, seconds: int) -> None:
    before = datetime.now(UTC)
    payload = json.loads(
        ok(cli("keys", "create", "--scope", "read", "--expires", expires, "--json"))
    )
    expires_at = datetime.fromisoformat(payload["api_key"]["expires_at"].replace("Z", "+00:00"))
    assert abs((expires_at - before).total_seconds() - seconds) < 5


@pytest.mark.parametrize("expires", ["30", "30x", "0d", "-1d", "d", "1.5h"])
def test_bad_expiry_is_a_usage_error(cli: Any, server: Server, expires: str) -> None:
    output = failed(cli("keys", "create", "--scope", "read", "--expires", expires), exit_code=2)
    assert "--expires" in output
    assert len(server.authorizations) == 0  # refused before any request


def test_keys_create_usage_errors(cli: Any) -> None:
    failed(cli("keys", "create"), exit_code=2)  # --scope is required
    failed(cli("keys", "create", "--scope", "root"), exit_code=2)
    both = failed(
        cli("keys", "create", "--scope", "read", "--user", "a", "--service-account", "b"), 2
    )
    assert "not both" in both


def test_keys_list_never_shows_the_key(cli: Any, server: Server) -> None:
    ok(cli("service-accounts", "create", "ci-bot"))
    bot_key = KEY_RE.findall(
        ok(
            cli(
                "keys", "create", "--service-account", "ci-bot", "--scope", "write", "--name", "gha"
            )
        )
    )[0]
    root_key = KEY_RE.findall(ok(cli("keys", "create", "--scope", "admin")))[0]
    bot_id = api_keys.parse(bot_key).key_id

    listing = ok(cli("keys", "list", "--service-account", "ci-bot"))
    assert api_keys.display(bot_id) in listing
    assert "gha" in listing
    assert "active" in listing
    assert "STATUS" in listing
    mine = ok(cli("keys", "list"))
    assert api_keys.display(api_keys.parse(root_key).key_id) in mine
    assert bot_id not in mine
    everything = ok(cli("keys", "list", "--all"))
    as_json = ok(cli("keys", "list", "--all", "--json"))
    for text in (listing, mine, everything, as_json):
        assert bot_key not in text
        assert root_key not in text
        assert KEY_RE.search(text) is None
    assert len(json.loads(as_json)["api_keys"]) == 2
    failed(cli("keys", "list", "--all", "--user", "root"), exit_code=2)


def test_keys_revoke(cli: Any, server: Server) -> None:
    first = KEY_RE.findall(ok(cli("keys", "create", "--scope", "read")))[0]
    second = KEY_RE.findall(ok(cli("keys", "create", "--scope", "read")))[0]
    first_id, second_id = api_keys.parse(first).key_id, api_keys.parse(second).key_id

    output = ok(cli("keys", "revoke", api_keys.display(first_id)))  # as `keys list` shows it
    assert f"Revoked API key {api_keys.display(first_id)}" in output
    assert stored_key(server, first_id)[0].revoked_at is not None
    assert "revoked" in ok(cli("keys", "list"))

    # A whole (say, leaked) key is accepted too, and only its id travels.
    ok(cli("keys", "revoke", second))
    assert stored_key(server, second_id)[0].revoked_at is not None

    missing = failed(cli("keys", "revoke", "nosuchkey000"))
    assert "no such API key" in missing
    garbage = failed(cli("keys", "revoke", "not-a-key!"), exit_code=2)
    assert "not-a-key!" not in garbage


def test_keys_rotate(cli: Any, server: Server) -> None:
    old = KEY_RE.findall(ok(cli("keys", "create", "--scope", "write", "--name", "ci")))[0]
    old_id = api_keys.parse(old).key_id

    before = datetime.now(UTC)
    output = ok(cli("keys", "rotate", old_id, "--grace", "1h"))
    new = KEY_RE.findall(output)
    assert len(new) == 1
    assert new[0] != old
    assert "Store this key now" in output
    assert "keeps working until" in output
    new_id = api_keys.parse(new[0]).key_id
    old_record = stored_key(server, old_id)[0]
    assert old_record.replaced_by == new_id
    grace_end = aware(old_record.expires_at)
    assert before + timedelta(seconds=3595) <= grace_end <= before + timedelta(seconds=3605)
    new_record, owner = stored_key(server, new_id)
    assert (owner, new_record.scopes, new_record.name) == ("root", ["write"], "ci")

    payload = json.loads(ok(cli("keys", "rotate", new_id, "--grace", "0", "--json")))
    assert stored_key(server, new_id)[0].replaced_by == payload["api_key"]["key_id"]
    assert aware(stored_key(server, new_id)[0].expires_at) <= datetime.now(UTC)
    assert "rotated" in ok(cli("keys", "list")) or "expired" in ok(cli("keys", "list"))

    ok(cli("keys", "revoke", payload["api_key"]["key_id"]))
    refused = failed(cli("keys", "rotate", payload["api_key"]["key_id"]))
    assert "a revoked key cannot be rotated" in refused


# ---------------------------------------------------------------- users


def test_users_create_with_a_prompted_password(cli: Any, server: Server) -> None:
    output = ok(
        cli(
            "users",
            "create",
            "alice",
            "--password-prompt",
            "--role",
            "admin",
            "--clearance",
            "confidential",
            "--email",
            "alice@example.com",
            "--display-name",
            "Alice",
            input=f"{STRONG_PASSWORD}\n{STRONG_PASSWORD}\n",
        )
    )
    assert "Created user alice" in output
    assert STRONG_PASSWORD not in output
    user = json.loads(ok(cli("users", "get", "alice", "--json")))["user"]
    assert user["has_password"] is True
    assert user["roles"] == ["admin"]
    assert user["clearance"] == "confidential"
    assert user["email"] == "alice@example.com"
    assert user["display_name"] == "Alice"


def test_users_create_password_from_stdin(cli: Any, server: Server) -> None:
    ok(cli("users", "create", "bob", "--password-stdin", input=STRONG_PASSWORD + "\n"))
    with server.sessions() as session:
        stored = store.get_principal(session, "bob").password_hash
        assert passwords.verify_password(STRONG_PASSWORD, stored)

    weak = failed(cli("users", "create", "carol", "--password-stdin", input="short\n"))
    assert "at least 12 characters" in weak
    assert "short\n" not in weak
    failed(cli("users", "create", "dan", "--password-stdin", "--password-prompt"), exit_code=2)
    mismatch = cli("users", "create", "erin", "--password-prompt", input="aaaaaaaaaaaaa\nb\n\n")
    assert mismatch.exit_code != 0
    failed(cli("users", "create", "erin", "--password", STRONG_PASSWORD), exit_code=2)


def test_users_get_list_update_delete(cli: Any, server: Server) -> None:
    ok(cli("users", "create", "alice", "--email", "a@example.com"))
    ok(cli("service-accounts", "create", "ci-bot"))
    ok(cli("teams", "create", "fraud-team"))
    ok(cli("teams", "add-member", "fraud-team", "alice"))

    details = ok(cli("users", "get", "alice"))
    assert "alice (user)" in details
    assert "fraud-team" in details
    assert "a@example.com" in details

    listing = ok(cli("users", "list"))
    assert all(name in listing for name in ("alice", "ci-bot", "root"))
    only_bots = ok(cli("users", "list", "--kind", "service"))
    assert "ci-bot" in only_bots
    assert "alice" not in only_bots

    ok(cli("users", "update", "alice", "--disable", "--clearance", "restricted"))
    user = json.loads(ok(cli("users", "get", "alice", "--json")))["user"]
    assert (user["disabled"], user["clearance"]) == (True, "restricted")
    ok(cli("users", "update", "alice", "--enable"))
    assert json.loads(ok(cli("users", "get", "alice", "--json")))["user"]["disabled"] is False
    nothing = failed(cli("users", "update", "alice"))
    assert "nothing to update" in nothing

    aborted = cli("users", "delete", "alice", input="n\n")
    assert aborted.exit_code == 1
    assert "alice" in ok(cli("users", "list"))
    ok(cli("users", "delete", "alice", input="y\n"))
    assert "no user named 'ci-bot'" in failed(cli("users", "delete", "ci-bot", "--yes"))
    assert "alice" not in ok(cli("users", "list"))


def test_last_admin_is_protected(cli: Any) -> None:
    deleted = failed(cli("users", "delete", "root", "--yes"))
    assert "last enabled admin" in deleted
    disabled = failed(cli("users", "update", "root", "--disable"))
    assert "last enabled admin" in disabled
    revoked = failed(cli("roles", "revoke", "root", "admin"))
    assert "last enabled admin" in revoked


# ---------------------------------------------------------------- service accounts, roles


def test_service_accounts(cli: Any) -> None:
    ok(cli("teams", "create", "ml-platform"))

    output = ok(cli("service-accounts", "create", "ci-bot"))
    assert "Created service account ci-bot (owner: root)" in output
    ok(
        cli(
            "service-accounts",
            "create",
            "nightly",
            "--owner-team",
            "ml-platform",
            "--role",
            "auditor",
            "--clearance",
            "public",
            "--display-name",
            "Nightly",
        )
    )

    listing = ok(cli("service-accounts", "list"))
    assert "ci-bot" in listing
    assert "ml-platform" in listing
    assert not any(line.startswith("root") for line in listing.splitlines())
    accounts = json.loads(ok(cli("service-accounts", "list", "--json")))["service_accounts"]
    assert [a["name"] for a in accounts] == ["ci-bot", "nightly"]

    wrong_kind = failed(cli("service-accounts", "delete", "root", "--yes"))
    assert "no service account named 'root'" in wrong_kind
    ok(cli("service-accounts", "delete", "ci-bot", "--yes"))
    accounts = json.loads(ok(cli("service-accounts", "list", "--json")))["service_accounts"]
    assert [a["name"] for a in accounts] == ["nightly"]


def test_roles(cli: Any) -> None:
    ok(cli("users", "create", "alice"))

    assert "Granted auditor to alice" in ok(cli("roles", "grant", "alice", "auditor"))
    assert json.loads(ok(cli("users", "get", "alice", "--json")))["user"]["roles"] == ["auditor"]
    assert "Revoked auditor from alice" in ok(cli("roles", "revoke", "alice", "auditor"))
    assert json.loads(ok(cli("users", "get", "alice", "--json")))["user"]["roles"] == []
    failed(cli("roles", "grant", "alice", "emperor"), exit_code=2)
    missing = failed(cli("roles", "grant", "nobody", "admin"))
    assert "no principal named 'nobody'" in missing


# ---------------------------------------------------------------- teams and projects


def test_teams(cli: Any) -> None:
    ok(cli("users", "create", "alice"))

    ok(cli("teams", "create", "fraud-team", "--description", "Fraud ML"))
    assert "Added alice to team fraud-team" in ok(cli("teams", "add-member", "fraud-team", "alice"))
    listing = ok(cli("teams", "list"))
    assert "fraud-team" in listing
    assert "alice" in listing
    assert "Fraud ML" in listing
    teams = json.loads(ok(cli("teams", "list", "--json")))["teams"]
    assert teams[0]["members"] == ["alice"]
    ok(cli("teams", "remove-member", "fraud-team", "alice"))
    assert json.loads(ok(cli("teams", "list", "--json")))["teams"][0]["members"] == []
    duplicate = failed(cli("teams", "create", "fraud-team"))
    assert "already exists" in duplicate
    ok(cli("teams", "delete", "fraud-team", "--yes"))
    assert "(none)" in ok(cli("teams", "list"))


def test_projects(cli: Any) -> None:
    ok(cli("users", "create", "alice"))
    ok(cli("service-accounts", "create", "ci-bot"))
    ok(cli("teams", "create", "fraud-team"))

    ok(cli("projects", "create", "fraud", "--description", "Card fraud"))
    ok(cli("projects", "set-member", "fraud", "--role", "editor", "--user", "alice"))
    ok(cli("projects", "set-member", "fraud", "--role", "viewer", "--service-account", "ci-bot"))
    output = ok(
        cli("projects", "set-member", "fraud", "--role", "maintainer", "--team", "fraud-team")
    )
    assert "team fraud-team is now maintainer in project fraud" in output

    listing = ok(cli("projects", "list"))
    assert "alice=editor" in listing
    assert "ci-bot=viewer" in listing
    assert "team:fraud-team=maintainer" in listing
    failed(cli("projects", "set-member", "fraud", "--role", "editor"), exit_code=2)
    failed(cli("projects", "set-member", "fraud", "--role", "owner", "--user", "alice"), 2)
    failed(
        cli("projects", "set-member", "fraud", "--role", "editor", "--user", "a", "--team", "t"), 2
    )

    ok(cli("projects", "remove-member", "fraud", "--team", "fraud-team"))
    members = json.loads(ok(cli("projects", "list", "--json")))["projects"][0]["members"]
    assert {"team": "fraud-team", "role": "maintainer"} not in members
    missing = failed(cli("projects", "remove-member", "fraud", "--team", "fraud-team"))
    assert "no such member" in missing
    ok(cli("projects", "delete", "fraud", "--yes"))
    assert json.loads(ok(cli("projects", "list", "--json")))["projects"] == []


# ---------------------------------------------------------------- whoami and connection


def test_whoami(cli: Any) -> None:
    output = ok(cli("whoami"))
    assert "root (user, authenticated by api_key)" in output
    assert "admin" in output
    assert "mlsk_rootkey00000…" in output
    subject = json.loads(ok(cli("whoami", "--json")))["subject"]
    assert subject["id"] == "root"


def test_tracking_uri_option_and_requirement(cli: Any, server: Server) -> None:
    assert "root" in ok(cli("whoami", "--tracking-uri", server.url))
    runner = CliRunner()
    group = click.Group("mlflow-secure")
    register(group)
    missing = runner.invoke(group, ["whoami"], env={"MLFLOW_TRACKING_URI": None})
    assert missing.exit_code == 2
    assert "--tracking-uri" in missing.output
    not_http = failed(cli("whoami", "--tracking-uri", "sqlite:///mlflow.db"))
    assert "http:// or https://" in not_http


def test_api_key_is_sent_as_the_token(cli: Any, server: Server) -> None:
    key = "mlsk_" + "K" * 61
    ok(cli("whoami", env={"MLFLOW_SECURE_API_KEY": key}))
    assert server.authorizations[-1] == f"Bearer {key}"

    ok(cli("whoami", env={"MLFLOW_SECURE_API_KEY": key, "MLFLOW_TRACKING_TOKEN": "explicit"}))
    assert server.authorizations[-1] == "Bearer explicit"

    ok(cli("whoami"))
    assert server.authorizations[-1] is None

    bad = failed(cli("whoami", env={"MLFLOW_SECURE_API_KEY": "'" + key + "'"}))
    assert "MLFLOW_SECURE_API_KEY" in bad
    assert key not in bad


def test_a_denial_shows_reasons_and_decision_id(cli: Any) -> None:
    output = failed(
        cli("keys", "create", "--scope", "admin", env={"MLFLOW_SECURE_API_KEY": DENIED_TOKEN})
    )
    assert "Permission denied." in output
    assert "reason: keys.create needs the admin scope" in output
    assert "decision id: dec-123" in output
    assert DENIED_TOKEN not in output


def test_python_client_via_get_app_client(server: Server) -> None:
    client = get_app_client("secure", tracking_uri=server.url)
    assert isinstance(client, SecureAdminClient)

    assert client.create_team("vision")["team"]["name"] == "vision"
    created = client.create_key(["read"], name="nb", expires_in_seconds=600)
    assert api_keys.parse(created["key"]).key_id == created["api_key"]["key_id"]
    listed = client.list_keys(all_keys=True)["api_keys"]
    assert [k["key_id"] for k in listed] == [created["api_key"]["key_id"]]
    assert client.delete_team("vision") == {}
    with pytest.raises(MlflowException, match="no team named 'vision'") as caught:
        client.delete_team("vision")
    assert caught.value.error_code == "RESOURCE_DOES_NOT_EXIST"


# ---------------------------------------------------------------- default project


def test_users_update_default_project(cli: Any, server: Server) -> None:
    ok(cli("users", "create", "alice"))
    ok(cli("projects", "create", "fraud"))
    ok(cli("projects", "set-member", "fraud", "--role", "editor", "--user", "alice"))

    assert "Updated alice" in ok(cli("users", "update", "alice", "--default-project", "fraud"))
    update = server.seen[-1]
    assert (update.method, update.path) == ("PATCH", "/api/2.0/mlflow-secure/users/update")
    assert update.body == {"name": "alice", "default_project": "fraud"}  # nothing else changes
    assert json.loads(ok(cli("users", "get", "alice", "--json")))["user"]["default_project"] == (
        "fraud"
    )
    assert re.search(r"default project:\s+fraud", ok(cli("users", "get", "alice")))

    ok(cli("users", "update", "alice", "--default-project", ""))  # "" clears it
    assert server.seen[-1].body == {"name": "alice", "default_project": ""}


def test_default_project_for_a_service_account(cli: Any, server: Server) -> None:
    ok(cli("projects", "create", "fraud"))
    ok(cli("service-accounts", "create", "ci-bot"))
    ok(cli("projects", "set-member", "fraud", "--role", "editor", "--service-account", "ci-bot"))
    ok(cli("users", "update", "ci-bot", "--default-project", "fraud"))
    assert server.seen[-1].body == {"name": "ci-bot", "default_project": "fraud"}


def test_python_client_sends_default_project(server: Server) -> None:
    client = SecureAdminClient(server.url)
    client.create_user("bob")
    with pytest.raises(MlflowException):
        client.update_user("bob", default_project="nosuchproject")
    assert server.seen[-1].body == {"name": "bob", "default_project": "nosuchproject"}


# ---------------------------------------------------------------- the CLI's own transport


def test_cli_sends_context_headers_and_its_user_agent(cli: Any, server: Server) -> None:
    ok(cli("whoami", env={"MLFLOW_SECURE_PROJECT": "fraud"}))
    headers = server.seen[-1].headers
    assert headers["user-agent"] == f"mlflow-secure-cli/{__version__}"
    assert headers["x-mlflow-secure-client"] == f"mlflow-secure/{__version__}"
    assert headers["x-mlflow-secure-encryption"] == "none"
    assert headers["x-mlflow-secure-project"] == "fraud"
    ok(cli("whoami"))
    assert "x-mlflow-secure-project" not in server.seen[-1].headers


def test_cli_leaves_out_a_bad_project_setting(
    cli: Any, server: Server, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(context, "_warned_values", set())
    with caplog.at_level(logging.WARNING, logger=context.__name__):
        ok(cli("whoami", env={"MLFLOW_SECURE_PROJECT": "fraud\r\nX-Evil: 1"}))
    assert "x-mlflow-secure-project" not in server.seen[-1].headers
    assert "x-evil" not in server.seen[-1].headers
    assert "MLFLOW_SECURE_PROJECT" in caplog.text


def test_basic_credentials_win_as_in_mlflow(cli: Any, server: Server, tmp_path: Path) -> None:
    key = "mlsk_" + "K" * 61
    basic = {"MLFLOW_TRACKING_USERNAME": "root", "MLFLOW_TRACKING_PASSWORD": "pw"}
    ok(cli("whoami", env={**basic, "MLFLOW_TRACKING_TOKEN": "t", "MLFLOW_SECURE_API_KEY": key}))
    assert server.authorizations[-1] == "Basic cm9vdDpwdw=="

    credentials = tmp_path / "home" / ".mlflow" / "credentials"
    credentials.parent.mkdir(parents=True)
    credentials.write_text(
        "[mlflow]\nmlflow_tracking_username = root\nmlflow_tracking_password = pw\n"
    )
    ok(cli("whoami"))
    assert server.authorizations[-1] == "Basic cm9vdDpwdw=="


def test_secure_auth_provider_credential(cli: Any, server: Server, tmp_path: Path) -> None:
    key = "mlsk_" + "F" * 61
    key_file = tmp_path / "key"
    key_file.write_text(key + "\n")
    key_file.chmod(0o600)
    secure = {"MLFLOW_TRACKING_AUTH": "secure", "MLFLOW_SECURE_API_KEY_FILE": str(key_file)}
    # As in MLflow, the auth plugin's header replaces a token left in the environment.
    ok(cli("whoami", env={**secure, "MLFLOW_TRACKING_TOKEN": "stale"}))
    assert server.authorizations[-1] == f"Bearer {key}"

    key_file.chmod(0o644)
    loose = failed(cli("whoami", env=secure))
    assert "chmod 600" in loose
    assert key not in loose
    nothing = failed(cli("whoami", env={"MLFLOW_TRACKING_AUTH": "secure"}))
    assert "found no credential" in nothing


def test_tls_settings_that_contradict_are_refused(cli: Any, server: Server) -> None:
    env = {"MLFLOW_TRACKING_INSECURE_TLS": "true", "MLFLOW_TRACKING_SERVER_CERT_PATH": "/ca.pem"}
    assert "set one of them" in failed(cli("whoami", env=env))
    assert "must be one of" in failed(cli("whoami", env={"MLFLOW_TRACKING_INSECURE_TLS": "yes"}))


def test_other_auth_providers_go_through_mlflow(cli: Any, server: Server) -> None:
    # Only MLflow can load another auth plugin: the CLI hands such requests to MLflow's client.
    other = {"MLFLOW_TRACKING_AUTH": "not-a-plugin"}
    with pytest.warns(UserWarning, match="not-a-plugin"):
        ok(cli("whoami", env=other))
    assert server.seen[-1].headers["user-agent"].startswith("mlflow-python-client/")
    with pytest.warns(UserWarning, match="not-a-plugin"):
        denied = failed(
            cli(
                "keys",
                "create",
                "--scope",
                "admin",
                env={**other, "MLFLOW_TRACKING_TOKEN": DENIED_TOKEN},
            )
        )
    assert "reason: keys.create needs the admin scope" in denied
    assert "decision id: dec-123" in denied


def test_a_non_json_error_is_reported_with_its_status() -> None:
    class Quiet(WSGIRequestHandler):
        def log_request(self, *args: Any, **kwargs: Any) -> None:
            """No access log in test output."""

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        status = "502 Bad Gateway" if environ["PATH_INFO"].endswith("/busy") else "404 Not Found"
        start_response(status, [("Content-Type", "text/html")])
        return [b"<html>proxy says no</html>"]

    httpd = make_server("127.0.0.1", 0, app, request_handler=Quiet)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    transport = HttpTransport(f"http://127.0.0.1:{httpd.server_port}", max_retries=0)
    try:
        with pytest.raises(AdminApiError) as missing:
            transport.request("GET", "/api/2.0/mlflow-secure/whoami")
        with pytest.raises(AdminApiError) as busy:  # transient: retried, then given up
            transport.request("GET", "/api/2.0/mlflow-secure/busy")
    finally:
        httpd.shutdown()
        thread.join()
    assert missing.value.status == 404
    assert "failed with error code 404 != 200" in missing.value.message
    assert "proxy says no" in missing.value.message
    assert "too many 502 error responses" in busy.value.message
