"""The identity store on real SQLite and PostgreSQL: migrations, rules, change tracking."""

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import inspect

from mlflow_secure.identity import api_keys, key_store, passwords, store
from mlflow_secure.identity.bootstrap import BootstrapError, bootstrap_admin


@pytest.fixture
def sessions(identity_sessions):
    return identity_sessions


def version(sessions) -> int:
    with sessions() as session:
        return store.identity_version(session)


def test_migration_creates_prefixed_tables_and_is_idempotent(sessions):
    engine = sessions.kw["bind"]
    with store.migration_lock(engine):
        store.migrate(engine)  # second run: nothing to do
    names = set(inspect(engine).get_table_names())
    assert {"mls_principals", "mls_api_keys", "mls_teams", "mls_alembic_version"} <= names
    assert all(name.startswith("mls_") for name in names)


def test_concurrent_migrations_are_serialised(tmp_path):
    uri = f"sqlite:///{tmp_path / 'race.db'}"
    errors = []

    def run():
        try:
            engine = store.open_engine(uri)
            with store.migration_lock(engine):
                store.migrate(engine)
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_principals_teams_projects_and_identity(sessions):
    with sessions.begin() as session:
        store.create_principal(
            session, "alice", "user", password="a long passphrase", clearance="confidential"
        )
        store.create_team(session, "fraud-team")
        store.add_team_member(session, "fraud-team", "alice")
        store.create_project(session, "fraud")
        store.create_project(session, "churn")
        store.set_project_member(session, "fraud", "editor", team="fraud-team")
        store.set_project_member(session, "churn", "viewer", principal="alice")
        store.set_project_member(session, "churn", "maintainer", principal="alice")  # update
        store.create_principal(session, "ci-bot", "service", owner="alice", owner_team="fraud-team")
    with sessions() as session:
        alice = store.load_identity(session, store.get_principal(session, "alice").id)
        bot = store.load_identity(session, store.get_principal(session, "ci-bot").id)
        assert passwords.verify_password(
            "a long passphrase", store.get_principal(session, "alice").password_hash
        )
    assert alice.teams == ("fraud-team",)
    assert alice.projects == (
        ("churn", "maintainer", "direct"),
        ("fraud", "editor", "team:fraud-team"),
    )
    assert alice.clearance == "confidential"
    assert bot.kind == "service"
    assert bot.owner == "alice"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: store.create_principal(s, "bad name", "user"), "name must be"),
        (lambda s: store.create_principal(s, "x", "robot"), "kind must be one of"),
        (
            lambda s: store.create_principal(s, "x", "service", password="a long passphrase"),
            "API keys",
        ),
        (lambda s: store.create_principal(s, "x", "user", password="short"), "at least 12"),
        (lambda s: store.create_principal(s, "x", "user", roles=["god"]), "role must be one of"),
        (lambda s: store.create_principal(s, "x", "user", clearance="secret"), "clearance must be"),
        (lambda s: store.create_principal(s, "x", "user", owner="bob"), "only service accounts"),
        (lambda s: store.set_project_member(s, "nope", "viewer", principal="x"), "no project"),
        (lambda s: store.create_key(s, "nobody", ["read"]), "no principal"),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(sessions, call, message):
    before = version(sessions)
    with pytest.raises(store.IdentityError, match=message), sessions.begin() as session:
        call(session)
    assert version(sessions) == before
    with sessions() as session:
        assert store.list_principals(session) == []


def test_duplicates_are_refused(sessions):
    with sessions.begin() as session:
        store.create_principal(session, "alice", "user")
    with pytest.raises(store.AlreadyExists), sessions.begin() as session:
        store.create_principal(session, "alice", "service")


def test_every_authentication_relevant_change_bumps_the_version(sessions):
    with sessions.begin() as session:
        store.create_principal(session, "alice", "user")
        store.create_team(session, "t")
        store.create_project(session, "p")
    changes = [
        lambda s: store.grant_role(s, "alice", "auditor"),
        lambda s: store.update_principal(s, "alice", disabled=True),
        lambda s: store.add_team_member(s, "t", "alice"),
        lambda s: store.set_project_member(s, "p", "viewer", team="t"),
        lambda s: store.remove_project_member(s, "p", team="t"),
        lambda s: store.remove_team_member(s, "t", "alice"),
        lambda s: store.revoke_key(s, store.create_key(s, "alice", ["read"])[1].id),
    ]
    for change in changes:
        before = version(sessions)
        with sessions.begin() as session:
            change(session)
        assert version(sessions) > before


def test_keys_are_stored_as_digests_only(sessions):
    with sessions.begin() as session:
        store.create_principal(session, "alice", "user")
        store.create_project(session, "fraud")
        key, record = store.create_key(
            session, "alice", ["write", "read"], projects=["fraud"], name="laptop"
        )
    assert record.digest == api_keys.digest(key)
    with sessions() as session:
        [(stored, owner)] = store.list_keys(session, "alice")
    assert owner == "alice"
    assert stored.scopes == ["read", "write"]
    assert stored.projects == ["fraud"]
    assert key not in repr(stored.__dict__)


def test_rotation_keeps_the_old_key_for_the_grace_period(sessions):
    with sessions.begin() as session:
        store.create_principal(session, "ci", "service")
        _, old = store.create_key(
            session, "ci", ["write"], expires_at=datetime.now(UTC) + timedelta(days=30)
        )
    with sessions.begin() as session:
        _new_key, new = store.rotate_key(session, old.id, timedelta(hours=1))
    with sessions() as session:
        old = store.get_key(session, old.id)
    assert old.replaced_by == new.id
    remaining = key_store.aware(old.expires_at) - datetime.now(UTC)
    assert timedelta(minutes=59) < remaining <= timedelta(hours=1)
    assert key_store.aware(new.expires_at) - datetime.now(UTC) > timedelta(days=29)
    assert new.scopes == ["write"]
    with sessions.begin() as session:
        store.revoke_key(session, new.id)
    with pytest.raises(store.IdentityError, match="revoked"), sessions.begin() as session:
        store.rotate_key(session, new.id, timedelta(0))


def test_bootstrap_creates_one_admin_with_a_private_key_file(sessions, tmp_path):
    key_file = tmp_path / "admin.key"
    assert bootstrap_admin(sessions, "admin", None, key_file) == key_file
    assert key_file.stat().st_mode & 0o777 == 0o600
    key = key_file.read_text().strip()
    parsed = api_keys.parse(key)
    with sessions() as session:
        record = store.get_key(session, parsed.key_id)
        assert record.digest == parsed.digest
        assert store.count_admins(session) == 1
    # A second start finds the admin and does nothing.
    assert bootstrap_admin(sessions, "admin", None, tmp_path / "other.key") is None
    assert not (tmp_path / "other.key").exists()


def test_bootstrap_with_a_supplied_key(sessions, tmp_path):
    key, parsed = api_keys.generate()
    assert bootstrap_admin(sessions, "root", key, tmp_path / "unused.key") is None
    with sessions() as session:
        assert store.get_key(session, parsed.key_id).digest == parsed.digest
        assert "admin" in store.get_principal(session, "root").roles
    assert not (tmp_path / "unused.key").exists()


def test_bootstrap_refuses_a_malformed_supplied_key(sessions, tmp_path):
    with pytest.raises(BootstrapError, match="keys generate") as info:
        bootstrap_admin(sessions, "root", "mlsk_not-a-key", tmp_path / "k")
    assert "not-a-key" not in str(info.value)
    with sessions() as session:
        assert store.count_admins(session) == 0


@pytest.mark.parametrize(
    ("backend", "expected"),
    [
        ("sqlite:////data/mlflow.db", "sqlite:////data/mlflow-secure.db"),
        ("postgresql://u@db/mlflow", "postgresql://u@db/mlflow"),
        ("/srv/mlruns", "sqlite:////srv/mlflow-secure.db"),
    ],
)
def test_default_identity_uri_sits_beside_the_tracking_store(backend, expected):
    assert store.default_identity_uri(backend) == expected


def test_a_new_sqlite_identity_store_is_private(tmp_path):
    engine = store.open_engine(f"sqlite:///{tmp_path / 'private.db'}")
    with store.migration_lock(engine):
        store.migrate(engine)
    engine.dispose()
    for path in tmp_path.glob("private.db*"):
        assert path.stat().st_mode & 0o077 == 0, path


def test_a_new_database_file_opened_while_another_connection_writes_it_still_turns_wal(tmp_path):
    """SQLite refuses the switch to WAL at once, without its busy wait, while another
    connection holds the write lock (waiting could deadlock): a worker opening the file
    while a migration or the audit writer writes must wait for it, not fail."""
    import sqlite3

    path = tmp_path / "fresh.db"
    writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    writer.execute("CREATE TABLE t (x)")
    writer.execute("BEGIN IMMEDIATE")  # the write lock, held for half a second
    writer.execute("INSERT INTO t VALUES (1)")
    threading.Timer(0.5, lambda: writer.execute("COMMIT")).start()
    engine = store.open_engine(f"sqlite:///{path}")
    with engine.connect() as connection:
        mode = connection.exec_driver_sql("PRAGMA journal_mode").scalar()
    assert mode == "wal"
    engine.dispose()
    writer.close()
