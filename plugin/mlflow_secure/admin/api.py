"""The plugin's admin HTTP API: people, service accounts, teams, projects, roles and API keys.

Every request has already been authenticated and authorised (by OPA) by the outermost
middleware before a handler here runs, so handlers decide nothing about *who may*; they only
validate input strictly, apply defaults ("no principal given" means the caller) and refuse the
one change no policy should be able to allow: removing the last enabled admin (a lockout).

Input is parsed strictly because the policy saw the same request: unknown fields, duplicate
JSON keys and repeated query parameters are rejected so that nothing this module reads can
differ from what the policy was shown. Bodies must be ``application/json``, which also keeps
a browser holding cached Basic credentials from being tricked into a cross-site form POST
(``text/plain`` and form bodies are "simple" requests that skip CORS preflight).

Responses never contain a key digest or a password hash; the plain API key appears exactly
once, in the response that created it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Blueprint, Flask, Response, request
from sqlalchemy import select
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.exceptions import RequestEntityTooLarge

from mlflow_secure.identity import api_keys, store
from mlflow_secure.identity.models import KINDS, ApiKey, Principal, Team
from mlflow_secure.identity.subject import current_subject

API_ROOT = "/api/2.0/mlflow-secure"
MAX_BODY_BYTES = 64 * 1024
MAX_LIST_ITEMS = 64
DEFAULT_GRACE_SECONDS = 3600
MAX_GRACE_SECONDS = 30 * 86400  # a rotation grace is for redeploying, not a second key
MAX_KEY_LIFETIME_SECONDS = 10 * 366 * 86400  # a sanity bound (and no datetime overflow)

Args = dict[str, Any]
Payload = dict[str, Any]


# ---------------------------------------------------------------- input validation


@dataclass(frozen=True)
class Field:
    """One accepted request field. `kind`: str, strs (list of str), bool or int."""

    kind: str = "str"
    required: bool = False
    max_length: int = 64
    minimum: int = 0
    maximum: int = 0


NAME = Field(required=True)
OPTIONAL_NAME = Field()
TEXT = Field(max_length=256)
DESCRIPTION = Field(max_length=1024)
PASSWORD = Field(max_length=4096)  # the password policy enforces the real bound
STRINGS = Field(kind="strs")
FLAG = Field(kind="bool")


def _bad(message: str) -> store.IdentityError:
    return store.IdentityError(message)


def _valid(spec: Field, value: object) -> bool:
    if spec.kind == "str":
        return isinstance(value, str) and len(value) <= spec.max_length
    if spec.kind == "strs":
        return (
            isinstance(value, list)
            and len(value) <= MAX_LIST_ITEMS
            and all(isinstance(item, str) and len(item) <= spec.max_length for item in value)
        )
    if spec.kind == "bool":
        return isinstance(value, bool)
    # int: a JSON true is not 1
    return (
        isinstance(value, int)
        and not isinstance(value, bool)
        and spec.minimum <= value <= spec.maximum
    )


def _expected(spec: Field) -> str:
    return {
        "str": f"a string of at most {spec.max_length} characters",
        "strs": f"a list of at most {MAX_LIST_ITEMS} strings",
        "bool": "true or false",
        "int": f"an integer from {spec.minimum} to {spec.maximum}",
    }[spec.kind]


def _accept(fields: dict[str, Field], given: dict[str, object]) -> Args:
    """Checked arguments: unknown fields refused (without echoing them), nulls mean absent."""
    if set(given) - set(fields):
        raise _bad(f"unknown field in request; accepted fields: {', '.join(fields) or 'none'}")
    args: Args = {}
    for name, spec in fields.items():
        value = given.get(name)
        if value is None:
            if spec.required:
                raise _bad(f"missing required field {name!r}")
            continue
        if not _valid(spec, value):
            raise _bad(f"field {name!r} must be {_expected(spec)}")
        args[name] = value
    return args


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise _bad("duplicate key in JSON body")
    return dict(pairs)


def _json_body() -> dict[str, object]:
    if not request.is_json:
        raise _bad("the request body must be JSON (Content-Type: application/json)")
    request.max_content_length = MAX_BODY_BYTES  # bounds chunked bodies too
    try:
        raw = request.get_data(cache=True)
    except RequestEntityTooLarge:
        raise _bad(f"the request body is larger than {MAX_BODY_BYTES} bytes") from None
    try:
        body = json.loads(raw, object_pairs_hook=_no_duplicate_keys)
    except store.IdentityError:  # a duplicate key (IdentityError is a ValueError too)
        raise
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise _bad("the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise _bad("the request body must be a JSON object")
    return body


def _query_args(fields: dict[str, Field]) -> dict[str, object]:
    """Query parameters as a dict; a repeated parameter is ambiguous and refused."""
    given: dict[str, object] = {}
    for name in request.args:
        values = request.args.getlist(name)
        if len(values) != 1:
            raise _bad("a query parameter is repeated")
        value: object = values[0]
        if fields.get(name, NAME).kind == "bool":
            if value not in ("true", "false"):
                raise _bad(f"query parameter {name!r} must be true or false")
            value = value == "true"
        given[name] = value
    return given


# ---------------------------------------------------------------- rendering


def _iso(moment: datetime | None) -> str | None:
    """ISO-8601 in UTC; SQLite hands back naive datetimes, and everything we store is UTC."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _principal_json(session: Session, principal: Principal) -> Payload:
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
        "created_at": _iso(principal.created_at),
        "updated_at": _iso(principal.updated_at),
    }


def _key_json(record: ApiKey, principal: str) -> Payload:
    """An API key as listings show it: identified by its id, never by digest or secret."""
    return {
        "key_id": record.id,
        "display": api_keys.display(record.id),
        "principal": principal,
        "name": record.name,
        "scopes": list(record.scopes),
        "projects": list(record.projects) if record.projects is not None else None,
        "created_at": _iso(record.created_at),
        "created_by": record.created_by,
        "expires_at": _iso(record.expires_at),
        "last_used_at": _iso(record.last_used_at),
        "revoked_at": _iso(record.revoked_at),
        "replaced_by": record.replaced_by,
    }


def _team_json(team: Team, members: list[str]) -> Payload:
    return {
        "name": team.name,
        "description": team.description,
        "created_at": _iso(team.created_at),
        "members": members,
    }


def _project_json(project: Any, members: list[dict[str, str]]) -> Payload:
    return {
        "name": project.name,
        "description": project.description,
        "created_at": _iso(project.created_at),
        "members": members,
    }


# ---------------------------------------------------------------- lockout protection


def _lock_principals(session: Session) -> None:
    """Serialise changes that could remove an admin (PostgreSQL row locks; SQLite already
    serialises writers), so two concurrent requests cannot each remove "the other" admin."""
    session.execute(select(Principal.id).where(Principal.disabled.is_(False)).with_for_update())


def _refuse_last_admin(session: Session, principal: Principal, action: str) -> None:
    if "admin" in principal.roles and not principal.disabled and store.count_admins(session) <= 1:
        raise _bad(
            f"cannot {action} {principal.name!r}: it is the last enabled admin; "
            "grant the admin role to another principal first"
        )


def _caller() -> str:
    return current_subject().name


# ---------------------------------------------------------------- handlers


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
    return {"user": _principal_json(session, principal)}


def users_get(session: Session, args: Args) -> Payload:
    principal = store.get_principal(session, args["name"])
    identity = store.load_identity(session, principal.id)
    rendered = _principal_json(session, principal)
    rendered["teams"] = list(identity.teams)
    rendered["projects"] = [
        {"name": name, "role": role, "via": via} for name, role, via in identity.projects
    ]
    return {"user": rendered}


def users_list(session: Session, args: Args) -> Payload:
    kind = args.get("kind")
    if kind is not None and kind not in KINDS:
        raise _bad(f"kind must be one of {', '.join(KINDS)}")
    principals = store.list_principals(session, kind)
    return {"users": [_principal_json(session, p) for p in principals]}


def users_update(session: Session, args: Args) -> Payload:
    changes = {name: value for name, value in args.items() if name != "name"}
    if not changes:
        raise _bad("nothing to update: give at least one field besides 'name'")
    if changes.get("disabled") is True:
        _lock_principals(session)
        _refuse_last_admin(session, store.get_principal(session, args["name"]), "disable")
    principal = store.update_principal(session, args["name"], **changes)
    return {"user": _principal_json(session, principal)}


def _principal_of_kind(session: Session, name: str, kind: str) -> Principal:
    """Users and service accounts are deleted through different endpoints (which a policy may
    treat differently, e.g. owners deleting their own bots): each deletes only its own kind."""
    principal = store.get_principal(session, name)
    if principal.kind != kind:
        label = "user" if kind == "user" else "service account"
        raise store.NotFound(f"no {label} named {name!r}")
    return principal


def users_delete(session: Session, args: Args) -> Payload:
    _lock_principals(session)
    _refuse_last_admin(session, _principal_of_kind(session, args["name"], "user"), "delete")
    store.delete_principal(session, args["name"])
    return {}


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
    return {"service_account": _principal_json(session, principal)}


def service_accounts_list(session: Session, args: Args) -> Payload:
    principals = store.list_principals(session, "service")
    return {"service_accounts": [_principal_json(session, p) for p in principals]}


def service_accounts_delete(session: Session, args: Args) -> Payload:
    _lock_principals(session)
    principal = _principal_of_kind(session, args["name"], "service")
    _refuse_last_admin(session, principal, "delete")
    store.delete_principal(session, args["name"])
    return {}


def roles_grant(session: Session, args: Args) -> Payload:
    principal = store.grant_role(session, args["principal"], args["role"])
    return {"principal": _principal_json(session, principal)}


def roles_revoke(session: Session, args: Args) -> Payload:
    if args["role"] == "admin":
        _lock_principals(session)
        _refuse_last_admin(
            session, store.get_principal(session, args["principal"]), "revoke admin from"
        )
    principal = store.revoke_role(session, args["principal"], args["role"])
    return {"principal": _principal_json(session, principal)}


def teams_create(session: Session, args: Args) -> Payload:
    team = store.create_team(session, args["name"], args.get("description"))
    return {"team": _team_json(team, [])}


def teams_list(session: Session, args: Args) -> Payload:
    return {"teams": [_team_json(team, members) for team, members in store.list_teams(session)]}


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
    return {"project": _project_json(project, [])}


def projects_list(session: Session, args: Args) -> Payload:
    return {
        "projects": [
            _project_json(project, members) for project, members in store.list_projects(session)
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
    return {"key": key, "api_key": _key_json(record, principal)}


def keys_list(session: Session, args: Args) -> Payload:
    if args.get("all"):
        if "principal" in args:
            raise _bad("give either 'principal' or 'all', not both")
        rows = store.list_keys(session)
    else:
        rows = store.list_keys(session, args.get("principal", _caller()))
    return {"api_keys": [_key_json(record, owner) for record, owner in rows]}


def keys_revoke(session: Session, args: Args) -> Payload:
    record = store.revoke_key(session, args["key_id"])
    return {"api_key": _key_json(record, store.key_owner(session, record.id).name)}


def keys_rotate(session: Session, args: Args) -> Payload:
    grace = timedelta(seconds=args.get("grace_seconds", DEFAULT_GRACE_SECONDS))
    key, record = store.rotate_key(session, args["key_id"], grace, created_by=_caller())
    return {"key": key, "api_key": _key_json(record, store.key_owner(session, record.id).name)}


# ---------------------------------------------------------------- the route table


Handler = Callable[[Session, Args], Payload]


@dataclass(frozen=True)
class Route:
    path: str
    method: str
    handler: Handler
    fields: dict[str, Field] = field(default_factory=dict)


ROUTES: tuple[Route, ...] = (
    Route("/whoami", "GET", whoami),
    Route(
        "/users/create",
        "POST",
        users_create,
        {
            "name": NAME,
            "display_name": TEXT,
            "email": TEXT,
            "password": PASSWORD,
            "roles": STRINGS,
            "clearance": OPTIONAL_NAME,
        },
    ),
    Route("/users/get", "GET", users_get, {"name": NAME}),
    Route("/users/list", "GET", users_list, {"kind": OPTIONAL_NAME}),
    Route(
        "/users/update",
        "PATCH",
        users_update,
        {
            "name": NAME,
            "display_name": TEXT,
            "email": TEXT,
            "password": PASSWORD,
            "clearance": OPTIONAL_NAME,
            "disabled": FLAG,
        },
    ),
    Route("/users/delete", "DELETE", users_delete, {"name": NAME}),
    Route(
        "/service-accounts/create",
        "POST",
        service_accounts_create,
        {
            "name": NAME,
            "owner": OPTIONAL_NAME,
            "owner_team": OPTIONAL_NAME,
            "roles": STRINGS,
            "clearance": OPTIONAL_NAME,
            "display_name": TEXT,
        },
    ),
    Route("/service-accounts/list", "GET", service_accounts_list),
    Route("/service-accounts/delete", "DELETE", service_accounts_delete, {"name": NAME}),
    Route("/roles/grant", "POST", roles_grant, {"principal": NAME, "role": NAME}),
    Route("/roles/revoke", "POST", roles_revoke, {"principal": NAME, "role": NAME}),
    Route("/teams/create", "POST", teams_create, {"name": NAME, "description": DESCRIPTION}),
    Route("/teams/list", "GET", teams_list),
    Route("/teams/delete", "DELETE", teams_delete, {"name": NAME}),
    Route("/teams/add-member", "POST", teams_add_member, {"team": NAME, "principal": NAME}),
    Route("/teams/remove-member", "POST", teams_remove_member, {"team": NAME, "principal": NAME}),
    Route("/projects/create", "POST", projects_create, {"name": NAME, "description": DESCRIPTION}),
    Route("/projects/list", "GET", projects_list),
    Route("/projects/delete", "DELETE", projects_delete, {"name": NAME}),
    Route(
        "/projects/set-member",
        "POST",
        projects_set_member,
        {"project": NAME, "role": NAME, "principal": OPTIONAL_NAME, "team": OPTIONAL_NAME},
    ),
    Route(
        "/projects/remove-member",
        "POST",
        projects_remove_member,
        {"project": NAME, "principal": OPTIONAL_NAME, "team": OPTIONAL_NAME},
    ),
    Route(
        "/keys/create",
        "POST",
        keys_create,
        {
            "principal": OPTIONAL_NAME,
            "name": Field(max_length=128),
            "scopes": Field(kind="strs", required=True),
            "projects": STRINGS,
            "expires_in_seconds": Field(kind="int", minimum=1, maximum=MAX_KEY_LIFETIME_SECONDS),
        },
    ),
    Route("/keys/list", "GET", keys_list, {"principal": OPTIONAL_NAME, "all": FLAG}),
    Route("/keys/revoke", "POST", keys_revoke, {"key_id": NAME}),
    Route(
        "/keys/rotate",
        "POST",
        keys_rotate,
        {
            "key_id": NAME,
            "grace_seconds": Field(kind="int", minimum=0, maximum=MAX_GRACE_SECONDS),
        },
    ),
)


# ---------------------------------------------------------------- wiring


def _json_response(status: int, payload: Payload) -> Response:
    response = Response(json.dumps(payload), status=status, mimetype="application/json")
    # Responses can hold a freshly created key: no cache may keep a copy.
    response.headers["Cache-Control"] = "no-store"
    return response


def _error(status: int, code: str, message: str) -> Response:
    return _json_response(status, {"error_code": code, "message": message})


def _view(sessions: sessionmaker[Session], route: Route) -> Callable[[], Response]:
    def view() -> Response:
        try:
            given = _query_args(route.fields) if route.method == "GET" else _json_body()
            args = _accept(route.fields, given)
            with sessions.begin() as session:
                payload = route.handler(session, args)
        except store.IdentityError as exc:
            return _error(exc.status, exc.code, str(exc))
        except IntegrityError:
            return _error(400, "INVALID_PARAMETER_VALUE", "the change conflicts with stored data")
        except DataError:
            return _error(400, "INVALID_PARAMETER_VALUE", "a value is out of range")
        return _json_response(200, payload)

    view.__name__ = route.handler.__name__
    return view


def register_admin_api(
    flask_app: Flask,
    sessions: sessionmaker[Session],
    url_prefix_fn: Callable[[str], str] = lambda path: path,
) -> None:
    """Mount the admin API on `flask_app`; `url_prefix_fn` is MLflow's `_add_static_prefix`,
    so the routes follow `--static-prefix` like MLflow's own."""
    blueprint = Blueprint("mlflow_secure_admin", __name__)
    for route in ROUTES:
        blueprint.add_url_rule(
            url_prefix_fn(API_ROOT + route.path),
            endpoint=route.handler.__name__,
            view_func=_view(sessions, route),
            methods=[route.method],
        )
    flask_app.register_blueprint(blueprint)
