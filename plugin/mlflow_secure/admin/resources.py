"""What an admin API request touches: the resource the policy decides on and the audit
trail records.

A request is read once, with the same strict parser and fields as its handler
(parsing.read_args over routes.py), and described by what it changes: its target (a user,
service account, principal, team, project or API key, by name or key id), the change
(``create``, ``update``, ``add_member``, ``grant_role`` …) and its particulars (the member
added, the role granted, the fields updated, a key's owner, scopes and projects), e.g.
``{"type": "team", "id": "fraud-team", "change": "add_member", "member": "alice"}``. Secrets
(passwords) are never copied: only the names of the fields a request sets.

API keys are described from the identity store (their owner, the owner's kind and the
owner's owner), never from the client, because the policy lets people manage their own keys
and those of the service accounts they own (rego/mlflow/authz/identity.rego).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from mlflow_secure.admin.parsing import Args, read_args
from mlflow_secure.admin.routes import find_route
from mlflow_secure.identity import store
from mlflow_secure.identity.models import Principal
from mlflow_secure.identity.subject import Subject

Resource = dict[str, Any]
# Fields whose values are shown (besides their names): never a password, nor personal data.
_SHOWN_UPDATES = ("clearance", "disabled", "default_project")


def _target(kind: str, change: str | None = None, field: str = "name") -> Callable:
    """A change (or read) of one named record: {"type": kind, "id": args[field], ...}."""

    def describe(args: Args, subject: Subject) -> Resource:
        resource: Resource = {"type": kind, "id": args.get(field)}
        if change is not None:
            resource["change"] = change
        return resource

    return describe


def _listing(kind: str) -> Callable:
    def describe(args: Args, subject: Subject) -> Resource:
        resource: Resource = {"type": kind}  # no id: the whole collection
        if args.get("kind"):
            resource["kind"] = args["kind"]
        return resource

    return describe


def _created(kind: str) -> Callable:
    def describe(args: Args, subject: Subject) -> Resource:
        resource: Resource = {"type": kind, "id": args.get("name"), "change": "create"}
        resource["fields"] = sorted(name for name in args if name != "name")
        resource["roles"] = sorted(args.get("roles") or [])
        resource["clearance"] = args.get("clearance", "internal")
        if kind == "service_account":
            owner = args.get("owner")
            if owner is None and args.get("owner_team") is None:
                owner = subject.name  # the handler's default: the caller owns the bot
            resource["owner"] = owner
            resource["owner_team"] = args.get("owner_team")
        return resource

    return describe


def _updated(kind: str) -> Callable:
    def describe(args: Args, subject: Subject) -> Resource:
        resource: Resource = {"type": kind, "id": args.get("name"), "change": "update"}
        resource["fields"] = sorted(name for name in args if name != "name")
        for name in _SHOWN_UPDATES:
            if name in args:
                resource[name] = args[name]
        return resource

    return describe


def _role(change: str) -> Callable:
    def describe(args: Args, subject: Subject) -> Resource:
        return {
            "type": "principal",
            "id": args.get("principal"),
            "change": change,
            "role": args.get("role"),
        }

    return describe


def _team_member(change: str) -> Callable:
    def describe(args: Args, subject: Subject) -> Resource:
        return {
            "type": "team",
            "id": args.get("team"),
            "change": change,
            "member": args.get("principal"),
        }

    return describe


def _project_member(change: str) -> Callable:
    def describe(args: Args, subject: Subject) -> Resource:
        resource: Resource = {"type": "project", "id": args.get("project"), "change": change}
        if args.get("principal") is not None:
            resource["member"] = args["principal"]
        if args.get("team") is not None:
            resource["team"] = args["team"]
        if "role" in args:
            resource["role"] = args["role"]
        return resource

    return describe


DESCRIBERS: dict[str, Callable[[Args, Subject], Resource]] = {
    "whoami": lambda args, subject: {"type": "principal", "id": subject.name},
    "users/create": _created("user"),
    "users/get": _target("user"),
    "users/list": _listing("principal"),
    "users/update": _updated("user"),
    "users/delete": _target("user", "delete"),
    "service-accounts/create": _created("service_account"),
    "service-accounts/list": _listing("service_account"),
    "service-accounts/update": _updated("service_account"),
    "service-accounts/delete": _target("service_account", "delete"),
    "roles/grant": _role("grant_role"),
    "roles/revoke": _role("revoke_role"),
    "teams/create": _target("team", "create"),
    "teams/list": _listing("team"),
    "teams/delete": _target("team", "delete"),
    "teams/add-member": _team_member("add_member"),
    "teams/remove-member": _team_member("remove_member"),
    "projects/create": _target("project", "create"),
    "projects/list": _listing("project"),
    "projects/delete": _target("project", "delete"),
    "projects/set-member": _project_member("set_member"),
    "projects/remove-member": _project_member("remove_member"),
}

KEY_CHANGES = {"keys/create": "create", "keys/revoke": "revoke", "keys/rotate": "rotate"}


# ---------------------------------------------------------------- API keys


def _owner_resource(session: Session, owner: str | None, **extra: Any) -> Resource:
    """An API key as the policy judges it: whose it is, and who owns that principal."""
    base: Resource = {"type": "api_key", "owner": owner, "owner_kind": None, "owner_owner": None}
    if owner is None:
        return {**base, **extra}
    try:
        principal = store.get_principal(session, owner)
    except store.NotFound:
        return {**base, **extra}
    owner_owner = None
    if principal.owner_id is not None:
        owner_owner = session.get(Principal, principal.owner_id).name
    return {
        **base,
        "owner": principal.name,
        "owner_kind": principal.kind,
        "owner_owner": owner_owner,
        **extra,
    }


def _key_resource(path: str, args: Args | None, subject: Subject, session: Session) -> Resource:
    change = {"change": KEY_CHANGES[path]} if path in KEY_CHANGES else {}
    if args is None:
        # Unreadable: the handler answers 400 and changes nothing. Judged as the caller's
        # own key, so that the caller learns what is wrong with the request.
        owner = None if path in {"keys/revoke", "keys/rotate"} else subject.name
        return _owner_resource(session, owner, **change, malformed=True)
    if path == "keys/list":
        if args.get("all"):
            return {"type": "api_key", "owner": "*", "owner_kind": None, "owner_owner": None}
        return _owner_resource(session, args.get("principal", subject.name))
    if path == "keys/create":
        return _owner_resource(
            session,
            args.get("principal", subject.name),
            **change,
            scopes=sorted(args.get("scopes") or []),
            projects=sorted(args["projects"]) if args.get("projects") is not None else None,
        )
    key_id = args["key_id"]
    try:
        record = store.get_key(session, key_id)
    except store.NotFound:
        return {"type": "api_key", "id": key_id, "owner": None, **change}
    extra: dict[str, Any] = {"id": key_id, **change}
    if path == "keys/rotate":
        extra["scopes"] = list(record.scopes)
        extra["projects"] = list(record.projects) if record.projects is not None else None
    return _owner_resource(session, store.key_owner(session, key_id).name, **extra)


# ---------------------------------------------------------------- entry point


def describe_request(
    path: str,
    method: str,
    subject: Subject,
    query: bytes,
    body: bytes,
    sessions: sessionmaker[Session],
) -> Resource:
    """The resource of an admin API request (`path` relative to the API root, e.g.
    "teams/add-member"); only API keys need the identity store."""
    route = find_route(method, path)
    if route is None:
        if path.startswith("audit/"):
            return {"type": "audit_trail"}
        return {"type": "identity_store"}  # a route served elsewhere, or none (refused)
    try:
        args: Args | None = read_args(route.fields, method, query, body)
    except store.IdentityError:
        args = None
    if path.startswith("keys/"):
        with sessions() as session:
            return _key_resource(path, args, subject, session)
    describer = DESCRIBERS.get(path)
    if describer is None:  # a route nobody described yet (a test requires one per route)
        return {"type": "identity_store"}
    if args is None:
        # Unreadable: the handler answers 400 and changes nothing.
        base = describer({}, subject)
        return {key: base[key] for key in ("type", "change") if key in base} | {"malformed": True}
    return describer(args, subject)
