"""API keys in the identity store: minting, listing, revoking, rotating, last use.

The store keeps a key's SHA-256 digest, never the key: `create_key` and `rotate_key` return
the key itself exactly once, for the response that shows it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from mlflow_secure.identity import api_keys
from mlflow_secure.identity.models import ApiKey, Principal, utcnow
from mlflow_secure.identity.records import (
    IdentityError,
    NotFound,
    bump,
    check_scopes,
    get_principal,
    get_project,
)


def create_key(
    session: Session,
    principal: str,
    scopes: list[str],
    *,
    name: str | None = None,
    projects: list[str] | None = None,
    expires_at: datetime | None = None,
    created_by: str | None = None,
) -> tuple[str, ApiKey]:
    """Returns the key itself (to show once) and its stored record (which cannot recreate it)."""
    owner = get_principal(session, principal)
    if projects is not None:
        if not isinstance(projects, list) or not projects:
            raise IdentityError("projects must be a non-empty list when given")
        projects = sorted({get_project(session, p).name for p in projects})
    if expires_at is not None and expires_at <= datetime.now(UTC):
        raise IdentityError("expiry must be in the future")
    key, parsed = api_keys.generate()
    record = ApiKey(
        id=parsed.key_id,
        principal_id=owner.id,
        name=name,
        digest=parsed.digest,
        scopes=check_scopes(scopes),
        projects=projects,
        expires_at=expires_at,
        created_by=created_by,
    )
    session.add(record)
    session.flush()
    return key, record


def get_key(session: Session, key_id: str) -> ApiKey:
    record = session.get(ApiKey, key_id)
    if record is None:
        raise NotFound("no such API key")
    return record


def key_owner(session: Session, key_id: str) -> Principal:
    return session.get(Principal, get_key(session, key_id).principal_id)


def list_keys(session: Session, principal: str | None = None) -> list[tuple[ApiKey, str]]:
    query = select(ApiKey, Principal.name).join(Principal, Principal.id == ApiKey.principal_id)
    if principal is not None:
        query = query.where(ApiKey.principal_id == get_principal(session, principal).id)
    return [(key, name) for key, name in session.execute(query.order_by(ApiKey.created_at))]


def revoke_key(session: Session, key_id: str) -> ApiKey:
    record = get_key(session, key_id)
    if record.revoked_at is None:
        record.revoked_at = utcnow()
        bump(session)
    return record


def rotate_key(
    session: Session, key_id: str, grace: timedelta, created_by: str | None = None
) -> tuple[str, ApiKey]:
    """A new key with the same owner, scopes and projects; the old one lives for `grace`."""
    old = get_key(session, key_id)
    if old.revoked_at is not None:
        raise IdentityError("a revoked key cannot be rotated")
    if grace < timedelta(0):
        raise IdentityError("the grace period cannot be negative")
    lifetime = None
    if old.expires_at is not None:
        lifetime = aware(old.expires_at) - aware(old.created_at)
    key, new = create_key(
        session,
        session.get(Principal, old.principal_id).name,
        list(old.scopes),
        name=old.name,
        projects=list(old.projects) if old.projects else None,
        expires_at=utcnow() + lifetime if lifetime else None,
        created_by=created_by,
    )
    deadline = utcnow() + grace
    old.expires_at = min(aware(old.expires_at), deadline) if old.expires_at else deadline
    old.replaced_by = new.id
    bump(session)
    return key, new


def aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything we store is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def touch_keys(session: Session, last_used: dict[str, datetime]) -> None:
    for key_id, moment in last_used.items():
        session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=moment))
