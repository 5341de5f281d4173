"""Identity edges on a real SQLite (and PostgreSQL) identity store.

- The account lock refuses the correct password too, while it lasts.
- A principal's default project: set by an administrator, honoured while valid, else the
  principal's only project; migrated onto existing stores without losing anything.
- The resource an admin API request is judged and audited on names its target and change.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from flask import Flask
from sqlalchemy import inspect, select, text
from sqlalchemy.orm import Session, sessionmaker

from mlflow_secure.admin.api import API_ROOT, register_admin_api
from mlflow_secure.audit.events import AuditEvent
from mlflow_secure.identity import store
from mlflow_secure.identity.authenticator import Authenticator, AuthError
from mlflow_secure.identity.credentials import Basic, Bearer
from mlflow_secure.identity.models import ApiKey, Principal, TeamMember
from mlflow_secure.identity.subject import Subject, bind_subject, unbind_subject
from mlflow_secure.identity.throttle import Throttle, account_key, client_key
from mlflow_secure.request.actions import Action, resolve_resource

PASSWORD = "alice's long password"


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    engine = store.open_engine(f"sqlite:///{tmp_path / 'id.db'}")
    store.migrate(engine)
    sessions = store.session_factory(engine)
    with sessions.begin() as session:
        store.create_principal(session, "root", "user", roles=["admin"])
        store.create_principal(session, "alice", "user", password=PASSWORD)
        store.create_principal(session, "ci-bot", "service", owner="alice")
        store.create_team(session, "fraud-team")
        store.add_team_member(session, "fraud-team", "alice")
        for name in ("fraud", "vision", "lonely"):
            store.create_project(session, name)
        store.set_project_member(session, "fraud", "editor", team="fraud-team")
    yield sessions
    engine.dispose()


def subject_of(sessions: sessionmaker[Session], name: str, **kwargs) -> Subject:
    with sessions() as session:
        identity = store.load_identity(session, store.get_principal(session, name).id)
    return Subject(identity, kwargs.pop("auth", "api_key"), **kwargs)


# ---------------------------------------------------------------- the account lock


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def locking(sessions: sessionmaker[Session]) -> Iterator[tuple[Authenticator, Clock]]:
    clock = Clock()
    throttle = Throttle(sessions, max_failures=3, block_seconds=60, clock=clock)
    authenticator = Authenticator(sessions, throttle)
    authenticator.start()
    yield authenticator, clock
    authenticator.stop()


def fail(authenticator: Authenticator, user: str, times: int) -> None:
    """What the front door does with failed attempts: count them per client and account."""
    for attempt in range(times):
        with pytest.raises(AuthError) as info:
            authenticator.authenticate(Basic(user, f"wrong password {attempt}"))
        authenticator.throttle.record_failure(
            [client_key(f"10.0.0.{attempt}"), info.value.throttle_account]
        )


def test_a_locked_account_refuses_the_correct_password(locking, sessions) -> None:
    authenticator, clock = locking
    assert authenticator.authenticate(Basic("alice", PASSWORD)).name == "alice"
    assert authenticator.cached(Basic("alice", PASSWORD)) is not None  # remembered

    fail(authenticator, "alice", 3)

    # The remembered login no longer answers from memory; the full check refuses it.
    assert authenticator.cached(Basic("alice", PASSWORD)) is None
    with pytest.raises(AuthError) as info:
        authenticator.authenticate(Basic("alice", PASSWORD))
    assert info.value.status == 429
    assert info.value.counts is False  # a refusal during the lock is not another failure
    assert info.value.throttle_account == account_key("alice")
    assert authenticator.throttle.retry_after([info.value.throttle_account]) == 61

    # Only the account's password is locked: another account, and the account's API keys.
    with sessions.begin() as session:
        key, _ = store.create_key(session, "alice", ["read"])
    assert authenticator.authenticate(Bearer(key)).name == "alice"

    clock.now += 61  # the lock ends
    assert authenticator.authenticate(Basic("alice", PASSWORD)).name == "alice"


def test_a_lock_set_by_another_worker_is_adopted(locking, sessions) -> None:
    authenticator, clock = locking
    other = Throttle(sessions, max_failures=3, block_seconds=60, clock=clock)
    other.record_failure([account_key("alice")] * 3)  # three failures seen by another worker
    with sessions() as session:
        authenticator.throttle.refresh(session)  # what the poller does every 0.25 s
    with pytest.raises(AuthError) as info:
        authenticator.authenticate(Basic("alice", PASSWORD))
    assert info.value.status == 429


def test_the_lock_is_checked_before_the_password(locking, monkeypatch) -> None:
    authenticator, _clock = locking
    fail(authenticator, "nobody", 3)  # unknown names lock the same way: nothing to learn
    from mlflow_secure.identity import passwords

    def refuse(*args):
        raise AssertionError("a locked account must not cost a password check")

    monkeypatch.setattr(passwords, "verify_password", refuse)
    with pytest.raises(AuthError) as info:
        authenticator.authenticate(Basic("nobody", "whatever password"))
    assert info.value.status == 429


# ---------------------------------------------------------------- default project


def test_default_project_must_be_one_of_the_principals(sessions) -> None:
    not_a_member = pytest.raises(store.IdentityError, match="not a member of project 'vision'")
    with sessions.begin() as session, not_a_member:
        store.update_principal(session, "alice", default_project="vision")
    with sessions.begin() as session, pytest.raises(store.NotFound):
        store.update_principal(session, "alice", default_project="nowhere")
    with sessions.begin() as session:
        store.update_principal(session, "alice", default_project="fraud")  # through a team
    with sessions() as session:
        principal = store.get_principal(session, "alice")
        assert store.default_project_name(session, principal) == "fraud"
        assert store.load_identity(session, principal.id).default_project == "fraud"


def test_subject_default_project_falls_back_to_the_only_project(sessions) -> None:
    assert subject_of(sessions, "alice").default_project == "fraud"  # only project
    assert subject_of(sessions, "root").default_project is None  # none
    with sessions.begin() as session:
        store.set_project_member(session, "vision", "viewer", principal="alice")
    assert subject_of(sessions, "alice").default_project is None  # two, none chosen
    with sessions.begin() as session:
        store.update_principal(session, "alice", default_project="vision")
    alice = subject_of(sessions, "alice")
    assert alice.default_project == "vision"
    assert alice.policy_input()["default_project"] == "vision"
    # A key limited to projects defaults only within them.
    limited = subject_of(sessions, "alice", key_projects=("fraud",))
    assert limited.default_project == "fraud"
    assert subject_of(sessions, "alice", key_projects=("lonely",)).default_project is None

    # Leaving the chosen project: the choice lapses (kept, but not honoured).
    with sessions.begin() as session:
        store.remove_project_member(session, "vision", principal="alice")
    assert subject_of(sessions, "alice").identity.default_project == "vision"
    assert subject_of(sessions, "alice").default_project == "fraud"
    with sessions.begin() as session:
        store.remove_team_member(session, "fraud-team", "alice")
    assert subject_of(sessions, "alice").default_project is None
    assert subject_of(sessions, "alice").policy_input()["default_project"] is None


def test_deleting_the_default_project_clears_it(sessions) -> None:
    with sessions.begin() as session:
        store.update_principal(session, "alice", default_project="fraud")
    with sessions.begin() as session:
        store.delete_project(session, "fraud")
    with sessions() as session:
        assert store.get_principal(session, "alice").default_project_id is None
    with sessions.begin() as session:
        store.create_project(session, "fraud")  # a new project of the same name
    assert subject_of(sessions, "alice").identity.default_project is None


def test_clearing_the_default_and_bumping_the_version(sessions) -> None:
    with sessions() as session:
        before = store.identity_version(session)
    with sessions.begin() as session:
        store.update_principal(session, "alice", default_project="fraud")
    with sessions.begin() as session:
        store.update_principal(session, "alice", default_project="")
    with sessions() as session:
        assert store.identity_version(session) == before + 2  # workers drop their caches
        assert store.get_principal(session, "alice").default_project_id is None


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_the_migration_keeps_every_existing_row(request, tmp_path, backend) -> None:
    """0002 adds a column to mls_principals, which keys, memberships and teams reference
    with ON DELETE CASCADE: rebuilding the table (SQLite batch mode) would delete them."""
    if backend == "sqlite":
        uri = f"sqlite:///{tmp_path / 'old.db'}"
    else:
        uri = request.getfixturevalue("postgres_server").make_database("edges_migration")
    engine = store.open_engine(uri)
    config = Config()
    config.set_main_option("script_location", str(store.MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
        connection.execute(
            text(
                "INSERT INTO mls_principals (id, name, kind, roles, clearance, disabled, "
                "created_at, updated_at) VALUES (1, 'alice', 'user', '[]', 'internal', false, "
                "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            )
        )
        connection.execute(
            text("INSERT INTO mls_teams (id, name, created_at) VALUES (1, 't', CURRENT_TIMESTAMP)")
        )
        connection.execute(text("INSERT INTO mls_team_members VALUES (1, 1)"))
        connection.execute(
            text(
                "INSERT INTO mls_api_keys (id, principal_id, digest, scopes, created_at) "
                "VALUES ('abcdefghijkl', 1, :digest, '[\"read\"]', CURRENT_TIMESTAMP)"
            ),
            {"digest": b"\0" * 32},
        )
    with store.migration_lock(engine):
        store.migrate(engine)
    columns = {c["name"] for c in inspect(engine).get_columns("mls_principals")}
    assert "default_project_id" in columns
    sessions = store.session_factory(engine)
    with sessions() as session:
        assert session.scalar(select(Principal.name)) == "alice"
        assert session.scalar(select(ApiKey.id)) == "abcdefghijkl"
        assert session.scalar(select(TeamMember.principal_id)) == 1
    with sessions.begin() as session:
        store.create_project(session, "p")
        store.set_project_member(session, "p", "viewer", principal="alice")
        store.update_principal(session, "alice", default_project="p")
    with sessions.begin() as session:
        store.delete_project(session, "p")  # the foreign key clears the default
    with sessions() as session:
        assert store.get_principal(session, "alice").default_project_id is None
    engine.dispose()


# ---------------------------------------------------------------- the admin API


class Api:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        app = Flask(__name__)
        register_admin_api(app, sessions)
        self.client = app.test_client()
        self.sessions = sessions

    def call(self, method: str, path: str, as_: str = "root", **kwargs):
        token = bind_subject(subject_of(self.sessions, as_))
        try:
            return self.client.open(API_ROOT + path, method=method, **kwargs)
        finally:
            unbind_subject(token)


def test_admin_api_sets_and_shows_the_default_project(sessions) -> None:
    api = Api(sessions)
    refused = api.call(
        "PATCH", "/users/update", json={"name": "alice", "default_project": "vision"}
    )
    assert refused.status_code == 400
    assert "not a member of project 'vision'" in refused.get_json()["message"]

    updated = api.call("PATCH", "/users/update", json={"name": "alice", "default_project": "fraud"})
    assert updated.status_code == 200, updated.get_data(as_text=True)
    assert updated.get_json()["user"]["default_project"] == "fraud"
    shown = api.call("GET", "/users/get", query_string={"name": "alice"}).get_json()["user"]
    assert shown["default_project"] == "fraud"
    assert api.call("GET", "/whoami", as_="alice").get_json()["subject"]["default_project"] == (
        "fraud"
    )
    cleared = api.call("PATCH", "/users/update", json={"name": "alice", "default_project": ""})
    assert cleared.get_json()["user"]["default_project"] is None


def test_service_accounts_get_a_default_project_through_their_own_endpoint(sessions) -> None:
    api = Api(sessions)
    with sessions.begin() as session:
        store.set_project_member(session, "vision", "editor", principal="ci-bot")
    body = {"name": "ci-bot", "default_project": "vision"}
    updated = api.call("PATCH", "/service-accounts/update", json=body)
    assert updated.status_code == 200, updated.get_data(as_text=True)
    assert updated.get_json()["service_account"]["default_project"] == "vision"
    # Each endpoint acts on its own kind only; service accounts have no password or email.
    wrong_kind = api.call(
        "PATCH", "/service-accounts/update", json={"name": "alice", "disabled": True}
    )
    assert wrong_kind.status_code == 404
    no_password = api.call(
        "PATCH", "/service-accounts/update", json={"name": "ci-bot", "password": "x" * 20}
    )
    assert no_password.status_code == 400
    assert "accepted fields" in no_password.get_json()["message"]


# ---------------------------------------------------------------- what a request is judged on


ENDPOINTS = {
    ("GET", "whoami"): "whoami",
    ("POST", "users/create"): "users.create",
    ("GET", "users/get"): "users.get",
    ("GET", "users/list"): "users.list",
    ("PATCH", "users/update"): "users.update",
    ("DELETE", "users/delete"): "users.delete",
    ("POST", "service-accounts/create"): "service_accounts.create",
    ("PATCH", "service-accounts/update"): "service_accounts.update",
    ("POST", "roles/grant"): "roles.grant",
    ("POST", "teams/add-member"): "teams.add_member",
    ("POST", "teams/remove-member"): "teams.remove_member",
    ("POST", "projects/set-member"): "projects.set_member",
    ("POST", "projects/remove-member"): "projects.remove_member",
    ("DELETE", "teams/delete"): "teams.delete",
    ("POST", "keys/create"): "keys.create",
    ("GET", "keys/list"): "keys.list",
    ("POST", "keys/revoke"): "keys.revoke",
    ("POST", "keys/rotate"): "keys.rotate",
    ("GET", "audit/events"): "audit.events",
}


def resource(sessions, method: str, path: str, body: bytes = b"", query: bytes = b"", **kw):
    access = "admin" if method != "GET" else "read"
    action = Action(f"mlflow-secure.{ENDPOINTS[(method, path)]}", access, path)
    return resolve_resource(
        action, subject_of(sessions, kw.get("as_", "root")), query, body, sessions, None
    )


@pytest.mark.parametrize(
    ("method", "path", "body", "expected"),
    [
        pytest.param(
            "POST",
            "teams/add-member",
            b'{"team": "fraud-team", "principal": "bob"}',
            {"type": "team", "id": "fraud-team", "change": "add_member", "member": "bob"},
            id="add-member",
        ),
        pytest.param(
            "POST",
            "teams/remove-member",
            b'{"team": "fraud-team", "principal": "alice"}',
            {"type": "team", "id": "fraud-team", "change": "remove_member", "member": "alice"},
            id="remove-member",
        ),
        pytest.param(
            "POST",
            "roles/grant",
            b'{"principal": "alice", "role": "auditor"}',
            {"type": "principal", "id": "alice", "change": "grant_role", "role": "auditor"},
            id="grant",
        ),
        pytest.param(
            "POST",
            "projects/set-member",
            b'{"project": "fraud", "role": "maintainer", "principal": "alice"}',
            {
                "type": "project",
                "id": "fraud",
                "change": "set_member",
                "member": "alice",
                "role": "maintainer",
            },
            id="set-member",
        ),
        pytest.param(
            "POST",
            "projects/remove-member",
            b'{"project": "fraud", "team": "fraud-team"}',
            {"type": "project", "id": "fraud", "change": "remove_member", "team": "fraud-team"},
            id="remove-project-member",
        ),
        pytest.param(
            "DELETE",
            "teams/delete",
            b'{"name": "fraud-team"}',
            {"type": "team", "id": "fraud-team", "change": "delete"},
            id="delete-team",
        ),
        pytest.param(
            "PATCH",
            "users/update",
            b'{"name": "alice", "password": "a secret password", "disabled": true}',
            {
                "type": "user",
                "id": "alice",
                "change": "update",
                "fields": ["disabled", "password"],
                "disabled": True,
            },
            id="update-never-copies-the-password",
        ),
        pytest.param(
            "POST",
            "service-accounts/create",
            b'{"name": "bot", "roles": ["auditor"]}',
            {
                "type": "service_account",
                "id": "bot",
                "change": "create",
                "fields": ["roles"],
                "roles": ["auditor"],
                "clearance": "internal",
                "owner": "root",  # the handler's default: the caller
                "owner_team": None,
            },
            id="bot-owned-by-the-caller",
        ),
        pytest.param(
            "POST",
            "keys/create",
            b'{"principal": "ci-bot", "scopes": ["write", "read"], "projects": ["fraud"]}',
            {
                "type": "api_key",
                "change": "create",
                "owner": "ci-bot",
                "owner_kind": "service",
                "owner_owner": "alice",
                "scopes": ["read", "write"],
                "projects": ["fraud"],
            },
            id="key-for-a-bot",
        ),
    ],
)
def test_changes_are_described_by_target_and_change(sessions, method, path, body, expected) -> None:
    assert resource(sessions, method, path, body) == expected


def test_every_admin_route_is_described_and_mapped() -> None:
    from mlflow_secure.admin.resources import DESCRIBERS, KEY_CHANGES
    from mlflow_secure.admin.routes import ROUTES
    from mlflow_secure.request.actions import _PLUGIN_ROUTES

    for route in ROUTES:
        path = route.path.lstrip("/")
        assert path in DESCRIBERS or path.startswith("keys/"), path
        assert (route.method, path) in _PLUGIN_ROUTES, path
    assert set(KEY_CHANGES) <= {route.path.lstrip("/") for route in ROUTES}


def test_reads_name_their_target_or_collection(sessions) -> None:
    assert resource(sessions, "GET", "whoami") == {"type": "principal", "id": "root"}
    assert resource(sessions, "GET", "users/get", query=b"name=alice") == {
        "type": "user",
        "id": "alice",
    }
    assert resource(sessions, "GET", "users/list", query=b"kind=service") == {
        "type": "principal",
        "kind": "service",
    }
    assert resource(sessions, "GET", "audit/events", query=b"subject=alice") == {
        "type": "audit_trail"
    }


def test_keys_are_judged_on_their_stored_owner(sessions) -> None:
    with sessions.begin() as session:
        _key, record = store.create_key(session, "ci-bot", ["read"], projects=["fraud"])
    body = f'{{"key_id": "{record.id}"}}'.encode()
    assert resource(sessions, "POST", "keys/revoke", body, as_="alice") == {
        "type": "api_key",
        "id": record.id,
        "change": "revoke",
        "owner": "ci-bot",
        "owner_kind": "service",
        "owner_owner": "alice",
    }
    rotated = resource(sessions, "POST", "keys/rotate", body)
    assert (rotated["change"], rotated["scopes"], rotated["projects"]) == (
        "rotate",
        ["read"],
        ["fraud"],
    )
    assert resource(sessions, "GET", "keys/list", query=b"all=true")["owner"] == "*"
    listed = resource(sessions, "GET", "keys/list", query=b"principal=ci-bot", as_="alice")
    assert (listed["owner"], listed["owner_owner"]) == ("ci-bot", "alice")
    assert resource(sessions, "GET", "keys/list", as_="alice")["owner"] == "alice"


@pytest.mark.parametrize(
    ("method", "path", "body", "query"),
    [
        pytest.param("POST", "teams/add-member", b'{"team": "a", "team": "b"}', b"", id="dup"),
        pytest.param("POST", "teams/add-member", b"not json", b"", id="not-json"),
        pytest.param("POST", "roles/grant", b'{"principal": "x"}', b"", id="missing-role"),
        pytest.param(
            "POST", "teams/add-member", b'{"team": "t", "principal": "p"}', b"team=x", id="query"
        ),
        pytest.param("GET", "users/get", b"", b"name=a&name=b", id="repeated"),
    ],
)
def test_unreadable_requests_are_marked_and_name_nothing(sessions, method, path, body, query):
    """The handler refuses them (400) with the same parser: nothing is judged as changed."""
    described = resource(sessions, method, path, body, query)
    assert described["malformed"] is True
    assert "id" not in described
    assert "member" not in described


def test_an_unreadable_key_request_is_judged_as_the_callers_own(sessions) -> None:
    """So that the caller hears what is wrong (400) rather than a denial; nothing changes."""
    described = resource(sessions, "POST", "keys/create", b'{"scopes": "read"}', as_="alice")
    assert (described["owner"], described["malformed"]) == ("alice", True)
    revoke = resource(sessions, "POST", "keys/revoke", b"{}", as_="alice")
    assert revoke["owner"] is None  # a key nobody named is nobody's


def test_the_audit_event_keeps_target_and_change(sessions) -> None:
    body = b'{"principal": "ci-bot", "scopes": ["write", "read"], "projects": ["fraud"]}'
    event = AuditEvent.for_request(
        method="POST",
        path="/api/2.0/mlflow-secure/keys/create",
        decision="allow",
        resource=resource(sessions, "POST", "keys/create", body),
    )
    assert (event.resource_type, event.resource_id) == ("api_key", None)
    assert event.resource_context == {
        "change": "create",
        "owner": "ci-bot",
        "owner_kind": "service",
        "scopes": "read,write",
        "projects": "fraud",
    }
    update = b'{"name": "alice", "disabled": false, "password": "a secret password"}'
    event = AuditEvent.for_request(
        method="PATCH",
        path="/api/2.0/mlflow-secure/users/update",
        decision="allow",
        resource=resource(sessions, "PATCH", "users/update", update),
    )
    assert (event.resource_type, event.resource_id) == ("user", "alice")
    assert event.resource_context == {
        "change": "update",
        "fields": "disabled,password",
        "disabled": "false",
    }
    assert "secret" not in str(event.to_record())


def test_mlflow_resources_keep_only_their_own_context() -> None:
    """Identity keys are not picked up from MLflow resources that happen to carry them."""
    event = AuditEvent.for_request(
        method="GET",
        path="/api/2.0/mlflow/runs/get",
        decision="allow",
        resource={"type": "run", "id": "r1", "project": "fraud", "change": "x", "role": "y"},
    )
    assert event.resource_context == {"project": "fraud"}
