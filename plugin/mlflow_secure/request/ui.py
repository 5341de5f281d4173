"""Answers the front door gives the MLflow UI itself (docs/ui.md): built from the authenticated
subject alone, never from the request, never from MLflow's data, and changing nothing.

`ANSWERS`: routes stock MLflow serves only with its basic-auth app, which the UI asks anyway.
Each maps a logical path and method to the policy endpoint that decides it and the reply; the
request never reaches MLflow. `users/current` is "who am I" (the policy's
`mlflow-secure.whoami`); `users/current/permissions` tells the UI not to hide controls, since
every request is decided by the policy anyway.

`WHEN_REFUSED`: MLflow routes the UI polls on every page (the assistant) or opens a panel with
(the AI gateway), for a caller the policy refuses. They are decided as usual — the policy's
refusal, its reasons and its decision id stay in the audit trail — and only then, instead of
the error, the UI gets MLflow's own answer for an unconfigured feature or an empty list: the
same constant for everyone refused, so it says nothing about the server. A caller the policy
allows gets MLflow's real answer.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from mlflow_secure.identity.subject import Subject
from mlflow_secure.request.listings.core import JsonReply

Answer = Callable[[Subject], JsonReply]


def _reply(payload: dict[str, Any]) -> JsonReply:
    return JsonReply(200, json.dumps(payload).encode())


def _is_admin(subject: Subject) -> bool:
    return "admin" in subject.identity.roles


def current_user(subject: Subject) -> JsonReply:
    """The shape of MLflow basic-auth's `GET /users/current`, which the UI reads.

    `is_basic_auth` is False: it would offer MLflow basic-auth's change-password form and
    logout trick, neither of which this server serves (passwords are set through the admin API).
    """
    user: dict[str, Any] = {
        "id": subject.name,
        "username": subject.name,
        "is_admin": _is_admin(subject),
    }
    return _reply({"user": user, "is_basic_auth": False})


# Once `users/current` names a user, the UI gates experiment controls (review queues: create,
# manage questions, assign) on `users/current/permissions` and hides them when it cannot tell.
# The policy decides every request and refuses with its reason, so the UI is told to hide
# nothing: one grant of MANAGE on every experiment, advisory only (MLflow's own words).
_NO_UI_GATING = {
    "role_id": 0,
    "role_name": "mlflow-secure: decided by policy on every request",
    "workspace": "default",
    "resource_type": "experiment",
    "resource_pattern": "*",
    "permission": "MANAGE",
}


def current_permissions(subject: Subject) -> JsonReply:
    """The shape of MLflow basic-auth's `GET /users/current/permissions`."""
    return _reply({"is_admin": _is_admin(subject), "permissions": [dict(_NO_UI_GATING)]})


ANSWERS: dict[tuple[str, str], tuple[str, Answer]] = {
    ("/api/2.0/mlflow/users/current", "GET"): ("mlflow-secure.whoami", current_user),
    ("/api/3.0/mlflow/users/current/permissions", "GET"): (
        "mlflow-secure.whoami",
        current_permissions,
    ),
}


def assistant_not_configured(_subject: Subject) -> JsonReply:
    """MLflow's answer to a remote caller on a server whose assistant is not set up: the UI
    then hides the assistant (from a remote host name; on localhost it always shows it)."""
    return _reply({"providers": {}, "projects": {}, "remote_access_allowed": False})


def no_assistant_providers(_subject: Subject) -> JsonReply:
    """No provider, none resolved: the UI never considers the assistant set up."""
    return _reply({"providers": [], "resolved": None, "gateway_vendor_options": {}})


def gateway_listed_empty(_subject: Subject) -> JsonReply:
    """The gateway page as the caller may see it: available, with its listings (narrowed to
    what the caller may read: nothing) instead of set-up instructions meant for operators;
    whatever the caller then tries is refused with the policy's reason."""
    return _reply({"secrets_available": True, "using_default_passphrase": False})


def empty_listing(_subject: Subject) -> JsonReply:
    """MLflow's answer for an empty list (protobuf JSON leaves out empty repeated fields)."""
    return _reply({})


# Keyed like the route census (logical path with /api, METHOD; HEAD is GET).
WHEN_REFUSED: dict[tuple[str, str], Answer] = {
    ("/api/3.0/mlflow/assistant/config", "GET"): assistant_not_configured,
    ("/api/3.0/mlflow/assistant/providers", "GET"): no_assistant_providers,
    ("/api/3.0/mlflow/gateway/secrets/config", "GET"): gateway_listed_empty,
    ("/api/3.0/mlflow/gateway/endpoints/bindings/list", "GET"): empty_listing,
}


def answer_for(logical_path: str, method: str) -> tuple[str, Answer] | None:
    return ANSWERS.get((logical_path, "GET" if method == "HEAD" else method))


def answer_when_refused(census_key: tuple[str, str] | None) -> Answer | None:
    """The answer the UI gets instead of a policy refusal of this census route, if any."""
    if census_key is None:
        return None
    path, method = census_key
    return WHEN_REFUSED.get((path, "GET" if method == "HEAD" else method))
