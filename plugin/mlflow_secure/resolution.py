"""Endpoint parameters → the resource the policy decides on.

Parameters are read the way MLflow's handlers read them (query string for GET, JSON body
otherwise, plus URL path variables), and every alias a handler accepts is considered: a
request naming two different values for one thing (`run_id` and `run_uuid`, a repeated query
parameter, a path variable contradicted by the body) is ambiguous and refused, because MLflow
and this layer could otherwise disagree about which resource the request touches.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from mlflow_secure.resources import (
    CLASSIFICATION_TAG,
    PROJECT_TAG,
    ResourceNotFound,
    ResourceResolver,
)
from mlflow_secure.route_census import RouteSpec


class AmbiguousRequest(ValueError):
    """Answered with 400; the message names the parameter, never its value."""


def request_params(
    method: str, query: bytes, body: bytes, path_params: Mapping[str, Any]
) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if name in params and params[name] != value:
            raise AmbiguousRequest(f"query parameter {name!r} is given more than once")
        params[name] = value
    if method not in {"GET", "HEAD", "OPTIONS"} and body.strip():
        try:
            payload = json.loads(body, object_pairs_hook=_no_duplicates)
        except ValueError as exc:
            if isinstance(exc, AmbiguousRequest):
                raise
            payload = None  # not JSON (e.g. artefact bytes): MLflow's handler judges it
        if isinstance(payload, dict):
            params.update(payload)
    for name, value in path_params.items():
        if name in params and str(params[name]) != str(value):
            raise AmbiguousRequest(f"{name!r} in the URL contradicts the request")
        params[name] = value
    return params


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, value in pairs:
        if name in result:
            raise AmbiguousRequest(f"field {name!r} appears more than once in the body")
        result[name] = value
    return result


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _values(params: Mapping[str, Any], name: str) -> list[Any]:
    """Values at `name`, a field or a dotted path into nested objects, in either spelling."""
    head, _, rest = name.partition(".")
    found = [params[s] for s in {head, _camel(head)} if s in params]
    if not rest:
        return found
    return [v for value in found if isinstance(value, dict) for v in _values(value, rest)]


def pick(params: Mapping[str, Any], names: tuple[str, ...]) -> str | None:
    """The one value named by `names` (fields or dotted paths, either spelling), or None."""
    found = {
        str(value)
        for name in names
        if "[]" not in name and not name.startswith("header:")
        for value in _values(params, name)
        if value not in (None, "") and not isinstance(value, dict | list)
    }
    if len(found) > 1:
        raise AmbiguousRequest(f"{' / '.join(names)} name different resources")
    return found.pop() if found else None


def requested_tags(params: Mapping[str, Any]) -> dict[str, str]:
    """Tags a create or set-tag request would write: the policy judges moves between projects."""
    tags: dict[str, str] = {}
    raw = params.get("tags")
    if isinstance(raw, list):
        for item in raw:
            if isinstance(item, dict) and isinstance(item.get("key"), str):
                tags[item["key"]] = str(item.get("value", ""))
    elif isinstance(raw, dict):
        tags.update({str(k): str(v) for k, v in raw.items()})
    key = params.get("key")
    if isinstance(key, str) and key.startswith("mlflow.secure."):
        tags[key] = str(params.get("value", ""))
    return {k: v for k, v in tags.items() if k.startswith("mlflow.secure.")}


_TRAVERSAL_MARKERS = ("%25", "%2e", "%2f", "%5c", "%00", "\\", "\x00")


def check_artifact_path(path: str) -> str:
    """Refuse traversal in any encoding before anything uses the path."""
    lowered = path.lower()
    if (
        path.startswith("/")
        or any(marker in lowered for marker in _TRAVERSAL_MARKERS)
        or any(part in {"..", "."} for part in path.split("/"))
    ):
        raise AmbiguousRequest("the artefact path is not a plain relative path")
    return path


def _artifact(resolver: ResourceResolver, path: str) -> dict[str, Any]:
    """A proxied artefact path belongs to the experiment whose default location holds it.

    `mlflow-artifacts:/<experiment id>/...` is where MLflow puts an experiment's artefacts
    unless it was created with a custom location; a path is attributed to experiment E only
    if E's location is exactly that default, so no custom location can claim another's tree.
    """
    experiment_id = check_artifact_path(path).split("/", 1)[0]
    if not experiment_id.isdigit():
        raise ResourceNotFound(path)
    experiment = resolver.experiment(experiment_id)
    if experiment.get("artifact_location") != f"mlflow-artifacts:/{experiment_id}":
        raise ResourceNotFound(path)
    return {**experiment, "type": "artifact", "id": path}


def _missing(kind: str, key: str) -> dict[str, Any]:
    # Indistinguishable from a resource the caller may not see: no existence oracle.
    return {
        "type": kind,
        "id": key,
        "missing": True,
        "project": None,
        "classification": None,
        "owner": None,
        "tags": {},
    }


def resolve(
    spec: RouteSpec, params: Mapping[str, Any], resolver: ResourceResolver, subject_name: str
) -> dict[str, Any]:
    kind = spec.resource
    if spec.listing:
        return {"type": kind, "listing": True}
    new_tags = requested_tags(params)
    uri = next(
        (str(params[n]) for n in ("artifact_location", "source", "url") if params.get(n)), None
    )
    extra: dict[str, Any] = {}
    if new_tags:
        extra["new_tags"] = new_tags
    if uri is not None:
        extra["uri"] = uri
    composite = kind == "model_version"  # named by (name, version) together
    key = pick(params, spec.ids) if spec.ids and not composite else None
    try:
        if composite:
            name = pick(params, ("name",))
            version = pick(params, ("version",))
            if name and version:
                return {**resolver.model_version(name, version), **extra}
            if name:
                return {**resolver.registered_model(name), "type": kind, **extra}
        elif kind == "artifact" and key is not None:
            return {**_artifact(resolver, key), **extra}
        elif key is not None and kind in _LOOKUPS:
            return {**_LOOKUPS[kind](resolver, key), **extra}
        elif kind in _VIA_EXPERIMENT and (experiment_id := pick(params, ("experiment_id",))):
            return {**resolver.experiment(experiment_id), "type": kind, "id": key, **extra}
    except ResourceNotFound:
        return {**_missing(kind, key or ""), **extra}
    if spec.ids and not composite:
        # The route names its resource but we could not find or read which one (a header,
        # a nested field, an id of another kind): fail closed, as for a missing resource.
        return {**_missing(kind, key or ""), **extra}
    # Something new (or server-wide): described by what the request asks for.
    return {
        "type": kind,
        "id": key,
        "project": new_tags.get(PROJECT_TAG),
        "classification": new_tags.get(CLASSIFICATION_TAG),
        "owner": subject_name,
        "tags": {},
        "creating": key is None,
        **extra,
    }


_LOOKUPS = {
    "experiment": ResourceResolver.experiment,
    "run": ResourceResolver.run,
    "logged_model": ResourceResolver.logged_model,
    "trace": ResourceResolver.trace,
    "registered_model": ResourceResolver.registered_model,
    "prompt": ResourceResolver.registered_model,
}
_VIA_EXPERIMENT = {"run", "logged_model", "trace", "dataset", "scorer", "experiment"}
