"""The identity store: opening it, migrating it, and every change to it.

Every function that changes something that can affect authentication bumps the shared
``identity_version`` counter in the same transaction, which is how every worker of every
replica notices (within its poll interval) that its caches must be dropped.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, delete, event, false, or_, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from mlflow_secure.identity import api_keys, passwords
from mlflow_secure.identity.models import (
    CLEARANCES,
    GLOBAL_ROLES,
    KINDS,
    PROJECT_ROLES,
    SCOPES,
    ApiKey,
    Principal,
    Project,
    ProjectMember,
    StateCounter,
    Team,
    TeamMember,
    utcnow,
)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}")
_PG_MIGRATION_LOCK = 0x6D6C7365  # "mlse": serialises migrations across replicas


class IdentityError(ValueError):
    """A request the store refuses; `code` is the MLflow error code to answer with."""

    code = "INVALID_PARAMETER_VALUE"
    status = 400


class NotFound(IdentityError):
    code = "RESOURCE_DOES_NOT_EXIST"
    status = 404


class AlreadyExists(IdentityError):
    code = "RESOURCE_ALREADY_EXISTS"
    status = 400


# ---------------------------------------------------------------- opening and migrating


def default_identity_uri(backend_store_uri: str | None) -> str:
    """Beside the tracking database: a sibling SQLite file, or the same SQL database."""
    if not backend_store_uri:
        return f"sqlite:///{Path.cwd() / 'mlflow-secure.db'}"
    if "://" not in backend_store_uri:  # a file store directory
        return f"sqlite:///{Path(backend_store_uri).resolve().parent / 'mlflow-secure.db'}"
    url = make_url(backend_store_uri)
    if url.get_backend_name() == "sqlite":
        database = Path(url.database or "mlflow.db")
        return f"sqlite:///{database.resolve().parent / (database.stem + '-secure.db')}"
    return backend_store_uri


def _create_private(database: str) -> None:
    """Key digests, password hashes and the audit trail: readable by the server's user only.

    SQLite gives its -wal and -shm files the database file's permissions, so creating the
    (empty, hence valid) database file 0600 first covers all three.
    """
    path = Path(database)
    # A missing directory stays an error for SQLite to report; only the file is created here.
    if database != ":memory:" and path.parent.is_dir() and not path.exists():
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def open_engine(uri: str) -> Engine:
    url = make_url(uri)
    if url.get_backend_name() == "sqlite":
        if url.database:
            _create_private(url.database)
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(connection, _record) -> None:
            cursor = connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


@contextlib.contextmanager
def migration_lock(engine: Engine) -> Iterator[None]:
    """Only one worker (or replica) migrates; the others wait and then find nothing to do."""
    backend = engine.url.get_backend_name()
    if backend == "sqlite" and engine.url.database:
        lock_path = Path(engine.url.database).resolve().with_suffix(".migrate.lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)
    elif backend == "postgresql":
        with engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_MIGRATION_LOCK})
                connection.commit()
    else:
        yield


def migrate(engine: Engine) -> None:
    """Upgrade to the newest schema; callers hold `migration_lock` across workers."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


# ---------------------------------------------------------------- change tracking


def identity_version(session: Session) -> int:
    return session.scalar(select(StateCounter.value).where(StateCounter.name == "identity_version"))


def _bump(session: Session) -> None:
    session.execute(
        update(StateCounter)
        .where(StateCounter.name == "identity_version")
        .values(value=StateCounter.value + 1)
    )


def _flush(session: Session, what: str) -> None:
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise AlreadyExists(f"{what} already exists") from None


# ---------------------------------------------------------------- validation helpers


def _check_name(name: object, what: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise IdentityError(
            f"{what} name must be 1-64 characters of letters, digits and . _ @ + - "
            "(starting with a letter or digit)"
        )
    return name


def _check_choice(value: object, allowed: tuple[str, ...], what: str) -> str:
    if value not in allowed:
        raise IdentityError(f"{what} must be one of {', '.join(allowed)}")
    return value  # type: ignore[return-value]


def _check_roles(roles: object) -> list[str]:
    if not isinstance(roles, list):
        raise IdentityError("roles must be a list")
    return sorted({_check_choice(role, GLOBAL_ROLES, "role") for role in roles})


# ---------------------------------------------------------------- principals


def get_principal(session: Session, name: str) -> Principal:
    principal = session.scalar(select(Principal).where(Principal.name == name))
    if principal is None:
        raise NotFound(f"no principal named {name!r}")
    return principal


def create_principal(
    session: Session,
    name: str,
    kind: str,
    *,
    display_name: str | None = None,
    email: str | None = None,
    password: str | None = None,
    roles: list[str] | None = None,
    clearance: str = "internal",
    owner: str | None = None,
    owner_team: str | None = None,
) -> Principal:
    _check_name(name, "principal")
    _check_choice(kind, KINDS, "kind")
    if password is not None and kind != "user":
        raise IdentityError("service accounts authenticate with API keys, not passwords")
    if kind == "user" and (owner or owner_team):
        raise IdentityError("only service accounts have an owner")
    try:
        password_hash = passwords.hash_password(password) if password is not None else None
    except passwords.WeakPassword as exc:
        raise IdentityError(str(exc)) from None
    principal = Principal(
        name=name,
        kind=kind,
        display_name=display_name,
        email=email,
        password_hash=password_hash,
        roles=_check_roles(roles or []),
        clearance=_check_choice(clearance, CLEARANCES, "clearance"),
        owner_id=get_principal(session, owner).id if owner else None,
        owner_team_id=get_team(session, owner_team).id if owner_team else None,
        disabled=False,
    )
    session.add(principal)
    _flush(session, f"a principal named {name!r}")
    _bump(session)
    return principal


def update_principal(session: Session, name: str, **changes: object) -> Principal:
    principal = get_principal(session, name)
    for field, value in changes.items():
        if value is None:
            continue
        if field == "password":
            if principal.kind != "user":
                raise IdentityError("service accounts authenticate with API keys, not passwords")
            try:
                principal.password_hash = passwords.hash_password(str(value))
            except passwords.WeakPassword as exc:
                raise IdentityError(str(exc)) from None
        elif field == "roles":
            principal.roles = _check_roles(value)
        elif field == "clearance":
            principal.clearance = _check_choice(value, CLEARANCES, "clearance")
        elif field == "disabled":
            if not isinstance(value, bool):
                raise IdentityError("disabled must be true or false")
            principal.disabled = value
        elif field in {"display_name", "email"}:
            setattr(principal, field, str(value))
        else:
            raise IdentityError(f"unknown field {field!r}")
    principal.updated_at = utcnow()
    _bump(session)
    return principal


def grant_role(session: Session, name: str, role: str) -> Principal:
    principal = get_principal(session, name)
    return update_principal(session, name, roles=[*principal.roles, role])


def revoke_role(session: Session, name: str, role: str) -> Principal:
    principal = get_principal(session, name)
    _check_choice(role, GLOBAL_ROLES, "role")
    return update_principal(session, name, roles=[r for r in principal.roles if r != role])


def delete_principal(session: Session, name: str) -> None:
    principal = get_principal(session, name)
    session.execute(
        update(Principal).where(Principal.owner_id == principal.id).values(owner_id=None)
    )
    session.delete(principal)
    _bump(session)


def list_principals(session: Session, kind: str | None = None) -> list[Principal]:
    query = select(Principal).order_by(Principal.name)
    if kind:
        query = query.where(Principal.kind == kind)
    return list(session.scalars(query))


def count_admins(session: Session) -> int:
    return sum(
        1 for p in session.scalars(select(Principal)) if "admin" in p.roles and not p.disabled
    )


# ---------------------------------------------------------------- teams


def get_team(session: Session, name: str) -> Team:
    team = session.scalar(select(Team).where(Team.name == name))
    if team is None:
        raise NotFound(f"no team named {name!r}")
    return team


def create_team(session: Session, name: str, description: str | None = None) -> Team:
    team = Team(name=_check_name(name, "team"), description=description)
    session.add(team)
    _flush(session, f"a team named {name!r}")
    return team


def delete_team(session: Session, name: str) -> None:
    team = get_team(session, name)
    session.execute(
        update(Principal).where(Principal.owner_team_id == team.id).values(owner_team_id=None)
    )
    session.delete(team)
    _bump(session)


def list_teams(session: Session) -> list[tuple[Team, list[str]]]:
    teams = list(session.scalars(select(Team).order_by(Team.name)))
    members = session.execute(
        select(TeamMember.team_id, Principal.name)
        .join(Principal, Principal.id == TeamMember.principal_id)
        .order_by(Principal.name)
    ).all()
    by_team: dict[int, list[str]] = {}
    for team_id, principal_name in members:
        by_team.setdefault(team_id, []).append(principal_name)
    return [(team, by_team.get(team.id, [])) for team in teams]


def add_team_member(session: Session, team: str, principal: str) -> None:
    session.add(
        TeamMember(
            team_id=get_team(session, team).id, principal_id=get_principal(session, principal).id
        )
    )
    _flush(session, f"{principal!r} in team {team!r}")
    _bump(session)


def remove_team_member(session: Session, team: str, principal: str) -> None:
    result = session.execute(
        delete(TeamMember).where(
            TeamMember.team_id == get_team(session, team).id,
            TeamMember.principal_id == get_principal(session, principal).id,
        )
    )
    if result.rowcount == 0:
        raise NotFound(f"{principal!r} is not a member of team {team!r}")
    _bump(session)


# ---------------------------------------------------------------- projects


def get_project(session: Session, name: str) -> Project:
    project = session.scalar(select(Project).where(Project.name == name))
    if project is None:
        raise NotFound(f"no project named {name!r}")
    return project


def create_project(session: Session, name: str, description: str | None = None) -> Project:
    project = Project(name=_check_name(name, "project"), description=description)
    session.add(project)
    _flush(session, f"a project named {name!r}")
    return project


def delete_project(session: Session, name: str) -> None:
    session.delete(get_project(session, name))
    _bump(session)


def _member_clause(session: Session, principal: str | None, team: str | None) -> dict:
    if (principal is None) == (team is None):
        raise IdentityError("give exactly one of principal or team")
    if principal is not None:
        return {"principal_id": get_principal(session, principal).id}
    return {"team_id": get_team(session, team).id}


def set_project_member(
    session: Session, project: str, role: str, principal: str | None = None, team: str | None = None
) -> None:
    _check_choice(role, PROJECT_ROLES, "project role")
    project_id = get_project(session, project).id
    who = _member_clause(session, principal, team)
    existing = session.scalar(select(ProjectMember).filter_by(project_id=project_id, **who))
    if existing:
        existing.role = role
    else:
        session.add(ProjectMember(project_id=project_id, role=role, **who))
    _bump(session)


def remove_project_member(
    session: Session, project: str, principal: str | None = None, team: str | None = None
) -> None:
    project_id = get_project(session, project).id
    who = _member_clause(session, principal, team)
    result = session.execute(delete(ProjectMember).filter_by(project_id=project_id, **who))
    if result.rowcount == 0:
        raise NotFound(f"no such member of project {project!r}")
    _bump(session)


def list_projects(session: Session) -> list[tuple[Project, list[dict[str, str]]]]:
    projects = list(session.scalars(select(Project).order_by(Project.name)))
    rows = session.execute(
        select(ProjectMember.project_id, ProjectMember.role, Principal.name, Team.name)
        .outerjoin(Principal, Principal.id == ProjectMember.principal_id)
        .outerjoin(Team, Team.id == ProjectMember.team_id)
    ).all()
    members: dict[int, list[dict[str, str]]] = {}
    for project_id, role, principal_name, team_name in rows:
        entry = {"principal": principal_name} if principal_name else {"team": team_name}
        members.setdefault(project_id, []).append({**entry, "role": role})
    return [(project, members.get(project.id, [])) for project in projects]


# ---------------------------------------------------------------- what a principal is


@dataclass(frozen=True)
class Identity:
    """Everything the policy needs to know about a principal, read once and cached."""

    principal_id: int
    name: str
    kind: str
    roles: tuple[str, ...]
    teams: tuple[str, ...]
    projects: tuple[tuple[str, str, str], ...]  # (project, role, "direct" or "team:<name>")
    clearance: str
    disabled: bool
    owner: str | None


def load_identity(
    session: Session, principal_id: int, extra_teams: tuple[str, ...] = ()
) -> Identity:
    """`extra_teams`: teams asserted by a trusted identity provider (OIDC group claim)."""
    principal = session.get(Principal, principal_id)
    if principal is None:
        raise NotFound("principal no longer exists")
    team_rows = session.execute(
        select(Team.id, Team.name)
        .join(TeamMember, TeamMember.team_id == Team.id)
        .where(TeamMember.principal_id == principal_id)
    ).all()
    if extra_teams:
        team_rows += session.execute(
            select(Team.id, Team.name).where(Team.name.in_(extra_teams))
        ).all()
    teams = {team_id: name for team_id, name in team_rows}
    member_rows = session.execute(
        select(Project.name, ProjectMember.role, ProjectMember.team_id)
        .join(Project, Project.id == ProjectMember.project_id)
        .where(
            or_(
                ProjectMember.principal_id == principal_id,
                ProjectMember.team_id.in_(list(teams)) if teams else false(),
            )
        )
    ).all()
    projects = sorted(
        (name, role, f"team:{teams[team_id]}" if team_id else "direct")
        for name, role, team_id in member_rows
    )
    owner = session.get(Principal, principal.owner_id).name if principal.owner_id else None
    return Identity(
        principal_id=principal.id,
        name=principal.name,
        kind=principal.kind,
        roles=tuple(principal.roles),
        teams=tuple(sorted(teams.values())),
        projects=tuple(projects),
        clearance=principal.clearance,
        disabled=principal.disabled,
        owner=owner,
    )


# ---------------------------------------------------------------- API keys


def _check_scopes(scopes: object) -> list[str]:
    if not isinstance(scopes, list) or not scopes:
        raise IdentityError("scopes must be a non-empty list of read, write, admin")
    return sorted({_check_choice(scope, SCOPES, "scope") for scope in scopes})


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
        scopes=_check_scopes(scopes),
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
        _bump(session)
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
        lifetime = _aware(old.expires_at) - _aware(old.created_at)
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
    old.expires_at = min(_aware(old.expires_at), deadline) if old.expires_at else deadline
    old.replaced_by = new.id
    _bump(session)
    return key, new


def _aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything we store is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def touch_keys(session: Session, last_used: dict[str, datetime]) -> None:
    for key_id, moment in last_used.items():
        session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=moment))
