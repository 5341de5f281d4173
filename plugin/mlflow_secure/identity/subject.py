"""Who is asking: the authenticated subject of one request, as the policy sees it."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from typing import Any

from mlflow_secure.identity.store import Identity

ALL_SCOPES = ("read", "write", "admin")
_current: contextvars.ContextVar[Subject | None] = contextvars.ContextVar(
    "mlflow_secure_subject", default=None
)


@dataclass(frozen=True)
class Subject:
    identity: Identity
    auth: str  # "api_key", "password" or "oidc"
    scopes: tuple[str, ...] = ALL_SCOPES
    key_id: str | None = None
    key_projects: tuple[str, ...] | None = None

    @property
    def name(self) -> str:
        return self.identity.name

    def policy_input(self) -> dict[str, Any]:
        identity = self.identity
        return {
            "id": identity.name,
            "kind": identity.kind,
            "roles": list(identity.roles),
            "teams": list(identity.teams),
            "projects": [
                {"name": name, "role": role, "via": via} for name, role, via in identity.projects
            ],
            "clearance": identity.clearance,
            "owner": identity.owner,
            "scopes": list(self.scopes),
            "key_projects": list(self.key_projects) if self.key_projects is not None else None,
            "key_id": self.key_id,
            "auth": self.auth,
        }


def current_subject() -> Subject:
    """The subject the front door authenticated for this request.

    Set by the outermost middleware before any MLflow or plugin handler runs; reading it
    anywhere else is a programming error, so it raises rather than returning None.
    """
    subject = _current.get()
    if subject is None:
        raise RuntimeError("no authenticated subject in this context")
    return subject


def bind_subject(subject: Subject) -> contextvars.Token:
    return _current.set(subject)


def unbind_subject(token: contextvars.Token) -> None:
    _current.reset(token)
