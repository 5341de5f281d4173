"""How the admin API shows identities: JSON without digests, hashes or secrets."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from mlflow_secure.identity import api_keys, store
from mlflow_secure.identity.models import ApiKey, Principal, Team

Payload = dict[str, Any]


def iso(moment: datetime | None) -> str | None:
    """ISO-8601 in UTC; SQLite hands back naive datetimes, and everything we store is UTC."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def principal_json(session: Session, principal: Principal) -> Payload:
    owner = session.get(Principal, principal.owner_id) if principal.owner_id else None
    owner_team = session.get(Team, principal.owner_team_id) if principal.owner_team_id else None
    return {
        "name": principal.name,
        "kind": principal.kind,
        "display_name": principal.display_name,
        "email": principal.email,
        "roles": list(principal.roles),
        "clearance": principal.clearance,
        "disabled": principal.disabled,
        "has_password": principal.password_hash is not None,
        "owner": owner.name if owner else None,
        "owner_team": owner_team.name if owner_team else None,
        # as an administrator set it; whoami shows the one that applies (Subject)
        "default_project": store.default_project_name(session, principal),
        "created_at": iso(principal.created_at),
        "updated_at": iso(principal.updated_at),
    }


def key_json(record: ApiKey, principal: str) -> Payload:
    """An API key as listings show it: identified by its id, never by digest or secret."""
    return {
        "key_id": record.id,
        "display": api_keys.display(record.id),
        "principal": principal,
        "name": record.name,
        "scopes": list(record.scopes),
        "projects": list(record.projects) if record.projects is not None else None,
        "created_at": iso(record.created_at),
        "created_by": record.created_by,
        "expires_at": iso(record.expires_at),
        "last_used_at": iso(record.last_used_at),
        "revoked_at": iso(record.revoked_at),
        "replaced_by": record.replaced_by,
    }


def team_json(team: Team, members: list[str]) -> Payload:
    return {
        "name": team.name,
        "description": team.description,
        "created_at": iso(team.created_at),
        "members": members,
    }


def project_json(project: Any, members: list[dict[str, str]]) -> Payload:
    return {
        "name": project.name,
        "description": project.description,
        "created_at": iso(project.created_at),
        "members": members,
    }
