"""The key service's tables, in the identity store (``mls_`` prefix, its migrations).

A project key (key-encryption key) is stored only wrapped by the master key; a data key only
wrapped by a project key version. Destroying a project's keys clears both wrapped columns:
rows stay, so the audit trail and `keys status` can still say what was destroyed and when.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from mlflow_secure.identity.models import Base, utcnow

# active: wraps new data keys; superseded: replaced by a rotation, still stored; retired:
# erased after its data keys moved on; destroyed: erased with the whole project (shredding)
KEY_STATES = ("active", "superseded", "retired", "destroyed")


class KeyLock(Base):
    """One row per project whose keys exist: every key operation updates it first, so the
    operations on a project's keys are serialised (a PostgreSQL row lock; SQLite's write
    lock) and none reads a version another is retiring, destroying or creating."""

    __tablename__ = "mls_key_locks"

    project: Mapped[str] = mapped_column(String(256), primary_key=True)
    operations: Mapped[int] = mapped_column(Integer, default=0)


class ProjectKey(Base):
    __tablename__ = "mls_project_keys"
    __table_args__ = (UniqueConstraint("project", "version", name="uq_mls_project_keys_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project: Mapped[str] = mapped_column(String(256), index=True)
    version: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default="active")
    wrapped: Mapped[bytes | None] = mapped_column(LargeBinary)  # None once destroyed
    wrapper: Mapped[str] = mapped_column(String(64))  # which master key wrapped it
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    changed_by: Mapped[str | None] = mapped_column(String(64))
    changed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class DataKey(Base):
    __tablename__ = "mls_data_keys"

    key_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    project: Mapped[str] = mapped_column(String(256), index=True)
    # the project key version that wraps it now (rotation moves it) and the one it was made
    # under (written in the artefact's header and bound into its associated data)
    key_version: Mapped[int] = mapped_column(Integer)
    created_version: Mapped[int] = mapped_column(Integer)
    experiment_id: Mapped[str] = mapped_column(String(64))
    artefact: Mapped[str] = mapped_column(String(1100))
    wrapped: Mapped[bytes | None] = mapped_column(LargeBinary)  # None once destroyed
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
