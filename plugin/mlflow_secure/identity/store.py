"""The identity store: principals, teams, projects and what a principal is.

This module is the store's one entry point: it re-exports opening and migrating
(database.py), the errors, checks and change counter (records.py) and API keys
(key_store.py), so callers write ``store.create_key`` and ``store.NotFound`` whichever module
holds them. Every change that can affect authentication bumps the shared
``identity_version`` counter in the same transaction (see records.py).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from sqlalchemy import delete, false, or_, select, update
from sqlalchemy.orm import Session

from mlflow_secure.identity import passwords
from mlflow_secure.identity.database import (
    MIGRATIONS,
    default_identity_uri,
    migrate,
    migration_lock,
    open_engine,
    session_factory,
)
from mlflow_secure.identity.key_store import (
    create_key,
    get_key,
    key_owner,
    list_keys,
    revoke_key,
    rotate_key,
    touch_keys,
)
from mlflow_secure.identity.models import (
    CLEARANCES,
    GLOBAL_ROLES,
    KINDS,
    PROJECT_ROLES,
    Principal,
    Project,
    ProjectMember,
    Team,
    TeamMember,
    utcnow,
)
from mlflow_secure.identity.records import (
    NAME_PATTERN,
    AlreadyExists,
    IdentityError,
    NotFound,
    bump,
    check_choice,
    check_name,
    check_roles,
    flush,
    get_principal,
    get_project,
    get_team,
    identity_version,
)

__all__ = [
    "MIGRATIONS",
    "NAME_PATTERN",
    "AlreadyExists",
    "Identity",
    "IdentityError",
    "NotFound",
    "add_team_member",
    "count_admins",
    "create_key",
    "create_principal",
    "create_project",
    "create_team",
    "default_identity_uri",
    "default_project_name",
    "delete_principal",
    "delete_project",
    "delete_team",
    "get_key",
    "get_principal",
    "get_project",
    "get_team",
    "grant_role",
    "identity_version",
    "key_owner",
    "list_keys",
    "list_principals",
    "list_projects",
    "list_teams",
    "load_identity",
    "migrate",
    "migration_lock",
    "open_engine",
    "remove_project_member",
    "remove_team_member",
    "revoke_key",
    "revoke_role",
    "rotate_key",
    "session_factory",
    "set_project_member",
    "touch_keys",
    "update_principal",
]


# ---------------------------------------------------------------- principals


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
    check_name(name, "principal")
    check_choice(kind, KINDS, "kind")
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
        roles=check_roles(roles or []),
        clearance=check_choice(clearance, CLEARANCES, "clearance"),
        owner_id=get_principal(session, owner).id if owner else None,
        owner_team_id=get_team(session, owner_team).id if owner_team else None,
        disabled=False,
    )
    session.add(principal)
    flush(session, f"a principal named {name!r}")
    bump(session)
    return principal


def update_principal(session: Session, name: str, **changes: object) -> Principal:
    """Apply `changes` (None: unchanged). ``default_project=""`` clears the default."""
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
            principal.roles = check_roles(value)
        elif field == "clearance":
            principal.clearance = check_choice(value, CLEARANCES, "clearance")
        elif field == "disabled":
            if not isinstance(value, bool):
                raise IdentityError("disabled must be true or false")
            principal.disabled = value
        elif field == "default_project":
            principal.default_project_id = _default_project_id(session, principal, value)
        elif field in {"display_name", "email"}:
            setattr(principal, field, str(value))
        else:
            raise IdentityError(f"unknown field {field!r}")
    principal.updated_at = utcnow()
    bump(session)
    return principal


def _default_project_id(session: Session, principal: Principal, project: object) -> int | None:
    """A default project must be one the principal is a member of, directly or through a
    team; "" clears it."""
    if project == "":
        return None
    if not isinstance(project, str):
        raise IdentityError('default_project must be a project name (or "" to clear it)')
    record = get_project(session, project)
    if project not in load_identity(session, principal.id).project_names:
        raise IdentityError(
            f"{principal.name!r} is not a member of project {project!r}: add it to the project "
            "(or to a team that is) before making it the default"
        )
    return record.id


def grant_role(session: Session, name: str, role: str) -> Principal:
    principal = get_principal(session, name)
    return update_principal(session, name, roles=[*principal.roles, role])


def revoke_role(session: Session, name: str, role: str) -> Principal:
    principal = get_principal(session, name)
    check_choice(role, GLOBAL_ROLES, "role")
    return update_principal(session, name, roles=[r for r in principal.roles if r != role])


def delete_principal(session: Session, name: str) -> None:
    principal = get_principal(session, name)
    session.execute(
        update(Principal).where(Principal.owner_id == principal.id).values(owner_id=None)
    )
    session.delete(principal)
    bump(session)


def list_principals(session: Session, kind: str | None = None) -> list[Principal]:
    query = select(Principal).order_by(Principal.name)
    if kind:
        query = query.where(Principal.kind == kind)
    return list(session.scalars(query))


def count_admins(session: Session) -> int:
    return sum(
        1 for p in session.scalars(select(Principal)) if "admin" in p.roles and not p.disabled
    )


def default_project_name(session: Session, principal: Principal) -> str | None:
    """The default project an administrator set (None: none set, or its project deleted)."""
    if principal.default_project_id is None:
        return None
    project = session.get(Project, principal.default_project_id)
    return project.name if project is not None else None


# ---------------------------------------------------------------- teams


def create_team(session: Session, name: str, description: str | None = None) -> Team:
    team = Team(name=check_name(name, "team"), description=description)
    session.add(team)
    flush(session, f"a team named {name!r}")
    return team


def delete_team(session: Session, name: str) -> None:
    team = get_team(session, name)
    session.execute(
        update(Principal).where(Principal.owner_team_id == team.id).values(owner_team_id=None)
    )
    session.delete(team)
    bump(session)


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
    flush(session, f"{principal!r} in team {team!r}")
    bump(session)


def remove_team_member(session: Session, team: str, principal: str) -> None:
    result = session.execute(
        delete(TeamMember).where(
            TeamMember.team_id == get_team(session, team).id,
            TeamMember.principal_id == get_principal(session, principal).id,
        )
    )
    if result.rowcount == 0:
        raise NotFound(f"{principal!r} is not a member of team {team!r}")
    bump(session)


# ---------------------------------------------------------------- projects


def create_project(session: Session, name: str, description: str | None = None) -> Project:
    project = Project(name=check_name(name, "project"), description=description)
    session.add(project)
    flush(session, f"a project named {name!r}")
    return project


def delete_project(session: Session, name: str) -> None:
    session.delete(get_project(session, name))
    bump(session)


def _member_clause(session: Session, principal: str | None, team: str | None) -> dict:
    if (principal is None) == (team is None):
        raise IdentityError("give exactly one of principal or team")
    if principal is not None:
        return {"principal_id": get_principal(session, principal).id}
    return {"team_id": get_team(session, team).id}


def set_project_member(
    session: Session, project: str, role: str, principal: str | None = None, team: str | None = None
) -> None:
    check_choice(role, PROJECT_ROLES, "project role")
    project_id = get_project(session, project).id
    who = _member_clause(session, principal, team)
    existing = session.scalar(select(ProjectMember).filter_by(project_id=project_id, **who))
    if existing:
        existing.role = role
    else:
        session.add(ProjectMember(project_id=project_id, role=role, **who))
    bump(session)


def remove_project_member(
    session: Session, project: str, principal: str | None = None, team: str | None = None
) -> None:
    project_id = get_project(session, project).id
    who = _member_clause(session, principal, team)
    result = session.execute(delete(ProjectMember).filter_by(project_id=project_id, **who))
    if result.rowcount == 0:
        raise NotFound(f"no such member of project {project!r}")
    bump(session)


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
    # The default project an administrator set, as stored: Subject.default_project decides
    # whether it still applies (the principal may have left it since).
    default_project: str | None = None

    @functools.cached_property  # an Identity is cached per worker: computed once
    def project_names(self) -> tuple[str, ...]:
        """The projects the principal is a member of (directly or through a team), once each."""
        return tuple(sorted({name for name, _role, _via in self.projects}))


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
        default_project=default_project_name(session, principal),
    )
