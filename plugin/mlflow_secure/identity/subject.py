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

    @property
    def default_project(self) -> str | None:
        """Where this subject's new work goes when a request names no project.

        The default an administrator set, while the principal is still a member of it
        (directly or through a team); else the principal's only project, if it is in exactly
        one; else None. A key limited to projects only ever defaults to one of them.
        """
        reachable = self.identity.project_names
        if self.key_projects is not None:
            reachable = tuple(name for name in reachable if name in self.key_projects)
        chosen = self.identity.default_project
        if chosen is not None and chosen in reachable:
            return chosen
        return reachable[0] if len(reachable) == 1 else None

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
            "default_project": self.default_project,
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
