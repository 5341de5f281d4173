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

from mlflow_secure.request.census import RouteSpec
from mlflow_secure.request.lookups import (
    CLASSIFICATION_TAG,
    PROJECT_TAG,
    ResourceNotFound,
    ResourceResolver,
    is_default_root,
    served_path,
)


class AmbiguousRequest(ValueError):
    """Answered with 400; the message names the parameter, never its value."""


class BadRequest(ValueError):
    """A request this layer refuses outright (400, the message as it is)."""


# Query parameters MLflow's handlers read as lists: repeated proto fields (`_get_request_message`
# turns them into lists with `getlist`, even when given once) and get-history-bulk's `run_id`
# (`request.args.getlist`). Any other repeated query parameter is ambiguous.
LIST_PARAMS = frozenset(
    {
        "experiment_ids",
        "run_ids",
        "trace_ids",
        "scorer_ids",
        "item_ids",
        "schema_ids",
        "dataset_record_ids",
        "metric_keys",
        "order_by",
    }
)
LIST_PARAMS_BY_ENDPOINT = {"mlflow.metrics.get_history_bulk": frozenset({"run_id"})}


def list_params(spec: RouteSpec | None) -> frozenset[str]:
    if spec is None:
        return LIST_PARAMS
    return LIST_PARAMS | LIST_PARAMS_BY_ENDPOINT.get(spec.endpoint, frozenset())


def request_params(
    method: str,
    query: bytes,
    body: bytes,
    path_params: Mapping[str, Any],
    lists: frozenset[str] = LIST_PARAMS,
) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if name in lists:
            params.setdefault(name, []).append(value)
            continue
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
    if name.startswith("header:"):  # a header name holds dots and dashes of its own
        return [params[name]] if name in params else []
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
        if "[]" not in name
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
    """A proxied artefact path belongs to the experiment whose location holds it.

    `mlflow-artifacts:/<experiment id>/...` is where MLflow puts an experiment's artefacts
    unless it was created with a custom location; such a path is attributed to experiment E
    only if E's location is exactly that default. Any other path belongs to the experiment
    whose custom `mlflow-artifacts:` location is the longest prefix of it (whole segments).
    Custom locations can neither take a number as first segment nor nest in one another
    (`check_new_artifact_location`), so no experiment can claim another's tree; a path two
    experiments claim anyway (created before this rule) belongs to neither.
    """
    experiment_id = check_artifact_path(path).split("/", 1)[0]
    if experiment_id.isdigit():
        experiment = resolver.experiment(experiment_id)
        if experiment.get("artifact_location") != f"mlflow-artifacts:/{experiment_id}":
            raise ResourceNotFound(path)
        return {**experiment, "type": "artifact", "id": path}
    segments = path.split("/")
    for fresh in (False, True):  # an experiment created a moment ago, maybe by another worker
        roots = resolver.custom_artifact_roots(fresh=fresh)
        for length in range(len(segments), 0, -1):
            owners = roots.get("/".join(segments[:length]))
            if owners:
                if len(owners) != 1:
                    raise ResourceNotFound(path)
                return {**resolver.experiment(owners[0]), "type": "artifact", "id": path}
    raise ResourceNotFound(path)


def check_new_artifact_location(resolver: ResourceResolver, location: str) -> None:
    """A new experiment's `mlflow-artifacts:` location must be a tree of its own."""
    root = served_path(location)
    if root is None:
        return  # another store: the URI rules of the policy judge it
    if not root or is_default_root(root):
        raise BadRequest(
            "artifact_location under mlflow-artifacts: must start with a name that is not a "
            "number (numbered trees are the experiments' default locations)"
        )
    check_artifact_path(root)
    for other in resolver.custom_artifact_roots(fresh=True):
        if other == root or other.startswith(root + "/") or root.startswith(other + "/"):
            raise BadRequest(
                "artifact_location overlaps the artefact location of another experiment"
            )


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


MAX_NAMED_RESOURCES = 100


def resolve(
    spec: RouteSpec, params: Mapping[str, Any], resolver: ResourceResolver, subject_name: str
) -> dict[str, Any]:
    """The resource the policy decides on. A request naming several (a list of runs, the
    experiments a dataset is linked to) gets the first as its resource and the others under
    `"also"`: each must pass the same decision (the front door asks for each)."""
    kind = spec.resource
    if spec.listing:
        parent = pick(params, spec.ids) if spec.ids else None
        if parent is None:
            return {"type": kind, "listing": True}
        # A listing inside one named parent (the issues, schemas or queues of one experiment):
        # everything it returns lives in that parent, so reading the parent is the question.
    new_tags = requested_tags(params)
    uri = next(
        (str(params[n]) for n in ("artifact_location", "source", "url") if params.get(n)), None
    )
    extra: dict[str, Any] = {}
    if new_tags:
        extra["new_tags"] = new_tags
    if uri is not None:
        extra["uri"] = uri
        if spec.endpoint == "mlflow.experiments.create":
            check_new_artifact_location(resolver, uri)
    composite = kind == "model_version"  # named by (name, version) together
    linked_run = params.get("header:x-mlflow-run-id")
    if spec.endpoint == "mlflow.otel.export_traces" and linked_run:
        # traces exported into experiment E and linked to run R: R must be writable too
        try:
            extra["also"] = [resolver.run(str(linked_run))]
        except ResourceNotFound:
            extra["also"] = [_missing("run", str(linked_run))]
    many = named_list(params, spec.ids) if spec.ids and not composite else None
    if many is not None and spec.listing:
        raise AmbiguousRequest(f"{' / '.join(spec.ids)} name both one parent and a list")
    if many is not None:
        return _resolve_each(kind, many, resolver, extra)
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
        elif key is not None and spec.ids[0] in _SUB_OBJECTS:
            return {**resolver.experiment_of(_SUB_OBJECTS[spec.ids[0]], key), **extra}
        elif key is not None and kind == "dataset":
            linked = resolver.dataset_experiments(key)
            if linked:
                # Read through any experiment it is linked to (as its listing shows it);
                # change only with the right on every one (a change reaches them all).
                others = {"any_of": linked[1:]} if spec.access == "read" else _also(linked[1:])
                return {**linked[0], **extra, **(others if linked[1:] else {})}
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


def named_list(params: Mapping[str, Any], names: tuple[str, ...]) -> list[str] | None:
    """The ids of a list-valued parameter (`experiment_ids`, `locations[].x.y`), or None when
    the request names its resource by a single value."""
    found: list[Any] | None = None
    for name in names:
        if name.startswith("header:"):
            continue
        head, marker, rest = name.partition("[]")
        values = _values(params, head)
        lists = [v for v in values if isinstance(v, list)]
        if not lists:
            continue
        if found is not None or len(lists) > 1:
            raise AmbiguousRequest(f"{' / '.join(names)} name different resources")
        items = lists[0]
        if marker and rest:
            items = [v for item in items if isinstance(item, dict) for v in _values(item, rest[1:])]
        found = items
    if found is None:
        return None
    ids = [str(v) for v in found if v not in (None, "") and not isinstance(v, dict | list)]
    if len(ids) != len(found):
        raise AmbiguousRequest(f"{names[0]} holds something other than ids")
    if len(set(ids)) > MAX_NAMED_RESOURCES:
        raise AmbiguousRequest(f"{names[0]} names more than {MAX_NAMED_RESOURCES} resources")
    return list(dict.fromkeys(ids))


def _resolve_each(
    kind: str, ids: list[str], resolver: ResourceResolver, extra: dict[str, Any]
) -> dict[str, Any]:
    if not ids:  # an empty list names nothing: judged as the bare resource type
        return {**_missing(kind, ""), **extra}
    lookup = _LOOKUPS.get(kind)
    resources = []
    for item in ids:
        try:
            resources.append(lookup(resolver, item) if lookup else _missing(kind, item))
        except ResourceNotFound:
            resources.append(_missing(kind, item))
    return {**resources[0], **extra, **_also(resources[1:])}


def _also(others: list[dict[str, Any]]) -> dict[str, Any]:
    return {"also": others} if others else {}


_SUB_OBJECTS = {"issue_id": "issue", "schema_id": "label_schema", "queue_id": "review_queue"}
_LOOKUPS = {
    "experiment": ResourceResolver.experiment,
    "run": ResourceResolver.run,
    "logged_model": ResourceResolver.logged_model,
    "trace": ResourceResolver.trace,
    "registered_model": ResourceResolver.registered_model,
    "prompt": ResourceResolver.registered_model,
}
_VIA_EXPERIMENT = {"run", "logged_model", "trace", "dataset", "scorer", "experiment"}
