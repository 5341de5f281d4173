"""Turning a credential into a Subject, usually without touching the database.

Everything learned from the database (keys, identities, verified passwords and tokens) is
cached per worker and dropped whenever the shared ``identity_version`` changes. A background
thread polls that counter every quarter of a second, so a revocation, a disabled account or
a changed role takes effect on every worker of every replica in well under a second, while a
request with a known key costs a dictionary lookup and a SHA-256.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from mlflow_secure.identity import api_keys, passwords, store
from mlflow_secure.identity.credentials import Basic, Bearer, Credential
from mlflow_secure.identity.models import ApiKey, Principal
from mlflow_secure.identity.oidc import OidcError, OidcVerifier, looks_like_jwt
from mlflow_secure.identity.subject import ALL_SCOPES, Subject
from mlflow_secure.identity.throttle import Throttle, account_key

_logger = logging.getLogger(__name__)
POLL_INTERVAL = 0.25
LAST_USED_FLUSH_SECONDS = 30.0
VERIFIED_SECRET_TTL = 300.0
# A real Argon2id hash, verified against when the user does not exist, so that the response
# time does not reveal which user names exist.
_DUMMY_PASSWORD_HASH = passwords.hash_password("dummy-password-for-timing")


class AuthError(Exception):
    """Authentication failed. `counts` tells whether it is a failed attempt to throttle."""

    def __init__(self, message: str, status: int = 401, counts: bool = True) -> None:
        super().__init__(message)
        self.status = status
        self.counts = counts
        self.throttle_account: str | None = None


class AuthUnavailable(Exception):
    """The identity store cannot be read: the request is refused with 503."""


@dataclass(frozen=True)
class _Key:
    digest: bytes
    principal_id: int
    scopes: tuple[str, ...]
    projects: tuple[str, ...] | None
    expires_at: float | None
    revoked: bool


class Authenticator:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        throttle: Throttle,
        oidc: OidcVerifier | None = None,
        oidc_auto_provision: bool = False,
    ) -> None:
        self._sessions = sessions
        self.throttle = throttle
        self._oidc = oidc
        self._oidc_auto_provision = oidc_auto_provision
        self._pepper = os.urandom(32)  # per process: cache keys are useless outside it
        self._version: int | None = None
        self._keys: dict[str, _Key] = {}
        self._identities: dict[tuple[int, tuple[str, ...]], store.Identity] = {}
        self._verified: dict[bytes, tuple[int, tuple[str, ...], float, str]] = {}
        self._last_used: dict[str, datetime] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._poller = threading.Thread(
            target=self._poll, name="mlflow-secure-identity", daemon=True
        )

    # ------------------------------------------------------------ cache maintenance

    def start(self) -> None:
        self._sync()
        self._poller.start()

    def stop(self) -> None:
        self._stop.set()
        self._flush_last_used()

    def _reset(self, version: int | None) -> None:
        with self._lock:
            self._version = version
            self._keys, self._identities, self._verified = {}, {}, {}

    def _put(self, cache: dict, key: object, value: object, seen_version: int | None) -> None:
        """Cache what was read under `seen_version` only if no change happened since:
        otherwise a read that raced a revocation could outlive it."""
        with self._lock:
            if seen_version is not None and seen_version == self._version:
                cache[key] = value

    def _sync(self) -> None:
        try:
            with self._sessions() as session:
                version = store.identity_version(session)
                self.throttle.refresh(session)
        except SQLAlchemyError as exc:
            if self._version is not None:
                _logger.warning("identity store unreachable (%s)", type(exc).__name__)
            self._reset(None)
            return
        if version != self._version:
            self._reset(version)

    def _poll(self) -> None:
        last_flush = time.monotonic()
        while not self._stop.wait(POLL_INTERVAL):
            self._sync()
            if time.monotonic() - last_flush > LAST_USED_FLUSH_SECONDS:
                self._flush_last_used()
                last_flush = time.monotonic()

    def _flush_last_used(self) -> None:
        with self._lock:
            pending, self._last_used = self._last_used, {}
        if not pending:
            return
        try:
            with self._sessions.begin() as session:
                store.touch_keys(session, pending)
        except SQLAlchemyError:
            _logger.warning("could not record API key last-use times; will retry")
            with self._lock:
                self._last_used = {**pending, **self._last_used}

    # ------------------------------------------------------------ entry points

    def cached(self, credential: Credential) -> Subject | None:
        """The subject if everything needed is in memory; None means call `authenticate`."""
        if isinstance(credential, Bearer) and api_keys.looks_like_key(credential.token):
            parsed = self._parse_key(credential.token)
            entry = self._keys.get(parsed.key_id)
            if entry is None:
                return None
            return self._subject_for_key(parsed, entry, None, lookup=False)
        if self._version is None:
            return None
        secret = self._secret_fingerprint(credential)
        hit = self._verified.get(secret)
        if hit is None or hit[2] < time.time():
            return None
        principal_id, teams, _, auth = hit
        if auth == "password" and self._account_locked(credential.username):
            return None  # authenticate() refuses it, with the lock's Retry-After
        identity = self._identities.get((principal_id, teams))
        return Subject(identity, auth) if identity and not identity.disabled else None

    def authenticate(self, credential: Credential) -> Subject:
        """Full authentication; may read the database and run a password KDF (thread only)."""
        try:
            if isinstance(credential, Bearer):
                if api_keys.looks_like_key(credential.token):
                    parsed = self._parse_key(credential.token)
                    return self._subject_for_key(parsed, self._load_key(parsed.key_id), None)
                if self._oidc is not None and looks_like_jwt(credential.token):
                    return self._oidc_subject(credential)
                raise AuthError("Invalid API key.")
            if api_keys.looks_like_key(credential.password):
                parsed = self._parse_key(credential.password)
                return self._subject_for_key(
                    parsed, self._load_key(parsed.key_id), credential.username
                )
            return self._password_subject(credential)
        except SQLAlchemyError as exc:
            raise AuthUnavailable(type(exc).__name__) from None

    # ------------------------------------------------------------ API keys

    @staticmethod
    def _parse_key(token: str) -> api_keys.ParsedKey:
        try:
            return api_keys.parse(token)
        except api_keys.MalformedKey:
            raise AuthError("Invalid API key.") from None

    def _load_key(self, key_id: str) -> _Key | None:
        seen = self._version
        with self._sessions() as session:
            record = session.get(ApiKey, key_id)
            if record is None:
                return None
            expires = record.expires_at
            entry = _Key(
                digest=record.digest,
                principal_id=record.principal_id,
                scopes=tuple(record.scopes),
                projects=tuple(record.projects) if record.projects is not None else None,
                expires_at=_timestamp(expires) if expires else None,
                revoked=record.revoked_at is not None,
            )
        self._put(self._keys, key_id, entry, seen)
        return entry

    def _subject_for_key(
        self,
        parsed: api_keys.ParsedKey,
        entry: _Key | None,
        claimed_user: str | None,
        lookup: bool = True,
    ) -> Subject | None:
        if entry is None or not api_keys.matches(parsed, entry.digest):
            raise AuthError("Invalid API key.")
        if entry.revoked:
            raise AuthError("This API key has been revoked.")
        if entry.expires_at is not None and entry.expires_at <= time.time():
            raise AuthError("This API key has expired.")
        identity = self._identities.get((entry.principal_id, ()))
        if identity is None:
            if not lookup:
                return None
            identity = self._load_identity(entry.principal_id, ())
        if claimed_user is not None and not hmac.compare_digest(claimed_user, identity.name):
            raise AuthError("The user name does not match the API key.")
        if identity.disabled:
            raise AuthError("This account is disabled.")
        with self._lock:
            self._last_used[parsed.key_id] = datetime.now(UTC)
        return Subject(
            identity,
            "api_key",
            scopes=entry.scopes,
            key_id=parsed.key_id,
            key_projects=entry.projects,
        )

    def _load_identity(self, principal_id: int, teams: tuple[str, ...]) -> store.Identity:
        seen = self._version
        with self._sessions() as session:
            try:
                identity = store.load_identity(session, principal_id, teams)
            except store.NotFound:
                raise AuthError("Unknown principal.") from None
        self._put(self._identities, (principal_id, teams), identity, seen)
        return identity

    # ------------------------------------------------------------ passwords and tokens

    def _secret_fingerprint(self, credential: Credential) -> bytes:
        if isinstance(credential, Basic):
            material = f"basic\x00{credential.username}\x00{credential.password}"
        else:
            material = f"bearer\x00{credential.token}"
        return hmac.new(self._pepper, material.encode(), hashlib.sha256).digest()

    def _remember(
        self,
        credential: Credential,
        identity: store.Identity,
        teams: tuple[str, ...],
        until: float,
        auth: str,
        seen_version: int | None,
    ) -> None:
        value = (identity.principal_id, teams, until, auth)
        self._put(self._verified, self._secret_fingerprint(credential), value, seen_version)

    def _account_locked(self, username: str) -> bool:
        """Memory only: the poller copies locks set by other workers within its interval."""
        return self.throttle.retry_after([account_key(username)]) is not None

    def _refuse_if_locked(self, username: str) -> None:
        """A locked account refuses its password, the correct one too, while the lock lasts."""
        if self._account_locked(username):
            error = AuthError(
                "Too many failed password attempts for this account; retry later.",
                status=429,
                counts=False,
            )
            error.throttle_account = account_key(username)  # answered 429 with Retry-After
            raise error

    def _password_subject(self, credential: Basic) -> Subject:
        self._refuse_if_locked(credential.username)  # before the KDF: no oracle, no cost
        seen = self._version
        with self._sessions() as session:
            principal = session.scalar(
                select(Principal).where(Principal.name == credential.username)
            )
            usable = principal is not None and principal.kind == "user"
            encoded = principal.password_hash if usable else None
            principal_id = principal.id if usable else None
        if not passwords.verify_password(credential.password, encoded or _DUMMY_PASSWORD_HASH) or (
            encoded is None
        ):
            error = AuthError("Invalid user name or password.")
            error.throttle_account = account_key(credential.username)
            raise error
        identity = self._load_identity(principal_id, ())
        if identity.disabled:
            raise AuthError("This account is disabled.")
        self._remember(
            credential, identity, (), time.time() + VERIFIED_SECRET_TTL, "password", seen
        )
        return Subject(identity, "password", scopes=ALL_SCOPES)

    def _oidc_subject(self, credential: Bearer) -> Subject:
        try:
            verified = self._oidc.verify(credential.token)
        except OidcError as exc:
            if str(exc) == "identity provider unreachable":
                raise AuthUnavailable(str(exc)) from None
            raise AuthError(f"Invalid identity token: {exc}") from None
        seen = self._version
        with self._sessions.begin() as session:
            principal = session.scalar(select(Principal).where(Principal.name == verified.username))
            if principal is None:
                if not self._oidc_auto_provision:
                    raise AuthError("This identity has no account on this server.")
                try:
                    principal = store.create_principal(session, verified.username, "user")
                except store.IdentityError:
                    raise AuthError("This identity cannot be given an account.") from None
            principal_id = principal.id
        # Keycloak-style group paths ("/team-a") name the team "team-a".
        teams = tuple(sorted({group.strip("/") for group in verified.groups}))
        identity = self._load_identity(principal_id, teams)
        if identity.disabled:
            raise AuthError("This account is disabled.")
        self._remember(credential, identity, teams, verified.expires_at, "oidc", seen)
        return Subject(identity, "oidc", scopes=ALL_SCOPES)


def _timestamp(moment: datetime) -> float:
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
