"""What a key service request touches, for the policy: the artefact's run or logged model
(resolved from MLflow's store, as any MLflow request's), or the project whose keys change.

A data key is decided like the artefact it opens: creating one needs write access to the
run or logged model, unwrapping one needs read access (project role, clearance against the
experiment's classification, the credential's scopes and projects: resources.rego). The
artefact's identity is computed here from the request, never taken from the client, and
the handler issues or opens the key for exactly this identity and project (the resource
the front door judged, handed over through `judged_resource`).
"""

from __future__ import annotations

import contextvars
from typing import Any

from mlflow_secure.admin.parsing import Args, read_args
from mlflow_secure.identity.records import IdentityError
from mlflow_secure.keys.routes import BY_PATH, KeyRoute
from mlflow_secure.request.canonical import AmbiguousRequest, BadRequest
from mlflow_secure.request.lookups import ResourceNotFound, ResourceResolver
from mlflow_secure.request.resolution import check_artifact_path, missing

Resource = dict[str, Any]
_judged: contextvars.ContextVar[Resource | None] = contextvars.ContextVar(
    "mlflow_secure_judged_resource", default=None
)


def route_for(method: str, path: str) -> KeyRoute | None:
    return BY_PATH.get((method, path))


def artefact_of(args: Args) -> tuple[str, str, str]:
    """(kind, id, identity) of the artefact a request names: exactly one owner and a plain
    relative path (IdentityError, a 400, otherwise)."""
    owners = [(kind, args[field]) for kind, field in _OWNERS if args.get(field)]
    if len(owners) != 1:
        raise IdentityError(
            "name the artefact's owner: exactly one of run_id, logged_model_id, trace_id"
        )
    kind, owner_id = owners[0]
    try:
        path = check_artifact_path(args["path"])
    except AmbiguousRequest:
        raise IdentityError("path must be a plain relative artefact path") from None
    if not path or path.endswith("/"):
        raise IdentityError("path must name a file")
    if "//" in path:  # one spelling per file, so one data key per stored file
        raise IdentityError("path must not contain empty segments ('//')")
    return kind, owner_id, f"{_PREFIXES[kind]}/{owner_id}/artifacts/{path}"


_OWNERS = (("run", "run_id"), ("logged_model", "logged_model_id"), ("trace", "trace_id"))
_PREFIXES = {"run": "runs", "logged_model": "models", "trace": "traces"}


def describe(route: KeyRoute, query: bytes, body: bytes, resolver: ResourceResolver) -> Resource:
    try:
        args = read_args(route.fields, route.method, query, body)
        if route.path.startswith("keys/projects/"):
            project = args["project"]
            return {"type": "project_key", "id": project, "project": project}
        kind, owner_id, identity = artefact_of(args)
    except IdentityError as exc:
        # answered 400 by the front door before any policy is asked, nothing changed
        raise BadRequest(str(exc)) from None
    lookup = {"run": resolver.run, "logged_model": resolver.logged_model, "trace": resolver.trace}[
        kind
    ]
    try:
        resource = lookup(owner_id)
    except ResourceNotFound:
        resource = missing(kind, owner_id)
    resource["artefact"] = identity
    if "key_id" in args:
        resource["key_id"] = args["key_id"]
    return resource


def bind_judged(resource: Resource | None) -> contextvars.Token:
    return _judged.set(resource)


def unbind_judged(token: contextvars.Token) -> None:
    _judged.reset(token)


def judged_resource() -> Resource:
    """The resource the policy allowed for this request (set by the front door)."""
    resource = _judged.get()
    if resource is None:
        raise RuntimeError("no judged resource in this context")
    return resource
