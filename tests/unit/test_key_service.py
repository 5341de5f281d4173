"""The key service's operations on real SQLite and PostgreSQL, and the master key's sources.

Issue, open, rotate (data keys re-wrapped, artefacts untouched), retire, destroy; every
refusal a policy cannot override: another artefact's key, a destroyed project, a wrapped
key moved to another row, a master key that is not the one that wrapped the store.
"""

from __future__ import annotations

import base64
import os
import stat

import pytest
from sqlalchemy import inspect, select

from mlflow_secure.identity.records import IdentityError, NotFound
from mlflow_secure.keys import service
from mlflow_secure.keys.models import DataKey, ProjectKey
from mlflow_secure.keys.wrapping import LocalMasterKey, MasterKeyError, load_master_key

ARTEFACT = "runs/r1/artifacts/model/model.pkl"


@pytest.fixture
def sessions(identity_sessions):
    return identity_sessions


@pytest.fixture
def master():
    return LocalMasterKey(os.urandom(32))


def issue(sessions, master, project="fraud", artefact=ARTEFACT):
    with sessions.begin() as session:
        return service.issue(session, master, project, "7", artefact, "alice")


def open_key(sessions, master, key_id, artefact=ARTEFACT, experiment="7"):
    with sessions.begin() as session:
        record = service.find_for(session, key_id, artefact, experiment)
        return service.open_key(session, master, record, artefact)


def test_the_migration_creates_the_key_tables(sessions):
    names = set(inspect(sessions.kw["bind"]).get_table_names())
    assert {"mls_project_keys", "mls_data_keys"} <= names


def test_a_data_key_is_stored_wrapped_and_opens_for_its_artefact_only(sessions, master):
    issued = issue(sessions, master)
    assert issued.key_id.startswith("dk-")
    assert len(issued.data_key) == 32
    assert issued.key_version == 1
    with sessions() as session:
        record = session.get(DataKey, issued.key_id)
        assert issued.data_key not in record.wrapped
        kek = session.scalars(select(ProjectKey)).one()
        assert kek.state == "active"
        assert kek.wrapper == "local"
    assert open_key(sessions, master, issued.key_id) == issued.data_key
    with pytest.raises(service.KeyRefused, match="not issued for this artefact") as foreign:
        open_key(sessions, master, issued.key_id, "runs/r1/artifacts/other.pkl")
    with pytest.raises(service.KeyRefused, match="not issued for this artefact") as unknown:
        open_key(sessions, master, "dk-nope")
    with pytest.raises(service.KeyRefused, match="not issued for this artefact"):
        open_key(sessions, master, issued.key_id, experiment="8")  # the same id elsewhere
    # one answer for both: no oracle of which key ids exist
    assert str(foreign.value).replace(issued.key_id, "K") == str(unknown.value).replace(
        "dk-nope", "K"
    )


def test_each_project_has_its_own_key(sessions, master):
    issue(sessions, master, "fraud")
    issue(sessions, master, "churn", "runs/r2/artifacts/m.pkl")
    with sessions() as session:
        projects = sorted(session.scalars(select(ProjectKey.project)))
    assert projects == ["churn", "fraud"]


def test_a_wrapped_key_moved_to_another_row_does_not_open(sessions, master):
    first = issue(sessions, master)
    second = issue(sessions, master, artefact="runs/r1/artifacts/b.pkl")
    with sessions.begin() as session:
        a, b = session.get(DataKey, first.key_id), session.get(DataKey, second.key_id)
        b.wrapped = a.wrapped  # an insider copies a wrapped key onto an artefact they can read
    with pytest.raises(service.KeyServiceUnavailable, match="altered in store"):
        open_key(sessions, master, second.key_id, "runs/r1/artifacts/b.pkl")


def test_key_operations_on_one_project_run_one_after_another(sessions, master):
    """Issues racing rotations and retirements: every key issued opens afterwards, and no
    rotation fails (the per-project lock; without it keys were wrapped under erased versions
    and rotations collided on version numbers)."""
    import threading

    issued, errors = [], []

    def issuer(worker: int) -> None:
        for n in range(15):
            try:
                issued.append(issue(sessions, master, artefact=f"runs/r{worker}/artifacts/{n}"))
            except Exception as exc:  # any failure is the finding
                errors.append(repr(exc))

    def rotator() -> None:
        for _ in range(8):
            try:
                with sessions.begin() as session:
                    version = service.rotate(session, master, "fraud", "mia")["version"]
                with sessions.begin() as session:
                    service.retire(session, "fraud", version - 1, "mia")
            except Exception as exc:
                errors.append(repr(exc))

    threads = [threading.Thread(target=issuer, args=(w,)) for w in range(4)]
    threads += [threading.Thread(target=rotator), threading.Thread(target=rotator)]
    issue(sessions, master)  # the project's first key exists before the race
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    refused = [e for e in errors if "still wrapped" not in e and "active key" not in e]
    assert refused == []
    for key in issued:
        assert open_key(sessions, master, key.key_id, key.artefact) == key.data_key


def test_no_data_key_is_issued_once_the_project_is_destroyed(sessions, master):
    import threading

    issue(sessions, master)
    issued, refused = [], []
    stop = threading.Event()

    def issuer(worker: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                issued.append(issue(sessions, master, artefact=f"runs/w{worker}/artifacts/{n}"))
            except service.KeyRefused:
                refused.append(n)

    threads = [threading.Thread(target=issuer, args=(w,)) for w in range(3)]
    for thread in threads:
        thread.start()
    with sessions.begin() as session:
        service.destroy(session, "fraud", "root")
    stop.set()
    for thread in threads:
        thread.join()
    with sessions() as session:
        survivors = session.scalars(
            select(DataKey).where(DataKey.project == "fraud", DataKey.wrapped.is_not(None))
        ).all()
    assert survivors == []  # every key issued before the destroy was erased by it
    assert refused  # and the issues after it were refused


def test_another_master_key_opens_nothing(sessions, master):
    issued = issue(sessions, master)
    with pytest.raises(service.KeyServiceUnavailable, match="another master key"):
        open_key(sessions, LocalMasterKey(os.urandom(32)), issued.key_id)


def test_rotation_rewraps_every_data_key_and_keeps_them(sessions, master):
    keys = [issue(sessions, master, artefact=f"runs/r1/artifacts/{n}.pkl") for n in range(3)]
    with sessions.begin() as session:
        before = {r.key_id: r.wrapped for r in session.scalars(select(DataKey))}
        result = service.rotate(session, master, "fraud", "mia")
    assert result == {"project": "fraud", "version": 2, "rewrapped": 3, "unrecoverable": 0}
    with sessions() as session:
        after = {
            r.key_id: (r.wrapped, r.key_version, r.created_version)
            for r in session.scalars(select(DataKey))
        }
        states = {r.version: r.state for r in session.scalars(select(ProjectKey))}
    assert states == {1: "superseded", 2: "active"}
    for key in keys:
        wrapped, version, created = after[key.key_id]
        assert wrapped != before[key.key_id]
        assert version == 2
        assert created == 1
        assert open_key(sessions, master, key.key_id, key.artefact) == key.data_key
    assert issue(sessions, master, artefact="runs/r1/artifacts/new.pkl").key_version == 2


def test_retiring_a_superseded_version_erases_it_and_refuses_the_active_one(sessions, master):
    issued = issue(sessions, master)
    with sessions.begin() as session, pytest.raises(IdentityError, match="active key"):
        service.retire(session, "fraud", 1, "mia")
    with sessions.begin() as session:
        service.rotate(session, master, "fraud", "mia")
    with sessions.begin() as session:
        assert service.retire(session, "fraud", 1, "mia")["state"] == "retired"
        assert service.retire(session, "fraud", 1, "mia")["state"] == "retired"  # idempotent
        with pytest.raises(NotFound):
            service.retire(session, "fraud", 9, "mia")
    with sessions() as session:
        old = session.scalars(select(ProjectKey).where(ProjectKey.version == 1)).one()
        assert old.wrapped is None
    assert open_key(sessions, master, issued.key_id) == issued.data_key


def test_a_version_still_wrapping_data_keys_cannot_be_retired(sessions, master):
    issue(sessions, master)
    with sessions.begin() as session:
        service.rotate(session, master, "fraud", "mia")
        session.execute(  # as if a rotation had been interrupted half-way
            DataKey.__table__.update().values(key_version=1)
        )
    with (
        sessions.begin() as session,
        pytest.raises(IdentityError, match="still wrapped by version 1"),
    ):
        service.retire(session, "fraud", 1, "mia")


def test_destroying_a_project_shreds_every_key_for_good(sessions, master):
    issued = issue(sessions, master)
    other = issue(sessions, master, "churn", "runs/r2/artifacts/m.pkl")
    with sessions.begin() as session:
        result = service.destroy(session, "fraud", "root")
    assert result == {"project": "fraud", "destroyed_versions": 1, "data_keys_erased": 1}
    with pytest.raises(service.KeyRefused, match="cannot be decrypted by anyone"):
        open_key(sessions, master, issued.key_id)
    with pytest.raises(service.KeyRefused, match="were destroyed"):
        issue(sessions, master, artefact="runs/r1/artifacts/again.pkl")
    with sessions.begin() as session, pytest.raises(service.KeyRefused):
        service.rotate(session, master, "fraud", "root")
    with sessions() as session:
        assert all(
            r.wrapped is None
            for r in session.scalars(select(ProjectKey).where(ProjectKey.project == "fraud"))
        )
        status = service.status(session, "fraud")
    assert status["versions"][0]["state"] == "destroyed"
    assert status["versions"][0]["data_keys"] == 0
    assert open_key(sessions, master, other.key_id, other.artefact) == other.data_key
    with sessions.begin() as session, pytest.raises(NotFound):
        service.destroy(session, "nothing-here", "root")


def test_the_master_key_file_is_made_private_once_and_checked(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow-secure.db'}"
    first = load_master_key(None, None, uri)
    path = tmp_path / "mlflow-secure-master.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    load_master_key(None, None, uri)
    assert path.read_text() == text  # never overwritten
    blob = first.wrap(b"k" * 32, b"aad")
    assert load_master_key(None, str(path), uri).unwrap(blob, b"aad") == b"k" * 32
    assert "hidden" in repr(first)
    assert text.strip() not in repr(first)
    path.chmod(0o644)
    with pytest.raises(MasterKeyError, match="chmod 600"):
        load_master_key(None, str(path), uri)


def test_master_key_sources_and_their_errors(tmp_path):
    uri = "postgresql://db/mlflow"
    assert load_master_key(None, None, uri) is None  # no file beside a server database
    value = base64.b64encode(os.urandom(32)).decode()
    assert load_master_key(value, None, uri) is not None
    with pytest.raises(MasterKeyError, match="not base64"):
        load_master_key("not base64!", None, uri)
    with pytest.raises(MasterKeyError, match="decodes to 16 bytes"):
        load_master_key(base64.b64encode(os.urandom(16)).decode(), None, uri)
    with pytest.raises(MasterKeyError, match="does not exist"):
        load_master_key(None, str(tmp_path / "missing.key"), uri)
    with pytest.raises(MasterKeyError, match="malformed"):
        LocalMasterKey(os.urandom(32)).unwrap(b"\x02short", b"")
