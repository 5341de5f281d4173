"""Which logical endpoint a request is, and what it touches (for the policy input).

The plugin's own API is mapped here; MLflow's routes through the route census (every live
route of the installed MLflow, checked complete at start-up), matched with the frameworks'
own matchers. A request no route serves is refused before any policy is asked.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from sqlalchemy.orm import Session, sessionmaker

from mlflow_secure.identity import store
from mlflow_secure.identity.subject import Subject
from mlflow_secure.request.census import RouteSpec, lookup
from mlflow_secure.request.matcher import RouteMatcher

PLUGIN_API = "/api/2.0/mlflow-secure/"


@dataclass(frozen=True)
class Action:
    endpoint: str
    access: str
    plugin_path: str | None = None  # e.g. "keys/create" for the plugin's own API
    spec: RouteSpec | None = None  # the census entry of an MLflow route
    path_params: dict[str, Any] = field(default_factory=dict)

    @property
    def public(self) -> bool:
        return self.access == "public"

    @property
    def needs_body(self) -> bool:
        return self.plugin_path in _KEY_ROUTES


_PLUGIN_ROUTES: dict[tuple[str, str], tuple[str, str]] = {
    ("GET", "whoami"): ("whoami", "read"),
    ("POST", "users/create"): ("users.create", "admin"),
    ("GET", "users/get"): ("users.get", "read"),
    ("GET", "users/list"): ("users.list", "read"),
    ("PATCH", "users/update"): ("users.update", "admin"),
    ("DELETE", "users/delete"): ("users.delete", "admin"),
    ("POST", "service-accounts/create"): ("service_accounts.create", "admin"),
    ("GET", "service-accounts/list"): ("service_accounts.list", "read"),
    ("DELETE", "service-accounts/delete"): ("service_accounts.delete", "admin"),
    ("POST", "roles/grant"): ("roles.grant", "admin"),
    ("POST", "roles/revoke"): ("roles.revoke", "admin"),
    ("POST", "teams/create"): ("teams.create", "admin"),
    ("GET", "teams/list"): ("teams.list", "read"),
    ("DELETE", "teams/delete"): ("teams.delete", "admin"),
    ("POST", "teams/add-member"): ("teams.add_member", "admin"),
    ("POST", "teams/remove-member"): ("teams.remove_member", "admin"),
    ("POST", "projects/create"): ("projects.create", "admin"),
    ("GET", "projects/list"): ("projects.list", "read"),
    ("DELETE", "projects/delete"): ("projects.delete", "admin"),
    ("POST", "projects/set-member"): ("projects.set_member", "admin"),
    ("POST", "projects/remove-member"): ("projects.remove_member", "admin"),
    ("POST", "keys/create"): ("keys.create", "manage"),
    ("GET", "keys/list"): ("keys.list", "read"),
    ("POST", "keys/revoke"): ("keys.revoke", "manage"),
    ("POST", "keys/rotate"): ("keys.rotate", "manage"),
    ("GET", "audit/events"): ("audit.events", "read"),
}
_KEY_ROUTES = {"keys/create", "keys/list", "keys/revoke", "keys/rotate"}


def logical_path(path: str, static_prefix: str = "") -> str:
    """The path as the route tables know it: no static prefix, `/ajax-api` folded to `/api`."""
    if static_prefix and path.startswith(static_prefix + "/"):
        path = path[len(static_prefix) :]
    if path.startswith("/ajax-api/"):
        path = "/api/" + path[len("/ajax-api/") :]
    return path


def classify(method: str, path: str, static_prefix: str, matcher: RouteMatcher) -> Action | None:
    """None: no route serves this request (or the census lacks it): refuse it unasked."""
    logical = logical_path(path, static_prefix)
    if logical.startswith(PLUGIN_API):
        sub = logical[len(PLUGIN_API) :]
        mapped = _PLUGIN_ROUTES.get((method, sub))
        if mapped is None:
            return Action("mlflow-secure.unknown", "admin", sub)
        name, access = mapped
        return Action(f"mlflow-secure.{name}", access, sub)
    matched = matcher.match(method, path)
    if matched is None:
        return None
    spec = lookup(matched.rule, method, static_prefix)
    if spec is None:
        return None
    return Action(spec.endpoint, spec.access, spec=spec, path_params=matched.path_params)


def _field(source: dict[str, Any], name: str) -> str | None:
    value = source.get(name)
    return value if isinstance(value, str) and value else None


def _strings(value: Any) -> list[str] | None:
    """A requested list as the policy sees it; None means "not limited"."""
    if not isinstance(value, list):
        return None
    return [item for item in value if isinstance(item, str)]


def _owner_resource(session: Session, owner: str, **extra: Any) -> dict[str, Any]:
    try:
        principal = store.get_principal(session, owner)
    except store.NotFound:
        return {"type": "api_key", "owner": owner, "owner_kind": None, "owner_owner": None, **extra}
    owner_owner = None
    if principal.owner_id is not None:
        owner_owner = session.get(type(principal), principal.owner_id).name
    return {
        "type": "api_key",
        "owner": principal.name,
        "owner_kind": principal.kind,
        "owner_owner": owner_owner,
        **extra,
    }


def resolve_resource(
    action: Action,
    subject: Subject,
    query: bytes,
    body: bytes,
    sessions: sessionmaker[Session],
) -> dict[str, Any]:
    """The resource of a plugin request, read from the store (never trusted from the client)."""
    if action.plugin_path not in _KEY_ROUTES:
        return {"type": "identity_store"} if action.plugin_path else {"type": "unmapped"}
    params = {k: v[-1] for k, v in parse_qs(query.decode("latin-1")).items()}
    try:
        payload = json.loads(body) if body else {}
    except ValueError:
        payload = {}
    if not isinstance(payload, dict):
        payload = {}
    with sessions() as session:
        if action.plugin_path == "keys/list":
            if params.get("all", "").lower() == "true":
                return {"type": "api_key", "owner": "*", "owner_kind": None, "owner_owner": None}
            return _owner_resource(session, params.get("principal") or subject.name)
        if action.plugin_path == "keys/create":
            return _owner_resource(
                session,
                _field(payload, "principal") or subject.name,
                scopes=_strings(payload.get("scopes")) or [],
                projects=_strings(payload.get("projects")),
            )
        key_id = _field(payload, "key_id")
        if key_id is None:
            return {"type": "api_key", "owner": None, "owner_kind": None, "owner_owner": None}
        try:
            record = store.get_key(session, key_id)
        except store.NotFound:
            return {"type": "api_key", "id": key_id, "owner": None}
        owner = store.key_owner(session, key_id).name
        extra: dict[str, Any] = {"id": key_id}
        if action.plugin_path == "keys/rotate":
            extra["scopes"] = list(record.scopes)
            extra["projects"] = list(record.projects) if record.projects is not None else None
        return _owner_resource(session, owner, **extra)
