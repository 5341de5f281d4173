"""The admin API against a real SQLite identity store, one bound subject per request.

The real front door authenticates and asks OPA before these handlers run (covered end to end
elsewhere); here a subject is bound directly, so what is tested is the handlers' own job:
strict input, defaults, rendering, the key shown once, and lockout protection.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from mlflow_secure.admin.api import API_ROOT, MAX_BODY_BYTES, register_admin_api
from mlflow_secure.identity import api_keys, store
from mlflow_secure.identity.models import ApiKey
from mlflow_secure.identity.store import migrate, open_engine, session_factory
from mlflow_secure.identity.subject import Subject, bind_subject, unbind_subject

STRONG_PASSWORD = "correct horse battery staple"


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    engine = open_engine(f"sqlite:///{tmp_path}/id.db")
    migrate(engine)
    yield session_factory(engine)
    engine.dispose()


class Api:
    """The Flask test client, acting as one principal at a time (like the front door would)."""

    def __init__(self, sessions: sessionmaker[Session], prefix: str = "") -> None:
        app = Flask(__name__)
        register_admin_api(app, sessions, lambda path: prefix + path)
        self.client = app.test_client()
        self.sessions = sessions
        self.prefix = prefix
        self.acting_as = "root"

    def subject(self, name: str) -> Subject:
        with self.sessions() as session:
            principal_id = store.get_principal(session, name).id
            identity = store.load_identity(session, principal_id)
        return Subject(identity=identity, auth="api_key", key_id="abcdefghijkl")

    def call(self, method: str, path: str, *, as_: str | None = None, **kwargs: Any):
        token = bind_subject(self.subject(as_ or self.acting_as))
        try:
            return self.client.open(self.prefix + API_ROOT + path, method=method, **kwargs)
        finally:
            unbind_subject(token)

    def get(self, path: str, expect: int = 200, **query: Any) -> dict[str, Any]:
        return self._checked(self.call("GET", path, query_string=query), expect)

    def send(self, method: str, path: str, body: Any, expect: int = 200, **kw: Any) -> dict:
        return self._checked(self.call(method, path, json=body, **kw), expect)

    def post(self, path: str, body: Any, expect: int = 200) -> dict[str, Any]:
        return self.send("POST", path, body, expect)

    @staticmethod
    def _checked(response, expect: int) -> dict[str, Any]:
        assert response.status_code == expect, response.get_data(as_text=True)
        assert response.mimetype == "application/json"
        assert response.headers["Cache-Control"] == "no-store"
        payload = response.get_json()
        if expect >= 400:
            assert set(payload) == {"error_code", "message"}
        return payload


@pytest.fixture
def api(sessions: sessionmaker[Session]) -> Api:
    with sessions.begin() as session:
        store.create_principal(session, "root", "user", roles=["admin"])
    return Api(sessions)


def snapshot(sessions: sessionmaker[Session]) -> tuple:
    """Everything a bad request must leave untouched."""
    with sessions() as session:
        principals = [
            (p.name, p.kind, tuple(p.roles), p.clearance, p.disabled, p.password_hash, p.email)
            for p in store.list_principals(session)
        ]
        teams = [(t.name, tuple(m)) for t, m in store.list_teams(session)]
        projects = [
            (p.name, json.dumps(m, sort_keys=True)) for p, m in store.list_projects(session)
        ]
        keys = [
            (k.id, k.revoked_at, k.expires_at, k.replaced_by) for k, _ in store.list_keys(session)
        ]
        return (store.identity_version(session), principals, teams, projects, keys)


def parse_time(value: str) -> datetime:
    assert value.endswith("Z")
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# ---------------------------------------------------------------- whoami


def test_whoami_is_the_bound_subject(api: Api) -> None:
    payload = api.get("/whoami")

    subject = payload["subject"]
    assert subject["id"] == "root"
    assert subject["kind"] == "user"
    assert subject["roles"] == ["admin"]
    assert subject["auth"] == "api_key"
    assert subject["key_id"] == "abcdefghijkl"


def test_routes_follow_the_static_prefix(sessions: sessionmaker[Session], api: Api) -> None:
    prefixed = Api(sessions, prefix="/mlflow")

    assert prefixed.get("/whoami")["subject"]["id"] == "root"
    assert api.client.get("/mlflow" + API_ROOT + "/whoami").status_code == 404


# ---------------------------------------------------------------- users


def test_user_lifecycle(api: Api) -> None:
    created = api.post(
        "/users/create",
        {
            "name": "alice",
            "display_name": "Alice A.",
            "email": "alice@example.com",
            "password": STRONG_PASSWORD,
            "roles": ["auditor"],
            "clearance": "confidential",
        },
    )["user"]
    assert created["name"] == "alice"
    assert created["kind"] == "user"
    assert created["roles"] == ["auditor"]
    assert created["clearance"] == "confidential"
    assert created["has_password"] is True
    assert created["disabled"] is False
    assert "password_hash" not in created
    assert "password" not in created
    assert STRONG_PASSWORD not in json.dumps(created)
    assert parse_time(created["created_at"]) <= datetime.now(UTC)

    fetched = api.get("/users/get", name="alice")["user"]
    assert fetched["email"] == "alice@example.com"
    assert fetched["teams"] == []
    assert fetched["projects"] == []

    updated = api.send(
        "PATCH",
        "/users/update",
        {"name": "alice", "email": "a@example.org", "clearance": "restricted", "disabled": True},
    )["user"]
    assert updated["email"] == "a@example.org"
    assert updated["clearance"] == "restricted"
    assert updated["disabled"] is True
    assert updated["display_name"] == "Alice A."  # untouched

    api.send("DELETE", "/users/delete", {"name": "alice"})
    api.get("/users/get", expect=404, name="alice")


def test_user_defaults_and_password_change(api: Api, sessions: sessionmaker[Session]) -> None:
    created = api.post("/users/create", {"name": "bob"})["user"]
    assert created["has_password"] is False
    assert created["clearance"] == "internal"
    assert created["roles"] == []

    updated = api.send("PATCH", "/users/update", {"name": "bob", "password": STRONG_PASSWORD})
    assert updated["user"]["has_password"] is True
    with sessions() as session:
        stored = store.get_principal(session, "bob").password_hash
    assert stored is not None
    assert STRONG_PASSWORD not in stored


def test_users_list_filters_by_kind(api: Api) -> None:
    api.post("/users/create", {"name": "alice"})
    api.post("/service-accounts/create", {"name": "ci-bot"})

    everyone = api.get("/users/list")["users"]
    assert [u["name"] for u in everyone] == ["alice", "ci-bot", "root"]
    assert all("password_hash" not in u for u in everyone)
    assert [u["name"] for u in api.get("/users/list", kind="user")["users"]] == ["alice", "root"]
    assert [u["name"] for u in api.get("/users/list", kind="service")["users"]] == ["ci-bot"]
    assert "kind" in api.get("/users/list", expect=400, kind="robot")["message"]


def test_user_store_errors_keep_their_status(api: Api) -> None:
    api.post("/users/create", {"name": "alice"})

    duplicate = api.post("/users/create", {"name": "alice"}, expect=400)
    assert duplicate["error_code"] == "RESOURCE_ALREADY_EXISTS"
    missing = api.get("/users/get", expect=404, name="nobody")
    assert missing["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    weak = api.post("/users/create", {"name": "carol", "password": "short"}, expect=400)
    assert weak["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "short" not in weak["message"]
    bad_name = api.post("/users/create", {"name": "bad name!"}, expect=400)
    assert "name" in bad_name["message"]
    api.post("/users/create", {"name": "dave", "roles": ["superuser"]}, expect=400)
    api.post("/users/create", {"name": "erin", "clearance": "secret"}, expect=400)
    nothing = api.send("PATCH", "/users/update", {"name": "alice"}, expect=400)
    assert "nothing to update" in nothing["message"]


def test_each_delete_endpoint_deletes_only_its_own_kind(api: Api) -> None:
    api.post("/users/create", {"name": "alice"})
    api.post("/service-accounts/create", {"name": "ci-bot"})

    api.send("DELETE", "/service-accounts/delete", {"name": "alice"}, expect=404)
    api.send("DELETE", "/users/delete", {"name": "ci-bot"}, expect=404)
    names = [u["name"] for u in api.get("/users/list")["users"]]
    assert names == ["alice", "ci-bot", "root"]


# ---------------------------------------------------------------- service accounts


def test_service_account_lifecycle(api: Api) -> None:
    api.post("/teams/create", {"name": "ml-platform"})
    api.post("/users/create", {"name": "alice"})

    default_owner = api.post("/service-accounts/create", {"name": "ci-bot"})["service_account"]
    assert default_owner["kind"] == "service"
    assert default_owner["owner"] == "root"  # the caller is accountable by default
    assert default_owner["has_password"] is False

    team_owned = api.post(
        "/service-accounts/create",
        {
            "name": "nightly",
            "owner_team": "ml-platform",
            "roles": ["auditor"],
            "clearance": "public",
            "display_name": "Nightly retrain",
        },
    )["service_account"]
    assert team_owned["owner"] is None
    assert team_owned["owner_team"] == "ml-platform"
    assert team_owned["roles"] == ["auditor"]

    person_owned = api.post("/service-accounts/create", {"name": "etl", "owner": "alice"})
    assert person_owned["service_account"]["owner"] == "alice"

    listed = api.get("/service-accounts/list")["service_accounts"]
    assert [sa["name"] for sa in listed] == ["ci-bot", "etl", "nightly"]

    api.send("DELETE", "/service-accounts/delete", {"name": "etl"})
    listed = api.get("/service-accounts/list")["service_accounts"]
    assert [sa["name"] for sa in listed] == ["ci-bot", "nightly"]


def test_service_accounts_have_no_password_and_need_a_real_owner(api: Api) -> None:
    api.post("/service-accounts/create", {"name": "ci-bot"})

    api.send("PATCH", "/users/update", {"name": "ci-bot", "password": STRONG_PASSWORD}, 400)
    api.post("/service-accounts/create", {"name": "bot2", "owner": "nobody"}, expect=404)
    api.post("/service-accounts/create", {"name": "bot3", "owner_team": "none"}, expect=404)


# ---------------------------------------------------------------- roles


def test_grant_and_revoke_roles(api: Api) -> None:
    api.post("/users/create", {"name": "alice"})

    granted = api.post("/roles/grant", {"principal": "alice", "role": "auditor"})
    assert granted["principal"]["roles"] == ["auditor"]
    twice = api.post("/roles/grant", {"principal": "alice", "role": "auditor"})
    assert twice["principal"]["roles"] == ["auditor"]
    both = api.post("/roles/grant", {"principal": "alice", "role": "admin"})
    assert both["principal"]["roles"] == ["admin", "auditor"]

    revoked = api.post("/roles/revoke", {"principal": "alice", "role": "auditor"})
    assert revoked["principal"]["roles"] == ["admin"]
    api.post("/roles/grant", {"principal": "alice", "role": "emperor"}, expect=400)
    api.post("/roles/revoke", {"principal": "alice", "role": "emperor"}, expect=400)
    api.post("/roles/grant", {"principal": "nobody", "role": "admin"}, expect=404)


# ---------------------------------------------------------------- teams and projects


def test_teams(api: Api) -> None:
    api.post("/users/create", {"name": "alice"})
    api.post("/users/create", {"name": "bob"})

    team = api.post("/teams/create", {"name": "fraud-team", "description": "Fraud ML"})["team"]
    assert team == {
        "name": "fraud-team",
        "description": "Fraud ML",
        "created_at": team["created_at"],
        "members": [],
    }
    api.post("/teams/create", {"name": "fraud-team"}, expect=400)
    assert api.post("/teams/add-member", {"team": "fraud-team", "principal": "bob"}) == {}
    api.post("/teams/add-member", {"team": "fraud-team", "principal": "alice"})
    api.post("/teams/add-member", {"team": "fraud-team", "principal": "alice"}, expect=400)
    api.post("/teams/add-member", {"team": "fraud-team", "principal": "nobody"}, expect=404)

    teams = api.get("/teams/list")["teams"]
    assert [(t["name"], t["members"]) for t in teams] == [("fraud-team", ["alice", "bob"])]
    assert api.get("/users/get", name="alice")["user"]["teams"] == ["fraud-team"]

    assert api.post("/teams/remove-member", {"team": "fraud-team", "principal": "bob"}) == {}
    api.post("/teams/remove-member", {"team": "fraud-team", "principal": "bob"}, expect=404)
    assert api.get("/teams/list")["teams"][0]["members"] == ["alice"]

    assert api.send("DELETE", "/teams/delete", {"name": "fraud-team"}) == {}
    assert api.get("/teams/list")["teams"] == []
    api.send("DELETE", "/teams/delete", {"name": "fraud-team"}, expect=404)


def test_projects(api: Api) -> None:
    api.post("/users/create", {"name": "alice"})
    api.post("/teams/create", {"name": "fraud-team"})
    api.post("/teams/add-member", {"team": "fraud-team", "principal": "alice"})

    project = api.post("/projects/create", {"name": "fraud", "description": "cards"})["project"]
    assert project["name"] == "fraud"
    assert project["members"] == []
    api.post("/projects/create", {"name": "fraud"}, expect=400)

    api.post("/projects/set-member", {"project": "fraud", "role": "viewer", "principal": "alice"})
    api.post("/projects/set-member", {"project": "fraud", "role": "editor", "principal": "alice"})
    api.post("/projects/set-member", {"project": "fraud", "role": "viewer", "team": "fraud-team"})
    members = api.get("/projects/list")["projects"][0]["members"]
    assert sorted(members, key=json.dumps) == [
        {"principal": "alice", "role": "editor"},
        {"role": "viewer", "team": "fraud-team"},
    ]
    alice = api.get("/users/get", name="alice")["user"]
    assert alice["projects"] == [
        {"name": "fraud", "role": "editor", "via": "direct"},
        {"name": "fraud", "role": "viewer", "via": "team:fraud-team"},
    ]

    both = {"project": "fraud", "role": "viewer", "principal": "alice", "team": "fraud-team"}
    api.post("/projects/set-member", both, expect=400)
    api.post("/projects/set-member", {"project": "fraud", "role": "viewer"}, expect=400)
    api.post(
        "/projects/set-member", {"project": "fraud", "role": "owner", "principal": "alice"}, 400
    )
    api.post(
        "/projects/set-member", {"project": "nope", "role": "viewer", "team": "fraud-team"}, 404
    )

    api.post("/projects/remove-member", {"project": "fraud", "team": "fraud-team"})
    api.post("/projects/remove-member", {"project": "fraud", "team": "fraud-team"}, expect=404)
    members = api.get("/projects/list")["projects"][0]["members"]
    assert members == [{"principal": "alice", "role": "editor"}]

    assert api.send("DELETE", "/projects/delete", {"name": "fraud"}) == {}
    assert api.get("/projects/list")["projects"] == []


# ---------------------------------------------------------------- API keys


def test_create_key_shows_it_once_and_stores_only_a_digest(
    api: Api, sessions: sessionmaker[Session]
) -> None:
    api.post("/projects/create", {"name": "fraud"})
    api.post("/service-accounts/create", {"name": "ci-bot"})

    before = datetime.now(UTC)
    payload = api.post(
        "/keys/create",
        {
            "principal": "ci-bot",
            "name": "github-actions",
            "scopes": ["write"],
            "projects": ["fraud"],
            "expires_in_seconds": 30 * 86400,
        },
    )
    key, record = payload["key"], payload["api_key"]
    assert set(payload) == {"key", "api_key"}
    assert set(record) == {
        "key_id",
        "display",
        "principal",
        "name",
        "scopes",
        "projects",
        "created_at",
        "created_by",
        "expires_at",
        "last_used_at",
        "revoked_at",
        "replaced_by",
    }
    parsed = api_keys.parse(key)
    assert parsed.key_id == record["key_id"]
    assert record["display"] == api_keys.display(record["key_id"])
    assert record["principal"] == "ci-bot"
    assert record["created_by"] == "root"
    assert record["name"] == "github-actions"
    assert record["scopes"] == ["write"]
    assert record["projects"] == ["fraud"]
    expires = parse_time(record["expires_at"])
    expected = before + timedelta(days=30)
    assert expected - timedelta(seconds=5) <= expires <= expected + timedelta(seconds=5)
    assert record["last_used_at"] is None
    assert record["revoked_at"] is None

    with sessions() as session:
        stored = session.scalar(select(ApiKey).where(ApiKey.id == record["key_id"]))
        assert api_keys.matches(parsed, stored.digest)

    for listing in (api.get("/keys/list", principal="ci-bot"), api.get("/keys/list", all="true")):
        text = json.dumps(listing)
        assert key not in text
        assert key[len(api_keys.PREFIX) + api_keys.ID_LENGTH :] not in text
        assert stored.digest.hex() not in text
        assert "digest" not in text
        assert [k["key_id"] for k in listing["api_keys"]] == [record["key_id"]]


def test_key_defaults_to_the_caller(api: Api) -> None:
    api.post("/users/create", {"name": "alice"})

    payload = api.call("POST", "/keys/create", as_="alice", json={"scopes": ["read"]})
    record = payload.get_json()["api_key"]
    assert record["principal"] == "alice"
    assert record["created_by"] == "alice"
    assert record["expires_at"] is None
    assert record["projects"] is None

    own = api.call("GET", "/keys/list", as_="alice").get_json()["api_keys"]
    assert [k["key_id"] for k in own] == [record["key_id"]]
    assert api.get("/keys/list")["api_keys"] == []  # root's own keys
    assert len(api.get("/keys/list", all="true")["api_keys"]) == 1
    api.get("/keys/list", expect=400, all="true", principal="alice")
    api.get("/keys/list", expect=400, all="yes")
    api.get("/keys/list", expect=404, principal="nobody")


def test_key_input_is_checked(api: Api) -> None:
    api.post("/keys/create", {"scopes": []}, expect=400)
    api.post("/keys/create", {"scopes": ["root"]}, expect=400)
    api.post("/keys/create", {"scopes": ["read"], "projects": ["nope"]}, expect=404)
    api.post("/keys/create", {"scopes": ["read"], "projects": []}, expect=400)
    api.post("/keys/create", {"scopes": ["read"], "expires_in_seconds": 0}, expect=400)
    api.post("/keys/create", {"scopes": ["read"], "expires_in_seconds": -5}, expect=400)
    api.post("/keys/create", {"scopes": ["read"], "expires_in_seconds": 1.5}, expect=400)
    api.post("/keys/create", {"scopes": ["read"], "expires_in_seconds": True}, expect=400)
    api.post("/keys/create", {"scopes": ["read"], "expires_in_seconds": 10**12}, expect=400)
    api.post("/keys/create", {"scopes": ["read"], "principal": "nobody"}, expect=404)
    assert api.get("/keys/list", all="true")["api_keys"] == []


def test_revoke_key(api: Api) -> None:
    created = api.post("/keys/create", {"scopes": ["read"]})["api_key"]

    revoked = api.post("/keys/revoke", {"key_id": created["key_id"]})["api_key"]
    assert revoked["key_id"] == created["key_id"]
    assert revoked["principal"] == "root"
    assert parse_time(revoked["revoked_at"]) <= datetime.now(UTC)
    again = api.post("/keys/revoke", {"key_id": created["key_id"]})["api_key"]
    assert again["revoked_at"] == revoked["revoked_at"]
    api.post("/keys/revoke", {"key_id": "nosuchkey000"}, expect=404)
    listed = api.get("/keys/list")["api_keys"][0]
    assert listed["revoked_at"] == revoked["revoked_at"]


def test_rotate_key_with_default_and_zero_grace(api: Api) -> None:
    api.post("/projects/create", {"name": "fraud"})
    api.post("/users/create", {"name": "alice"})
    old = api.post(
        "/keys/create",
        {"principal": "alice", "scopes": ["write", "read"], "projects": ["fraud"], "name": "ci"},
    )["api_key"]

    before = datetime.now(UTC)
    rotated = api.post("/keys/rotate", {"key_id": old["key_id"]})
    new = rotated["api_key"]
    assert api_keys.parse(rotated["key"]).key_id == new["key_id"] != old["key_id"]
    assert new["principal"] == "alice"
    assert new["scopes"] == ["read", "write"]
    assert new["projects"] == ["fraud"]
    assert new["name"] == "ci"
    assert new["created_by"] == "root"
    keys = {k["key_id"]: k for k in api.get("/keys/list", principal="alice")["api_keys"]}
    assert keys[old["key_id"]]["replaced_by"] == new["key_id"]
    grace_end = parse_time(keys[old["key_id"]]["expires_at"])
    assert before + timedelta(seconds=3595) <= grace_end <= before + timedelta(seconds=3605)
    assert rotated["key"] not in json.dumps(keys)

    now = datetime.now(UTC)
    third = api.post("/keys/rotate", {"key_id": new["key_id"], "grace_seconds": 0})["api_key"]
    keys = {k["key_id"]: k for k in api.get("/keys/list", principal="alice")["api_keys"]}
    assert keys[new["key_id"]]["replaced_by"] == third["key_id"]
    assert parse_time(keys[new["key_id"]]["expires_at"]) <= now + timedelta(seconds=2)

    api.post("/keys/revoke", {"key_id": third["key_id"]})
    refused = api.post("/keys/rotate", {"key_id": third["key_id"]}, expect=400)
    assert "revoked" in refused["message"]
    api.post("/keys/rotate", {"key_id": new["key_id"], "grace_seconds": -1}, expect=400)
    api.post("/keys/rotate", {"key_id": new["key_id"], "grace_seconds": "1h"}, expect=400)
    api.post("/keys/rotate", {"key_id": "nosuchkey000"}, expect=404)


# ---------------------------------------------------------------- bad input


BAD_BODIES = [
    pytest.param("POST", "/users/create", {}, id="missing-name"),
    pytest.param("POST", "/users/create", {"name": 7}, id="name-not-string"),
    pytest.param("POST", "/users/create", {"name": "x", "roles": "admin"}, id="roles-not-list"),
    pytest.param("POST", "/users/create", {"name": "x", "roles": [1]}, id="roles-not-strings"),
    pytest.param("POST", "/users/create", {"name": "x", "admin": True}, id="unknown-field"),
    pytest.param("POST", "/users/create", {"name": "x" * 65}, id="name-too-long"),
    pytest.param("POST", "/users/create", {"name": "x", "email": "e" * 300}, id="email-too-long"),
    pytest.param("PATCH", "/users/update", {"name": "root", "disabled": "yes"}, id="flag-string"),
    pytest.param("PATCH", "/users/update", {"disabled": True}, id="update-missing-name"),
    pytest.param("PATCH", "/users/update", {"name": "root", "roles": []}, id="update-roles"),
    pytest.param("DELETE", "/users/delete", {"name": ["root"]}, id="delete-name-list"),
    pytest.param("DELETE", "/users/delete", {}, id="delete-missing-name"),
    pytest.param("POST", "/service-accounts/create", {"name": "b", "password": "x"}, id="sa-pw"),
    pytest.param("POST", "/roles/grant", {"principal": "root"}, id="grant-missing-role"),
    pytest.param("POST", "/roles/revoke", {"principal": "root", "role": None}, id="revoke-null"),
    pytest.param("POST", "/teams/create", {"name": "t", "description": 1}, id="desc-not-string"),
    pytest.param("POST", "/teams/add-member", {"team": "t"}, id="add-missing-principal"),
    pytest.param("POST", "/projects/create", {"name": "p", "owner": "root"}, id="project-owner"),
    pytest.param("POST", "/projects/set-member", {"project": "p"}, id="set-member-no-role"),
    pytest.param("POST", "/keys/create", {}, id="key-no-scopes"),
    pytest.param("POST", "/keys/create", {"scopes": "read"}, id="scopes-string"),
    pytest.param("POST", "/keys/create", {"scopes": ["read"], "digest": "00"}, id="key-unknown"),
    pytest.param("POST", "/keys/create", {"scopes": ["read"], "projects": "p"}, id="projects-str"),
    pytest.param("POST", "/keys/revoke", {"key_id": 12}, id="key-id-number"),
    pytest.param("POST", "/keys/rotate", {"key_id": "a", "grace_seconds": 1.0}, id="grace-float"),
    pytest.param("POST", "/users/create", ["name"], id="body-array"),
    pytest.param("POST", "/users/create", "alice", id="body-string"),
    pytest.param("POST", "/users/create", None, id="body-null"),
]


@pytest.mark.parametrize(("method", "path", "body"), BAD_BODIES)
def test_bad_bodies_are_400_and_change_nothing(
    api: Api, sessions: sessionmaker[Session], method: str, path: str, body: Any
) -> None:
    before = snapshot(sessions)

    response = api.call(method, path, data=json.dumps(body), content_type="application/json")

    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.get_json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert snapshot(sessions) == before


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        pytest.param('{"name": "alice"', "application/json", id="truncated-json"),
        pytest.param(b"\xff\xfe{}", "application/json", id="not-utf8"),
        pytest.param('{"name": "alice"}', "text/plain", id="text-plain"),
        pytest.param("name=alice", "application/x-www-form-urlencoded", id="form"),
        pytest.param("", "application/json", id="empty"),
        pytest.param('{"name": "alice", "name": "mallory"}', "application/json", id="dup-key"),
        pytest.param("[" * 30000 + "]" * 30000, "application/json", id="recursion-bomb"),
    ],
)
def test_non_json_bodies_are_400_and_change_nothing(
    api: Api, sessions: sessionmaker[Session], data: str | bytes, content_type: str
) -> None:
    before = snapshot(sessions)

    response = api.call("POST", "/users/create", data=data, content_type=content_type)

    assert response.status_code == 400
    assert response.get_json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert snapshot(sessions) == before


def test_duplicate_json_keys_are_named_as_such(api: Api) -> None:
    body = '{"name": "alice", "name": "mallory"}'
    response = api.call("POST", "/users/create", data=body, content_type="application/json")

    assert response.status_code == 400
    assert response.get_json()["message"] == "duplicate key in JSON body"


def test_oversized_body_is_refused(api: Api, sessions: sessionmaker[Session]) -> None:
    before = snapshot(sessions)
    body = json.dumps({"name": "alice", "display_name": "x" * MAX_BODY_BYTES})

    response = api.call("POST", "/users/create", data=body, content_type="application/json")

    assert response.status_code == 400
    assert "larger than" in response.get_json()["message"]
    assert snapshot(sessions) == before


def test_unknown_field_names_are_not_echoed(api: Api) -> None:
    secret_looking = "mlsk_" + "A" * 61
    response = api.post("/users/create", {"name": "x", secret_looking: 1}, expect=400)
    assert secret_looking not in response["message"]
    assert "accepted fields" in response["message"]


@pytest.mark.parametrize(
    "query",
    [
        pytest.param("name=root&name=alice", id="repeated"),
        pytest.param("name=root&verbose=1", id="unknown"),
        pytest.param("", id="missing"),
    ],
)
def test_bad_query_strings_are_400(api: Api, query: str) -> None:
    response = api.call("GET", "/users/get?" + query)

    assert response.status_code == 400
    assert response.get_json()["error_code"] == "INVALID_PARAMETER_VALUE"


def test_wrong_method_is_not_routed(api: Api, sessions: sessionmaker[Session]) -> None:
    before = snapshot(sessions)
    assert api.call("GET", "/users/delete", query_string={"name": "root"}).status_code == 405
    assert (
        api.call("POST", "/users/update", json={"name": "root", "disabled": True}).status_code
        == 405
    )
    assert snapshot(sessions) == before


# ---------------------------------------------------------------- lockout protection


def test_the_last_admin_cannot_be_removed(api: Api, sessions: sessionmaker[Session]) -> None:
    before = snapshot(sessions)

    deleted = api.send("DELETE", "/users/delete", {"name": "root"}, expect=400)
    assert "last enabled admin" in deleted["message"]
    disabled = api.send("PATCH", "/users/update", {"name": "root", "disabled": True}, expect=400)
    assert "last enabled admin" in disabled["message"]
    revoked = api.post("/roles/revoke", {"principal": "root", "role": "admin"}, expect=400)
    assert "last enabled admin" in revoked["message"]
    assert snapshot(sessions) == before

    # Harmless changes to the last admin are still allowed.
    api.post("/roles/revoke", {"principal": "root", "role": "auditor"})
    api.send("PATCH", "/users/update", {"name": "root", "disabled": False})
    api.send("PATCH", "/users/update", {"name": "root", "email": "root@example.com"})


def test_a_disabled_admin_does_not_count(api: Api) -> None:
    api.post("/users/create", {"name": "alice", "roles": ["admin"]})
    api.send("PATCH", "/users/update", {"name": "alice", "disabled": True})

    api.send("DELETE", "/users/delete", {"name": "root"}, expect=400)
    api.post("/roles/revoke", {"principal": "root", "role": "admin"}, expect=400)


def test_admins_can_be_removed_while_another_remains(api: Api) -> None:
    api.post("/users/create", {"name": "alice", "roles": ["admin"]})
    api.post("/service-accounts/create", {"name": "bootstrap", "roles": ["admin"]})

    api.send("DELETE", "/service-accounts/delete", {"name": "bootstrap"})
    api.post("/roles/revoke", {"principal": "root", "role": "admin"})
    assert api.get("/users/get", name="root")["user"]["roles"] == []
    api.send("DELETE", "/users/delete", {"name": "alice"}, expect=400)
    api.send("PATCH", "/users/update", {"name": "alice", "disabled": True}, expect=400)


def test_an_admin_service_account_is_protected_too(api: Api) -> None:
    api.post("/service-accounts/create", {"name": "bootstrap", "roles": ["admin"]})
    api.post("/roles/revoke", {"principal": "root", "role": "admin"})

    refused = api.send("DELETE", "/service-accounts/delete", {"name": "bootstrap"}, expect=400)
    assert "last enabled admin" in refused["message"]
