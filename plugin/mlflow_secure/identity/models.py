"""Tables of the identity store. Prefixed ``mls_`` so they can share the tracking database.

Schema changes go through Alembic (``identity/migrations``); this module is what the
migrations are checked against.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

KINDS = ("user", "service")
GLOBAL_ROLES = ("admin", "auditor")
PROJECT_ROLES = ("viewer", "editor", "maintainer")
CLEARANCES = ("public", "internal", "confidential", "restricted")
SCOPES = ("read", "write", "admin")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class Principal(Base):
    __tablename__ = "mls_principals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    display_name: Mapped[str | None] = mapped_column(String(256))
    email: Mapped[str | None] = mapped_column(String(256))
    password_hash: Mapped[str | None] = mapped_column(String(256))
    roles: Mapped[list[str]] = mapped_column(JSON, default=list)
    clearance: Mapped[str] = mapped_column(String(16), default="internal")
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("mls_principals.id"))
    owner_team_id: Mapped[int | None] = mapped_column(ForeignKey("mls_teams.id"))
    # Where new work goes when a request names no project (set by an administrator; only
    # honoured while the principal is a member of it: see Subject.default_project).
    default_project_id: Mapped[int | None] = mapped_column(
        ForeignKey("mls_projects.id", ondelete="SET NULL", name="fk_mls_principals_default_project")
    )
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (
        CheckConstraint("kind IN ('user', 'service')", name="ck_mls_principals_kind"),
        CheckConstraint("kind = 'user' OR password_hash IS NULL", name="ck_mls_no_service_pw"),
    )


class Team(Base):
    __tablename__ = "mls_teams"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str | None] = mapped_column(String(1024))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class TeamMember(Base):
    __tablename__ = "mls_team_members"

    team_id: Mapped[int] = mapped_column(
        ForeignKey("mls_teams.id", ondelete="CASCADE"), primary_key=True
    )
    principal_id: Mapped[int] = mapped_column(
        ForeignKey("mls_principals.id", ondelete="CASCADE"), primary_key=True
    )


class Project(Base):
    __tablename__ = "mls_projects"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str | None] = mapped_column(String(1024))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ProjectMember(Base):
    """A principal or a whole team holding a role in a project."""

    __tablename__ = "mls_project_members"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("mls_projects.id", ondelete="CASCADE"))
    principal_id: Mapped[int | None] = mapped_column(
        ForeignKey("mls_principals.id", ondelete="CASCADE")
    )
    team_id: Mapped[int | None] = mapped_column(ForeignKey("mls_teams.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(16))

    __table_args__ = (
        UniqueConstraint("project_id", "principal_id", "team_id", name="uq_mls_project_member"),
        CheckConstraint("(principal_id IS NULL) != (team_id IS NULL)", name="ck_mls_member_one_of"),
    )


class ApiKey(Base):
    __tablename__ = "mls_api_keys"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)  # the public key id
    principal_id: Mapped[int] = mapped_column(
        ForeignKey("mls_principals.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str | None] = mapped_column(String(128))
    digest: Mapped[bytes] = mapped_column(LargeBinary(32))
    scopes: Mapped[list[str]] = mapped_column(JSON)
    projects: Mapped[list[str] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(64))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    replaced_by: Mapped[str | None] = mapped_column(String(16))


class StateCounter(Base):
    """`identity_version` is bumped by every change that can affect authentication, so each
    worker can tell with one tiny query whether its caches are still valid."""

    __tablename__ = "mls_state"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(Integer, default=0)


class AuthFailure(Base):
    """Failed-authentication counters shared by all workers and replicas."""

    __tablename__ = "mls_auth_failures"

    key: Mapped[str] = mapped_column(String(160), primary_key=True)
    window_start: Mapped[float] = mapped_column(Float)
    count: Mapped[int] = mapped_column(Integer, default=0)
    blocked_until: Mapped[float] = mapped_column(Float, default=0.0)
