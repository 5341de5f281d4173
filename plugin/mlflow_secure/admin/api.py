"""The plugin's admin HTTP API under ``/api/2.0/mlflow-secure/``: the Flask wiring.

The route table is routes.py, the handlers handlers.py, strict input parsing parsing.py and
rendering rendering.py. Responses never contain a key digest or a password hash; the plain
API key appears exactly once, in the response that created it.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from flask import Blueprint, Flask, Response, request
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.exceptions import RequestEntityTooLarge

from mlflow_secure.admin.handlers import DEFAULT_GRACE_SECONDS
from mlflow_secure.admin.parsing import (
    MAX_BODY_BYTES,
    MAX_GRACE_SECONDS,
    MAX_KEY_LIFETIME_SECONDS,
    MAX_LIST_ITEMS,
    READ_METHODS,
    Field,
    bad,
    read_args,
)
from mlflow_secure.admin.routes import ROUTES, Route, find_route
from mlflow_secure.identity import store

__all__ = [
    "API_ROOT",
    "DEFAULT_GRACE_SECONDS",
    "MAX_BODY_BYTES",
    "MAX_GRACE_SECONDS",
    "MAX_KEY_LIFETIME_SECONDS",
    "MAX_LIST_ITEMS",
    "ROUTES",
    "Field",
    "Route",
    "find_route",
    "register_admin_api",
]

API_ROOT = "/api/2.0/mlflow-secure"


def _json_response(status: int, payload: dict) -> Response:
    response = Response(json.dumps(payload), status=status, mimetype="application/json")
    # Responses can hold a freshly created key: no cache may keep a copy.
    response.headers["Cache-Control"] = "no-store"
    return response


def _error(status: int, code: str, message: str) -> Response:
    return _json_response(status, {"error_code": code, "message": message})


def _body() -> bytes:
    if request.method in READ_METHODS:
        return b""
    if not request.is_json:
        raise bad("the request body must be JSON (Content-Type: application/json)")
    request.max_content_length = MAX_BODY_BYTES  # bounds chunked bodies too
    try:
        return request.get_data(cache=True)
    except RequestEntityTooLarge:
        raise bad(f"the request body is larger than {MAX_BODY_BYTES} bytes") from None


def _view(sessions: sessionmaker[Session], route: Route) -> Callable[[], Response]:
    def view() -> Response:
        try:
            args = read_args(route.fields, route.method, request.query_string, _body())
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
