"""The identity store's building blocks: what it refuses (its errors and input checks),
looking records up by name, and the change counter every worker polls.

Every function that changes something that can affect authentication calls `bump` in the
same transaction, which is how every worker of every replica notices (within its poll
interval) that its caches must be dropped.
"""

from __future__ import annotations

import re

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mlflow_secure.identity.models import (
    GLOBAL_ROLES,
    SCOPES,
    Principal,
    Project,
    StateCounter,
    Team,
)

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}")


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


# ---------------------------------------------------------------- change tracking


def identity_version(session: Session) -> int:
    return session.scalar(select(StateCounter.value).where(StateCounter.name == "identity_version"))


def bump(session: Session) -> None:
    session.execute(
        update(StateCounter)
        .where(StateCounter.name == "identity_version")
        .values(value=StateCounter.value + 1)
    )


def flush(session: Session, what: str) -> None:
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise AlreadyExists(f"{what} already exists") from None


# ---------------------------------------------------------------- input checks


def check_name(name: object, what: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise IdentityError(
            f"{what} name must be 1-64 characters of letters, digits and . _ @ + - "
            "(starting with a letter or digit)"
        )
    return name


def check_choice(value: object, allowed: tuple[str, ...], what: str) -> str:
    if value not in allowed:
        raise IdentityError(f"{what} must be one of {', '.join(allowed)}")
    return value  # type: ignore[return-value]


def check_roles(roles: object) -> list[str]:
    if not isinstance(roles, list):
        raise IdentityError("roles must be a list")
    return sorted({check_choice(role, GLOBAL_ROLES, "role") for role in roles})


def check_scopes(scopes: object) -> list[str]:
    if not isinstance(scopes, list) or not scopes:
        raise IdentityError("scopes must be a non-empty list of read, write, admin")
    return sorted({check_choice(scope, SCOPES, "scope") for scope in scopes})


# ---------------------------------------------------------------- lookups by name


def get_principal(session: Session, name: str) -> Principal:
    principal = session.scalar(select(Principal).where(Principal.name == name))
    if principal is None:
        raise NotFound(f"no principal named {name!r}")
    return principal


def get_team(session: Session, name: str) -> Team:
    team = session.scalar(select(Team).where(Team.name == name))
    if team is None:
        raise NotFound(f"no team named {name!r}")
    return team


def get_project(session: Session, name: str) -> Project:
    project = session.scalar(select(Project).where(Project.name == name))
    if project is None:
        raise NotFound(f"no project named {name!r}")
    return project
