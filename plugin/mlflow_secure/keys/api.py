"""The key service's HTTP routes under /api/2.0/mlflow-secure/keys/ (Flask wiring).

The front door has authenticated the caller and the policy has allowed the request on the
resource described by resources.py before a handler runs; a handler acts on that judged
resource (its project and artefact identity), reads its arguments with the same parser,
and answers in MLflow's JSON error shape. Data keys appear only in the response to the
caller the policy allowed, with `Cache-Control: no-store`; they are never logged.
"""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Flask, Response, request
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from mlflow_secure.admin.parsing import MAX_BODY_BYTES, Args, bad, read_args
from mlflow_secure.identity.records import IdentityError, NotFound
from mlflow_secure.identity.subject import current_subject
from mlflow_secure.keys import service
from mlflow_secure.keys.requirement import encryption_required
from mlflow_secure.keys.resources import artefact_of, judged_resource
from mlflow_secure.keys.routes import ROUTES, KeyRoute
from mlflow_secure.keys.wrapping import KeyWrapper

API_ROOT = "/api/2.0/mlflow-secure/"
NO_MASTER_KEY = (
    "the key service has no master key: set MLFLOW_SECURE_MASTER_KEY_FILE (or "
    "MLFLOW_SECURE_MASTER_KEY) on the server; see docs/encryption.md"
)


def _json(status: int, payload: dict[str, Any]) -> Response:
    response = Response(json.dumps(payload), status=status, mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    return response


def _issued(key: service.IssuedKey) -> dict[str, Any]:
    return {
        "required": True,
        "key_id": key.key_id,
        "key_version": key.key_version,
        "data_key": base64.b64encode(key.data_key).decode(),
        "project": key.project,
        "artefact": key.artefact,
    }


def _need(wrapper: KeyWrapper | None) -> KeyWrapper:
    if wrapper is None:
        raise service.KeyServiceUnavailable(NO_MASTER_KEY)
    return wrapper


def _artefact(args: Args) -> tuple[str, dict[str, Any]]:
    """The judged artefact: its identity (recomputed from the same arguments) and resource."""
    _, _, identity = artefact_of(args)
    resource = judged_resource()
    if resource.get("artefact") != identity:
        raise RuntimeError("the request changed after it was judged")
    if resource.get("missing"):
        raise NotFound("no such run or logged model")
    return identity, resource


def create(
    session: Session, wrapper: KeyWrapper | None, args: Args, encrypt_from: str = "confidential"
) -> dict[str, Any]:
    identity, resource = _artefact(args)
    if not args.get("always") and not encryption_required(
        resource.get("classification"), encrypt_from
    ):
        return {"required": False, "artefact": identity}
    project = resource.get("project")
    if not project:
        raise bad(
            f"experiment {resource.get('experiment_id')} is in no project: encrypted "
            "artefacts are keyed per project (set its mlflow.secure.project tag)"
        )
    key = service.issue(
        session,
        _need(wrapper),
        project,
        str(resource["experiment_id"]),
        identity,
        current_subject().name,
    )
    return _issued(key)


def unwrap(session: Session, wrapper: KeyWrapper | None, args: Args) -> dict[str, Any]:
    identity, resource = _artefact(args)
    record = service.find_for(session, args["key_id"], identity, resource.get("experiment_id"))
    data_key = service.open_key(session, _need(wrapper), record, identity)
    return _issued(
        service.IssuedKey(record.key_id, record.created_version, data_key, record.project, identity)
    )


def project_get(session: Session, wrapper: KeyWrapper | None, args: Args) -> dict[str, Any]:
    return service.status(session, args["project"])


def project_rotate(session: Session, wrapper: KeyWrapper | None, args: Args) -> dict[str, Any]:
    return service.rotate(session, _need(wrapper), args["project"], current_subject().name)


def project_retire(session: Session, wrapper: KeyWrapper | None, args: Args) -> dict[str, Any]:
    return service.retire(session, args["project"], args["version"], current_subject().name)


def project_destroy(session: Session, wrapper: KeyWrapper | None, args: Args) -> dict[str, Any]:
    if args["confirm"] != args["project"]:
        raise bad(
            "destroying a project's keys makes every artefact of the project unrecoverable: "
            "repeat the project name in 'confirm' to go ahead"
        )
    return service.destroy(session, args["project"], current_subject().name)


Handler = Callable[[Session, KeyWrapper | None, Args], dict[str, Any]]
HANDLERS: dict[str, Handler] = {
    "artifact_keys.create": create,
    "artifact_keys.unwrap": unwrap,
    "project_keys.get": project_get,
    "project_keys.rotate": project_rotate,
    "project_keys.retire": project_retire,
    "project_keys.destroy": project_destroy,
}


def _body() -> bytes:
    if not request.is_json:
        raise bad("the request body must be JSON (Content-Type: application/json)")
    request.max_content_length = MAX_BODY_BYTES
    return request.get_data(cache=True)


def _view(
    sessions: sessionmaker[Session],
    wrapper: KeyWrapper | None,
    route: KeyRoute,
    encrypt_from: str,
) -> Callable[[], Response]:
    handler = HANDLERS[route.endpoint]
    if handler is create:
        handler = functools.partial(create, encrypt_from=encrypt_from)

    def view() -> Response:
        try:
            body = b"" if route.method == "GET" else _body()
            args = read_args(route.fields, route.method, request.query_string, body)
            with sessions.begin() as session:
                payload = handler(session, wrapper, args)
        except IdentityError as exc:
            return _json(exc.status, {"error_code": exc.code, "message": str(exc)})
        except IntegrityError:  # a race the per-project lock did not cover: safe to retry
            message = "another change to these keys happened at the same moment; try again"
            return _json(409, {"error_code": "ABORTED", "message": message})
        return _json(200, payload)

    view.__name__ = "mlflow_secure_" + route.endpoint.replace(".", "_")
    return view


def register_key_api(
    flask_app: Flask,
    sessions: sessionmaker[Session],
    wrapper: KeyWrapper | None,
    encrypt_from: str = "confidential",
    url_prefix_fn: Callable[[str], str] = lambda path: path,
) -> None:
    """Mount the key service; `wrapper` None (no master key) answers 503 where a key is
    needed, `encrypt_from` is MLFLOW_SECURE_ENCRYPT_FROM."""
    blueprint = Blueprint("mlflow_secure_keys", __name__)
    for route in ROUTES:
        blueprint.add_url_rule(
            url_prefix_fn(API_ROOT + route.path),
            endpoint=route.endpoint.replace(".", "_"),
            view_func=_view(sessions, wrapper, route, encrypt_from),
            methods=[route.method],
        )
    flask_app.register_blueprint(blueprint)
