"""The admin API's handlers: people, service accounts, teams, projects, roles and API keys.

Every request has already been authenticated and authorised (by OPA) by the outermost
middleware before a handler here runs, so handlers decide nothing about *who may*; they only
apply defaults ("no principal given" means the caller) and refuse the one change no policy
should be able to allow: removing the last enabled admin (a lockout). Their arguments were
checked by parsing.read_args against the route's fields (api.py).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mlflow_secure.admin.parsing import Args, bad
from mlflow_secure.admin.rendering import key_json, principal_json, project_json, team_json
from mlflow_secure.identity import store
from mlflow_secure.identity.models import KINDS, Principal
from mlflow_secure.identity.subject import current_subject

DEFAULT_GRACE_SECONDS = 3600
Payload = dict[str, Any]


# ---------------------------------------------------------------- lockout protection


def _lock_principals(session: Session) -> None:
    """Serialise changes that could remove an admin (PostgreSQL row locks; SQLite already
    serialises writers), so two concurrent requests cannot each remove "the other" admin."""
    session.execute(select(Principal.id).where(Principal.disabled.is_(False)).with_for_update())


def _refuse_last_admin(session: Session, principal: Principal, action: str) -> None:
    if "admin" in principal.roles and not principal.disabled and store.count_admins(session) <= 1:
        raise bad(
            f"cannot {action} {principal.name!r}: it is the last enabled admin; "
            "grant the admin role to another principal first"
        )


def _caller() -> str:
    return current_subject().name


def _principal_of_kind(session: Session, name: str, kind: str) -> Principal:
    """Users and service accounts are deleted (and service accounts updated) through their
    own endpoints, which a policy may treat differently: each acts on its own kind only."""
    principal = store.get_principal(session, name)
    if principal.kind != kind:
        label = "user" if kind == "user" else "service account"
        raise store.NotFound(f"no {label} named {name!r}")
    return principal


def _update(session: Session, args: Args) -> Principal:
    changes = {name: value for name, value in args.items() if name != "name"}
    if not changes:
        raise bad("nothing to update: give at least one field besides 'name'")
    if changes.get("disabled") is True:
        _lock_principals(session)
        _refuse_last_admin(session, store.get_principal(session, args["name"]), "disable")
    return store.update_principal(session, args["name"], **changes)


# ---------------------------------------------------------------- people


def whoami(session: Session, args: Args) -> Payload:
    return {"subject": current_subject().policy_input()}


def users_create(session: Session, args: Args) -> Payload:
    principal = store.create_principal(
        session,
        args["name"],
        "user",
        display_name=args.get("display_name"),
        email=args.get("email"),
        password=args.get("password"),
        roles=args.get("roles"),
        clearance=args.get("clearance", "internal"),
    )
    return {"user": principal_json(session, principal)}


def users_get(session: Session, args: Args) -> Payload:
    principal = store.get_principal(session, args["name"])
    identity = store.load_identity(session, principal.id)
    rendered = principal_json(session, principal)
    rendered["teams"] = list(identity.teams)
    rendered["projects"] = [
        {"name": name, "role": role, "via": via} for name, role, via in identity.projects
    ]
    return {"user": rendered}


def users_list(session: Session, args: Args) -> Payload:
    kind = args.get("kind")
    if kind is not None and kind not in KINDS:
        raise bad(f"kind must be one of {', '.join(KINDS)}")
    principals = store.list_principals(session, kind)
    return {"users": [principal_json(session, p) for p in principals]}


def users_update(session: Session, args: Args) -> Payload:
    return {"user": principal_json(session, _update(session, args))}


def users_delete(session: Session, args: Args) -> Payload:
    _lock_principals(session)
    _refuse_last_admin(session, _principal_of_kind(session, args["name"], "user"), "delete")
    store.delete_principal(session, args["name"])
    return {}


# ---------------------------------------------------------------- service accounts


def service_accounts_create(session: Session, args: Args) -> Payload:
    owner = args.get("owner")
    if owner is None and args.get("owner_team") is None:
        owner = _caller()  # every bot has someone accountable for it
    principal = store.create_principal(
        session,
        args["name"],
        "service",
        display_name=args.get("display_name"),
        roles=args.get("roles"),
        clearance=args.get("clearance", "internal"),
        owner=owner,
        owner_team=args.get("owner_team"),
    )
    return {"service_account": principal_json(session, principal)}


def service_accounts_list(session: Session, args: Args) -> Payload:
    principals = store.list_principals(session, "service")
    return {"service_accounts": [principal_json(session, p) for p in principals]}


def service_accounts_update(session: Session, args: Args) -> Payload:
    _principal_of_kind(session, args["name"], "service")
    return {"service_account": principal_json(session, _update(session, args))}


def service_accounts_delete(session: Session, args: Args) -> Payload:
    _lock_principals(session)
    principal = _principal_of_kind(session, args["name"], "service")
    _refuse_last_admin(session, principal, "delete")
    store.delete_principal(session, args["name"])
    return {}


# ---------------------------------------------------------------- roles, teams, projects


def roles_grant(session: Session, args: Args) -> Payload:
    principal = store.grant_role(session, args["principal"], args["role"])
    return {"principal": principal_json(session, principal)}


def roles_revoke(session: Session, args: Args) -> Payload:
    if args["role"] == "admin":
        _lock_principals(session)
        _refuse_last_admin(
            session, store.get_principal(session, args["principal"]), "revoke admin from"
        )
    principal = store.revoke_role(session, args["principal"], args["role"])
    return {"principal": principal_json(session, principal)}


def teams_create(session: Session, args: Args) -> Payload:
    team = store.create_team(session, args["name"], args.get("description"))
    return {"team": team_json(team, [])}


def teams_list(session: Session, args: Args) -> Payload:
    return {"teams": [team_json(team, members) for team, members in store.list_teams(session)]}


def teams_delete(session: Session, args: Args) -> Payload:
    store.delete_team(session, args["name"])
    return {}


def teams_add_member(session: Session, args: Args) -> Payload:
    store.add_team_member(session, args["team"], args["principal"])
    return {}


def teams_remove_member(session: Session, args: Args) -> Payload:
    store.remove_team_member(session, args["team"], args["principal"])
    return {}


def projects_create(session: Session, args: Args) -> Payload:
    project = store.create_project(session, args["name"], args.get("description"))
    return {"project": project_json(project, [])}


def projects_list(session: Session, args: Args) -> Payload:
    return {
        "projects": [
            project_json(project, members) for project, members in store.list_projects(session)
        ]
    }


def projects_delete(session: Session, args: Args) -> Payload:
    store.delete_project(session, args["name"])
    return {}


def projects_set_member(session: Session, args: Args) -> Payload:
    store.set_project_member(
        session, args["project"], args["role"], args.get("principal"), args.get("team")
    )
    return {}


def projects_remove_member(session: Session, args: Args) -> Payload:
    store.remove_project_member(session, args["project"], args.get("principal"), args.get("team"))
    return {}


# ---------------------------------------------------------------- API keys


def keys_create(session: Session, args: Args) -> Payload:
    caller = _caller()
    principal = args.get("principal", caller)
    expires_at = None
    if "expires_in_seconds" in args:
        expires_at = datetime.now(UTC) + timedelta(seconds=args["expires_in_seconds"])
    key, record = store.create_key(
        session,
        principal,
        args["scopes"],
        name=args.get("name"),
        projects=args.get("projects"),
        expires_at=expires_at,
        created_by=caller,
    )
    return {"key": key, "api_key": key_json(record, principal)}


def keys_list(session: Session, args: Args) -> Payload:
    if args.get("all"):
        if "principal" in args:
            raise bad("give either 'principal' or 'all', not both")
        rows = store.list_keys(session)
    else:
        rows = store.list_keys(session, args.get("principal", _caller()))
    return {"api_keys": [key_json(record, owner) for record, owner in rows]}


def keys_revoke(session: Session, args: Args) -> Payload:
    record = store.revoke_key(session, args["key_id"])
    return {"api_key": key_json(record, store.key_owner(session, record.id).name)}


def keys_rotate(session: Session, args: Args) -> Payload:
    grace = timedelta(seconds=args.get("grace_seconds", DEFAULT_GRACE_SECONDS))
    key, record = store.rotate_key(session, args["key_id"], grace, created_by=_caller())
    return {"key": key, "api_key": key_json(record, store.key_owner(session, record.id).name)}
