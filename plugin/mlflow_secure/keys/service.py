"""Key service operations: issue and open data keys, rotate, retire and destroy project keys.

Callers have been authorised by the policy for the artefact or project concerned (the front
door decides before a handler runs); these functions enforce what no policy may change: a
data key opens only for the artefact it was issued for, only while its project key exists,
and a destroyed project's keys never come back. Every wrapped value carries associated data
naming what it belongs to, so a wrapped key copied to another row does not open.

Concurrency: every operation first updates the project's row in `mls_key_locks` (a row lock
on PostgreSQL, the database's write lock on SQLite, whose reads would otherwise run before
its transaction starts), so operations on one project's keys run one after another: a data
key is never wrapped under a version being retired or destroyed at that moment, and two
rotations never pick the same version number.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from datetime import datetime

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from mlflow_secure.identity.models import utcnow
from mlflow_secure.identity.records import IdentityError, NotFound
from mlflow_secure.keys.models import DataKey, KeyLock, ProjectKey
from mlflow_secure.keys.wrapping import KeyWrapper, MasterKeyError

KEY_SIZE = 32


class KeyRefused(IdentityError):
    """A key operation no policy may allow (a destroyed key, another artefact's key)."""

    code = "PERMISSION_DENIED"
    status = 403


class KeyServiceUnavailable(IdentityError):
    code = "TEMPORARILY_UNAVAILABLE"
    status = 503


@dataclass(frozen=True)
class IssuedKey:
    key_id: str
    key_version: int  # the project key version it was made under (the artefact header's)
    data_key: bytes
    project: str
    artefact: str


def new_key_id() -> str:
    return "dk-" + base64.b32encode(os.urandom(20)).decode().rstrip("=").lower()


def _kek_aad(project: str, version: int) -> bytes:
    return b"mlflow-secure/kek/v1\x00" + project.encode() + b"\x00" + str(version).encode()


def _dek_aad(key_id: str, project: str, artefact: str) -> bytes:
    parts = (b"mlflow-secure/dek/v1", key_id.encode(), project.encode(), artefact.encode())
    return b"\x00".join(parts)


def _lock(session: Session, project: str) -> None:
    """Serialise this transaction with every other operation on `project`'s keys."""
    dialect = session.get_bind().dialect.name
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    session.execute(insert(KeyLock).values(project=project, operations=0).on_conflict_do_nothing())
    session.execute(
        update(KeyLock).where(KeyLock.project == project).values(operations=KeyLock.operations + 1)
    )


def _project_keys(session: Session, project: str) -> list[ProjectKey]:
    query = select(ProjectKey).where(ProjectKey.project == project).order_by(ProjectKey.version)
    return list(session.scalars(query))


def _unwrap_project_key(wrapper: KeyWrapper, row: ProjectKey) -> AESGCM:
    if row.wrapped is None:
        raise KeyRefused(
            f"project key {row.project} v{row.version} was erased (retired or destroyed)"
        )
    try:
        return AESGCM(wrapper.unwrap(row.wrapped, _kek_aad(row.project, row.version)))
    except MasterKeyError as exc:
        raise KeyServiceUnavailable(
            f"project key {row.project} v{row.version} cannot be opened: {exc}"
        ) from None


def _destroyed(rows: list[ProjectKey]) -> bool:
    return any(row.state == "destroyed" for row in rows)


def _new_version(
    session: Session, wrapper: KeyWrapper, project: str, version: int, actor: str
) -> ProjectKey:
    row = ProjectKey(
        project=project,
        version=version,
        state="active",
        wrapped=wrapper.wrap(AESGCM.generate_key(bit_length=256), _kek_aad(project, version)),
        wrapper=wrapper.name,
        created_by=actor,
    )
    session.add(row)
    session.flush()
    return row


def _active(session: Session, wrapper: KeyWrapper, project: str, actor: str) -> ProjectKey:
    """The project's active key version, created on first use."""
    _lock(session, project)
    rows = _project_keys(session, project)
    if _destroyed(rows):
        raise KeyRefused(
            f"the keys of project {project!r} were destroyed; its artefacts are unrecoverable "
            "and no new key is made under that name"
        )
    active = [row for row in rows if row.state == "active"]
    if active:
        return active[-1]
    return _new_version(
        session, wrapper, project, 1 + max((r.version for r in rows), default=0), actor
    )


def issue(
    session: Session,
    wrapper: KeyWrapper,
    project: str,
    experiment_id: str,
    artefact: str,
    actor: str,
) -> IssuedKey:
    """A fresh data key for one artefact, stored wrapped under the project's active key."""
    kek = _active(session, wrapper, project, actor)
    key_id, data_key = new_key_id(), os.urandom(KEY_SIZE)
    nonce = os.urandom(12)
    aad = _dek_aad(key_id, project, artefact)
    wrapped = nonce + _unwrap_project_key(wrapper, kek).encrypt(nonce, data_key, aad)
    session.add(
        DataKey(
            key_id=key_id,
            project=project,
            key_version=kek.version,
            created_version=kek.version,
            experiment_id=experiment_id,
            artefact=artefact,
            wrapped=wrapped,
            created_by=actor,
        )
    )
    session.flush()
    return IssuedKey(key_id, kek.version, data_key, project, artefact)


def not_issued_for(key_id: str) -> KeyRefused:
    """One answer for a key id that does not exist and one issued for another artefact, so
    that no one learns whether a key id lifted from a stolen file is live."""
    return KeyRefused(f"data key {key_id} was not issued for this artefact")


def find_for(session: Session, key_id: str, artefact: str, experiment_id: object) -> DataKey:
    """The data key `key_id` if it was issued for `artefact` in experiment `experiment_id`
    (the experiment binds it too: a trace id, which a client may choose, could otherwise
    be deleted and made again in another experiment to reach the first one's key)."""
    record = session.get(DataKey, key_id)
    if record is None or record.artefact != artefact or record.experiment_id != str(experiment_id):
        raise not_issued_for(key_id)
    return record


def open_key(session: Session, wrapper: KeyWrapper, record: DataKey, artefact: str) -> bytes:
    """The data key of `record`, for the artefact it was issued for only."""
    if record.artefact != artefact:
        raise not_issued_for(record.key_id)
    if record.wrapped is None:
        raise KeyRefused(
            f"the keys of project {record.project!r} were destroyed: this artefact cannot "
            "be decrypted by anyone"
        )
    row = session.scalars(
        select(ProjectKey).where(
            ProjectKey.project == record.project, ProjectKey.version == record.key_version
        )
    ).one_or_none()
    if row is None or row.wrapped is None:
        raise KeyRefused(f"the project key wrapping data key {record.key_id} no longer exists")
    kek = _unwrap_project_key(wrapper, row)
    blob = record.wrapped
    try:
        return kek.decrypt(blob[:12], blob[12:], _dek_aad(record.key_id, record.project, artefact))
    except InvalidTag:
        raise KeyServiceUnavailable(
            f"data key {record.key_id} does not open under its project key (altered in store)"
        ) from None


def rotate(session: Session, wrapper: KeyWrapper, project: str, actor: str) -> dict:
    """A new active project key version; every data key is re-wrapped under it (the
    artefacts are not touched: their headers keep the version they were made under)."""
    _lock(session, project)
    rows = _project_keys(session, project)
    if _destroyed(rows):
        raise KeyRefused(f"the keys of project {project!r} were destroyed")
    version = 1 + max((row.version for row in rows), default=0)
    new = _new_version(session, wrapper, project, version, actor)
    new_kek = _unwrap_project_key(wrapper, new)
    now = utcnow()
    for row in rows:
        if row.state == "active":
            row.state, row.changed_by, row.changed_at = "superseded", actor, now
    old_keks = {
        row.version: _unwrap_project_key(wrapper, row) for row in rows if row.wrapped is not None
    }
    moved = lost = 0
    records = session.scalars(
        select(DataKey).where(DataKey.project == project, DataKey.key_version != version)
    )
    for record in records:
        old = old_keks.get(record.key_version)
        if record.wrapped is None or old is None:
            # its version is gone (a store from before the per-project lock): it cannot be
            # recovered, and must not stop the rest of the project's keys from moving on
            lost += record.wrapped is not None
            continue
        aad = _dek_aad(record.key_id, record.project, record.artefact)
        data_key = old.decrypt(record.wrapped[:12], record.wrapped[12:], aad)
        nonce = os.urandom(12)
        record.wrapped = nonce + new_kek.encrypt(nonce, data_key, aad)
        record.key_version = version
        moved += 1
    return {"project": project, "version": version, "rewrapped": moved, "unrecoverable": lost}


def retire(session: Session, project: str, version: int, actor: str) -> dict:
    """Retire a superseded version for good (its wrapped key erased); refused for the active
    version and while a data key still depends on it (rotate first)."""
    _lock(session, project)
    rows = {row.version: row for row in _project_keys(session, project)}
    row = rows.get(version)
    if row is None:
        raise NotFound(f"project {project!r} has no key version {version}")
    if row.state == "active":
        raise IdentityError(f"version {version} is the active key of {project!r}: rotate first")
    if row.state in {"retired", "destroyed"}:
        return {"project": project, "version": version, "state": row.state}
    still = session.scalar(
        select(func.count())
        .select_from(DataKey)
        .where(DataKey.project == project, DataKey.key_version == version)
    )
    if still:
        raise IdentityError(
            f"{still} data key(s) of {project!r} are still wrapped by version {version}: "
            "rotate the project key first"
        )
    row.state, row.wrapped, row.changed_by, row.changed_at = "retired", None, actor, utcnow()
    return {"project": project, "version": version, "state": "retired"}


def destroy(session: Session, project: str, actor: str) -> dict:
    """Crypto-shredding: every key of the project is erased, so every artefact encrypted
    for it is unrecoverable, whoever holds the ciphertext. Idempotent."""
    _lock(session, project)
    rows = _project_keys(session, project)
    if not rows:
        raise NotFound(f"project {project!r} has no keys")
    now = utcnow()
    for row in rows:
        row.state, row.wrapped, row.changed_by, row.changed_at = "destroyed", None, actor, now
    erased = session.execute(
        update(DataKey)
        .where(DataKey.project == project, DataKey.wrapped.is_not(None))
        .values(wrapped=None)
    ).rowcount
    return {"project": project, "destroyed_versions": len(rows), "data_keys_erased": erased}


def status(session: Session, project: str) -> dict:
    counts = dict(
        session.execute(
            select(DataKey.key_version, func.count())
            .where(DataKey.project == project, DataKey.wrapped.is_not(None))
            .group_by(DataKey.key_version)
        ).all()
    )
    return {
        "project": project,
        "versions": [
            {
                "version": row.version,
                "state": row.state,
                "created_at": _iso(row.created_at),
                "created_by": row.created_by,
                "changed_at": _iso(row.changed_at),
                "changed_by": row.changed_by,
                "data_keys": counts.get(row.version, 0),
            }
            for row in _project_keys(session, project)
        ],
    }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None
