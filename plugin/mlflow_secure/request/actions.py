"""Which logical endpoint a request is, and what it touches (for the policy input).

The plugin's own API is mapped here; MLflow's routes through the route census (every live
route of the installed MLflow, checked complete at start-up), matched with the frameworks'
own matchers. A request no route serves is refused before any policy is asked.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from mlflow_secure.admin.resources import describe_request
from mlflow_secure.identity.subject import Subject
from mlflow_secure.keys import resources as key_resources
from mlflow_secure.keys.routes import ROUTES as KEY_ROUTES
from mlflow_secure.request import ui
from mlflow_secure.request.census import RouteSpec, lookup, route_key
from mlflow_secure.request.lookups import ResourceResolver
from mlflow_secure.request.matcher import RouteMatcher

PLUGIN_API = "/api/2.0/mlflow-secure/"


@dataclass(frozen=True)
class Action:
    endpoint: str
    access: str
    plugin_path: str | None = None  # e.g. "keys/create" for the plugin's own API
    spec: RouteSpec | None = None  # the census entry of an MLflow route
    path_params: dict[str, Any] = field(default_factory=dict)
    key: tuple[str, str] | None = None  # the census key (path, METHOD) of the routed rule
    path: str = ""  # the path as routed (repeated slashes merged): what MLflow is handed
    answer: Any = None  # a reply the front door makes itself (ui.py), once the policy allows

    @property
    def public(self) -> bool:
        return self.access == "public"

    @property
    def needs_body(self) -> bool:
        return self.plugin_path in _BODY_ROUTES


_PLUGIN_ROUTES: dict[tuple[str, str], tuple[str, str]] = {
    ("GET", "whoami"): ("whoami", "read"),
    ("POST", "users/create"): ("users.create", "admin"),
    ("GET", "users/get"): ("users.get", "read"),
    ("GET", "users/list"): ("users.list", "read"),
    ("PATCH", "users/update"): ("users.update", "admin"),
    ("DELETE", "users/delete"): ("users.delete", "admin"),
    ("POST", "service-accounts/create"): ("service_accounts.create", "admin"),
    ("GET", "service-accounts/list"): ("service_accounts.list", "read"),
    ("PATCH", "service-accounts/update"): ("service_accounts.update", "admin"),
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
    # the key service (keys/routes.py): data keys decided like their artefact
    **{(r.method, r.path): (r.endpoint, r.access) for r in KEY_ROUTES},
}
# The plugin routes whose body says what they change: read (bounded) for the resource.
_BODY_ROUTES = frozenset(path for method, path in _PLUGIN_ROUTES if method not in {"GET", "HEAD"})
# The method each plugin endpoint is served on (the resource is read as its handler reads it).
_PLUGIN_METHODS = {
    f"mlflow-secure.{name}": method for (method, _), (name, _) in _PLUGIN_ROUTES.items()
}


def logical_path(path: str, static_prefix: str = "") -> str:
    """The path as the route tables know it: no static prefix, `/ajax-api` folded to `/api`."""
    if static_prefix and path.startswith(static_prefix + "/"):
        path = path[len(static_prefix) :]
    if path.startswith("/ajax-api/"):
        path = "/api/" + path[len("/ajax-api/") :]
    return path


def classify(method: str, path: str, static_prefix: str, matcher: RouteMatcher) -> Action | None:
    """None: no route serves this request (or the census lacks it): refuse it unasked.

    Remembered per (method, path): the routes, the census and the UI answers are fixed once
    the app is built, so the answer cannot change, and matching against Werkzeug's map was
    1-2% of a loaded worker's time (py-spy, mixed benchmark). Bounded in entries and in
    path length, since paths are the client's to choose (artifact paths are long and many:
    matched each time); an `Action` is immutable and shared by the requests it classifies.
    """
    if len(path) > _REMEMBERED_PATH_LENGTH:
        return _classify.__wrapped__(method, path, static_prefix, matcher)
    return _classify(method, path, static_prefix, matcher)


_REMEMBERED_PATH_LENGTH = 200


@functools.lru_cache(maxsize=4096)
def _classify(method: str, path: str, static_prefix: str, matcher: RouteMatcher) -> Action | None:
    logical = logical_path(path, static_prefix)
    if logical.startswith(PLUGIN_API):
        sub = logical[len(PLUGIN_API) :]
        mapped = _PLUGIN_ROUTES.get((method, sub))
        if mapped is None:
            return Action("mlflow-secure.unknown", "admin", sub)
        name, access = mapped
        return Action(f"mlflow-secure.{name}", access, sub)
    answered = ui.answer_for(logical, method)
    if answered is not None:
        return Action(answered[0], "read", answer=answered[1], path=path)
    matched = matcher.match(method, path)
    if matched is None:
        return None
    spec = lookup(matched.rule, method, static_prefix)
    if spec is None:
        return None
    key = route_key(matched.rule, "GET" if method == "HEAD" else method, static_prefix)
    return Action(
        spec.endpoint,
        spec.access,
        spec=spec,
        path_params=matched.path_params,
        key=key,
        path=matched.path,
    )


def resolve_resource(
    action: Action,
    subject: Subject,
    query: bytes,
    body: bytes,
    sessions: sessionmaker[Session],
    resolver: ResourceResolver,
) -> dict[str, Any]:
    """The resource of a plugin request: its target and what it changes, read with the
    handler's own parser (admin/resources.py, keys/resources.py); API keys from the store,
    a data key's artefact from MLflow's store, never the client."""
    if not action.plugin_path:
        return {"type": "unmapped"}
    method = _PLUGIN_METHODS.get(action.endpoint)
    if method is None:  # no such plugin route: refused whatever it names
        return {"type": "identity_store"}
    key_route = key_resources.route_for(method, action.plugin_path)
    if key_route is not None:
        return key_resources.describe(key_route, query, body, resolver)
    return describe_request(action.plugin_path, method, subject, query, body, sessions)
