"""The admin API's route table: path, method, handler and the fields each accepts.

The front door reads requests with the same fields (request/actions.py → parsing.read_args)
to tell the policy and the audit trail what a request changes, so the table is the one
place a field is declared.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from mlflow_secure.admin import handlers as h
from mlflow_secure.admin.parsing import (
    DESCRIPTION,
    FLAG,
    MAX_GRACE_SECONDS,
    MAX_KEY_LIFETIME_SECONDS,
    NAME,
    OPTIONAL_NAME,
    PASSWORD,
    STRINGS,
    TEXT,
    Args,
    Field,
)

Handler = Callable[[Session, Args], dict[str, Any]]


@dataclass(frozen=True)
class Route:
    path: str
    method: str
    handler: Handler
    fields: dict[str, Field] = field(default_factory=dict)


# What an administrator may change on an existing principal of either kind.
_PRINCIPAL_UPDATES = {
    "name": NAME,
    "display_name": TEXT,
    "clearance": OPTIONAL_NAME,
    "disabled": FLAG,
    "default_project": OPTIONAL_NAME,  # "" clears it
}

ROUTES: tuple[Route, ...] = (
    Route("/whoami", "GET", h.whoami),
    Route(
        "/users/create",
        "POST",
        h.users_create,
        {
            "name": NAME,
            "display_name": TEXT,
            "email": TEXT,
            "password": PASSWORD,
            "roles": STRINGS,
            "clearance": OPTIONAL_NAME,
        },
    ),
    Route("/users/get", "GET", h.users_get, {"name": NAME}),
    Route("/users/list", "GET", h.users_list, {"kind": OPTIONAL_NAME}),
    Route(
        "/users/update",
        "PATCH",
        h.users_update,
        {**_PRINCIPAL_UPDATES, "email": TEXT, "password": PASSWORD},
    ),
    Route("/users/delete", "DELETE", h.users_delete, {"name": NAME}),
    Route(
        "/service-accounts/create",
        "POST",
        h.service_accounts_create,
        {
            "name": NAME,
            "owner": OPTIONAL_NAME,
            "owner_team": OPTIONAL_NAME,
            "roles": STRINGS,
            "clearance": OPTIONAL_NAME,
            "display_name": TEXT,
        },
    ),
    Route("/service-accounts/list", "GET", h.service_accounts_list),
    Route("/service-accounts/update", "PATCH", h.service_accounts_update, _PRINCIPAL_UPDATES),
    Route("/service-accounts/delete", "DELETE", h.service_accounts_delete, {"name": NAME}),
    Route("/roles/grant", "POST", h.roles_grant, {"principal": NAME, "role": NAME}),
    Route("/roles/revoke", "POST", h.roles_revoke, {"principal": NAME, "role": NAME}),
    Route("/teams/create", "POST", h.teams_create, {"name": NAME, "description": DESCRIPTION}),
    Route("/teams/list", "GET", h.teams_list),
    Route("/teams/delete", "DELETE", h.teams_delete, {"name": NAME}),
    Route("/teams/add-member", "POST", h.teams_add_member, {"team": NAME, "principal": NAME}),
    Route("/teams/remove-member", "POST", h.teams_remove_member, {"team": NAME, "principal": NAME}),
    Route(
        "/projects/create", "POST", h.projects_create, {"name": NAME, "description": DESCRIPTION}
    ),
    Route("/projects/list", "GET", h.projects_list),
    Route("/projects/delete", "DELETE", h.projects_delete, {"name": NAME}),
    Route(
        "/projects/set-member",
        "POST",
        h.projects_set_member,
        {"project": NAME, "role": NAME, "principal": OPTIONAL_NAME, "team": OPTIONAL_NAME},
    ),
    Route(
        "/projects/remove-member",
        "POST",
        h.projects_remove_member,
        {"project": NAME, "principal": OPTIONAL_NAME, "team": OPTIONAL_NAME},
    ),
    Route(
        "/keys/create",
        "POST",
        h.keys_create,
        {
            "principal": OPTIONAL_NAME,
            "name": Field(max_length=128),
            "scopes": Field(kind="strs", required=True),
            "projects": STRINGS,
            "expires_in_seconds": Field(kind="int", minimum=1, maximum=MAX_KEY_LIFETIME_SECONDS),
        },
    ),
    Route("/keys/list", "GET", h.keys_list, {"principal": OPTIONAL_NAME, "all": FLAG}),
    Route("/keys/revoke", "POST", h.keys_revoke, {"key_id": NAME}),
    Route(
        "/keys/rotate",
        "POST",
        h.keys_rotate,
        {
            "key_id": NAME,
            "grace_seconds": Field(kind="int", minimum=0, maximum=MAX_GRACE_SECONDS),
        },
    ),
)

_BY_METHOD_AND_PATH = {(route.method, route.path.lstrip("/")): route for route in ROUTES}


def find_route(method: str, path: str) -> Route | None:
    """The route serving `method` on `path` (relative to the API root, e.g. "teams/create")."""
    return _BY_METHOD_AND_PATH.get((method, path))
