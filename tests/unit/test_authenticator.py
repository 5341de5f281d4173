"""The authenticator and throttle on a real SQLite store (OIDC: a real local provider)."""

import time

import pytest

from mlflow_secure.identity import store
from mlflow_secure.identity.authenticator import Authenticator, AuthError, AuthUnavailable
from mlflow_secure.identity.credentials import Basic, Bearer
from mlflow_secure.identity.oidc import OidcSettings, OidcVerifier
from mlflow_secure.identity.throttle import Throttle, account_key, client_key
from tests.support.oidc_provider import LocalOidcProvider


@pytest.fixture
def sessions(tmp_path):
    engine = store.open_engine(f"sqlite:///{tmp_path / 'id.db'}")
    store.migrate(engine)
    sessions = store.session_factory(engine)
    with sessions.begin() as session:
        store.create_principal(session, "alice", "user", password="alice's long password")
        store.create_principal(session, "ci-bot", "service", owner="alice")
        store.create_team(session, "fraud-team")
        store.create_project(session, "fraud")
        store.set_project_member(session, "fraud", "editor", team="fraud-team")
    yield sessions
    engine.dispose()


@pytest.fixture
def auth(sessions):
    authenticator = Authenticator(sessions, Throttle(sessions, max_failures=3))
    authenticator.start()
    yield authenticator
    authenticator.stop()


def new_key(sessions, principal="alice", scopes=("read",), **kwargs):
    with sessions.begin() as session:
        key, record = store.create_key(session, principal, list(scopes), **kwargs)
    return key, record.id


def test_key_authenticates_then_is_served_from_memory(auth, sessions):
    key, key_id = new_key(sessions, scopes=("write",))
    assert auth.cached(Bearer(key)) is None  # nothing known yet
    subject = auth.authenticate(Bearer(key))
    assert subject.name == "alice"
    assert subject.scopes == ("write",)
    assert subject.key_id == key_id
    cached = auth.cached(Bearer(key))
    assert cached is not None
    assert cached.identity == subject.identity


def test_wrong_unknown_or_malformed_keys_fail(auth, sessions):
    key, _ = new_key(sessions)
    forged = key[:17] + ("A" if key[17] != "A" else "B") + key[18:-6]
    from mlflow_secure.identity import api_keys

    forged = forged + api_keys._checksum(forged)  # valid checksum, wrong secret
    for token in (forged, api_keys.generate()[0], "mlsk_short", "random-token"):
        with pytest.raises(AuthError, match="Invalid API key"):
            auth.authenticate(Bearer(token))


def test_revocation_reaches_a_warm_cache_within_a_second(auth, sessions):
    key, key_id = new_key(sessions)
    auth.authenticate(Bearer(key))
    assert auth.cached(Bearer(key)) is not None
    with sessions.begin() as session:
        store.revoke_key(session, key_id)
    started = time.monotonic()
    while auth.cached(Bearer(key)) is not None:  # the warm cache still answers...
        assert time.monotonic() - started < 1.0, "revoked key still accepted after a second"
        time.sleep(0.01)
    with pytest.raises(AuthError, match="revoked"):  # ...until the poller drops it
        auth.authenticate(Bearer(key))


def test_expired_and_disabled(auth, sessions):
    key, key_id = new_key(sessions)
    with sessions.begin() as session:
        record = store.get_key(session, key_id)
        record.expires_at = store.utcnow()
    with pytest.raises(AuthError, match="expired"):
        auth.authenticate(Bearer(key))
    other, _ = new_key(sessions)
    with sessions.begin() as session:
        store.update_principal(session, "alice", disabled=True)
    time.sleep(0.6)
    with pytest.raises(AuthError, match="disabled"):
        auth.authenticate(Bearer(other))


def test_basic_with_key_must_name_its_owner(auth, sessions):
    key, _ = new_key(sessions)
    assert auth.authenticate(Basic("alice", key)).name == "alice"
    with pytest.raises(AuthError, match="does not match"):
        auth.authenticate(Basic("bob", key))


def test_passwords(auth):
    subject = auth.authenticate(Basic("alice", "alice's long password"))
    assert subject.auth == "password"
    assert subject.identity.teams == ()
    assert auth.cached(Basic("alice", "alice's long password")) is not None
    assert auth.cached(Basic("alice", "alice's long passworD")) is None
    for user, password in [
        ("alice", "wrong password!"),
        ("nobody", "whatever pass"),
        ("ci-bot", "x" * 12),
    ]:
        with pytest.raises(AuthError, match="Invalid user name or password") as info:
            auth.authenticate(Basic(user, password))
        assert info.value.throttle_account == account_key(user)


def test_store_down_is_unavailable_not_denied(sessions, tmp_path):
    authenticator = Authenticator(sessions, Throttle(sessions))
    key, _ = new_key(sessions)
    sessions.kw["bind"].dispose()
    (tmp_path / "id.db").unlink()
    (tmp_path / "id.db").mkdir()  # an unopenable database
    with pytest.raises(AuthUnavailable):
        authenticator.authenticate(Bearer(key))


def test_throttle_blocks_after_repeated_failures_and_shares_blocks(sessions):
    clock = [1000.0]
    first = Throttle(
        sessions, max_failures=3, window_seconds=60, block_seconds=30, clock=lambda: clock[0]
    )
    second = Throttle(
        sessions, max_failures=3, window_seconds=60, block_seconds=30, clock=lambda: clock[0]
    )
    keys = [client_key("10.0.0.9")]
    first.record_failure(keys)
    second.record_failure(keys)  # counted in the shared store, not per worker
    assert first.retry_after(keys) is None
    first.record_failure(keys)
    assert first.retry_after(keys) == 31
    assert second.retry_after(keys) is None  # until its poller refreshes
    with sessions() as session:
        second.refresh(session)
    assert second.retry_after(keys) == 31
    clock[0] += 31
    assert first.retry_after(keys) is None


def test_oidc_tokens(sessions):
    with LocalOidcProvider() as provider:
        verifier = OidcVerifier(OidcSettings(issuer=provider.issuer, audience="mlflow"))
        auth = Authenticator(sessions, Throttle(sessions), verifier)
        token = provider.mint({"preferred_username": "alice", "groups": ["/fraud-team", "other"]})
        subject = auth.authenticate(Bearer(token))
        assert subject.auth == "oidc"
        assert subject.identity.teams == ("fraud-team",)
        assert ("fraud", "editor", "team:fraud-team") in subject.identity.projects
        with pytest.raises(AuthError, match="no account"):
            auth.authenticate(Bearer(provider.mint({"preferred_username": "mallory"})))
        with pytest.raises(AuthError, match="Invalid identity token"):
            auth.authenticate(Bearer(provider.mint_unsigned({"preferred_username": "alice"})))
        provisioning = Authenticator(
            sessions, Throttle(sessions), verifier, oidc_auto_provision=True
        )
        new = provisioning.authenticate(Bearer(provider.mint({"preferred_username": "newbie"})))
        assert new.name == "newbie"
        assert new.identity.roles == ()
