"""Every id a request names → the resources the policy decides on, primary and secondary.

Parameters come from the canonical request (canonical.py): one reading, proto names only, so
a field is looked up under exactly the name MLflow's handler reads. The route's `ids` name its
main resource; `named_ids.SECONDARY` names the others (a model version's run and source, a
metric's logged model, an upsert's existing trace), each decided with the access it needs.
A request naming two different values for one thing (`run_id` and `run_uuid`) is ambiguous
and refused. How an id becomes a resource is one table, `LOOKUPS`, keyed by resource type
(or by the id field, for ids that name something of another type than the route's).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mlflow_secure.request.canonical import AmbiguousRequest, BadRequest
from mlflow_secure.request.census import RouteSpec
from mlflow_secure.request.lookups import (
    CLASSIFICATION_TAG,
    PROJECT_TAG,
    ResourceNotFound,
    ResourceResolver,
    is_default_root,
    served_path,
)
from mlflow_secure.request.named_ids import NamedId, secondary

__all__ = ["AmbiguousRequest", "BadRequest", "Resolved", "check_artifact_path", "resolve"]

MAX_NAMED_RESOURCES = 100
# The sources MLflow gives prompt versions (its stores' placeholders): they name no location.
PROMPT_SOURCES = frozenset({"prompt-template", "dummy-source"})
PROMPT_TAG = "mlflow.prompt.is_prompt"
# URI schemes that name a resource of this server: a missing one is refused as missing.
_NAMING_SCHEMES = frozenset({"runs", "models", "prompts"})
POLICY_TAG_PREFIX = "mlflow.secure."
Lookup = Callable[[ResourceResolver, str], dict[str, Any]]


@dataclass
class Resolved:
    """What the policy decides on: the resource, and further ones that must be allowed too
    (`also`, each with the access it needs; None: the route's) or of which one suffices."""

    resource: dict[str, Any]
    also: list[tuple[dict[str, Any], str | None]] = field(default_factory=list)
    any_of: list[dict[str, Any]] = field(default_factory=list)
    asked: str | None = None  # the resource's key as the request spelt it


# ----------------------------------------------------------------------- reading parameters


def values_at(params: Mapping[str, Any], path: str) -> list[Any]:
    """Values at a field or a dotted path into nested objects; `[]` walks into each list item
    (`metrics[].model_id`). Proto names only: the canonical request has folded aliases."""
    if path.startswith(("header:", "otlp:")):  # names the front door sets (dots of their own)
        value = params.get(path.removesuffix("[]"))
        return [] if value is None else value if isinstance(value, list) else [value]
    head, dot, rest = path.partition(".")
    listed = head.endswith("[]")
    head = head.removesuffix("[]")
    if head not in params:
        return []
    found = params[head]
    if listed:
        items = found if isinstance(found, list) else []
        if not dot:
            return items
        return [v for item in items if isinstance(item, dict) for v in values_at(item, rest)]
    if not dot:
        return [found]
    return values_at(found, rest) if isinstance(found, dict) else []


def _scalar(value: Any) -> bool:
    return value not in (None, "") and not isinstance(value, dict | list)


def pick(params: Mapping[str, Any], names: tuple[str, ...]) -> str | None:
    """The one value named by `names` (alternatives such as run_id / run_uuid), or None."""
    found = {
        str(value)
        for name in names
        if "[]" not in name
        for value in values_at(params, name)
        if _scalar(value)
    }
    if len(found) > 1:
        raise AmbiguousRequest(f"{' / '.join(names)} name different resources")
    return found.pop() if found else None


def named_list(params: Mapping[str, Any], names: tuple[str, ...]) -> list[str] | None:
    """The ids of a list-valued parameter (`experiment_ids`, `locations[].x.y`), or None when
    the request names its resource by a single value."""
    found: list[Any] | None = None
    for name in names:
        if name.startswith("header:"):
            continue
        head = name.split("[]", 1)[0]
        if not isinstance((values_at(params, head) or [None])[0], list):
            continue
        if found is not None:
            raise AmbiguousRequest(f"{' / '.join(names)} name different resources")
        found = values_at(params, name if "[]" in name else name + "[]")
    if found is None:
        return None
    ids = [str(v) for v in found if _scalar(v)]
    if len(ids) != len(found):
        raise AmbiguousRequest(f"{names[0]} holds something other than ids")
    return _bounded(names[0], ids)


def _bounded(name: str, ids: list[str]) -> list[str]:
    distinct = list(dict.fromkeys(ids))
    if len(distinct) > MAX_NAMED_RESOURCES:
        raise AmbiguousRequest(f"{name} names more than {MAX_NAMED_RESOURCES} resources")
    return distinct


def requested_tags(params: Mapping[str, Any]) -> dict[str, str]:
    """Policy tags a create or set-tag request would write: the policy judges moves between
    projects. A key that differs from a policy tag key only by case is refused: a store with
    a case-insensitive collation would take it for the policy tag."""
    tags: dict[str, str] = {}
    raw = params.get("tags")
    if isinstance(raw, list):
        for item in raw:
            if isinstance(item, dict) and isinstance(item.get("key"), str):
                tags[item["key"]] = str(item.get("value", ""))
    elif isinstance(raw, dict):
        tags.update({str(k): str(v) for k, v in raw.items()})
    key = params.get("key")
    if isinstance(key, str):
        tags[key] = str(params.get("value", ""))
    for name in tags:
        if name.lower().startswith(POLICY_TAG_PREFIX) and name != name.lower():
            raise BadRequest(
                f"tag key {name!r} differs from a policy tag key only by case; "
                f"policy tag keys are lower-case ({name.lower()})"
            )
    return {k: v for k, v in tags.items() if k.startswith(POLICY_TAG_PREFIX)}


# ----------------------------------------------------------------------- artefact paths

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


def artifact(resolver: ResourceResolver, path: str) -> dict[str, Any]:
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
        if served_path(experiment.get("artifact_location") or "") != experiment_id:
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


def source_owner(resolver: ResourceResolver, uri: str) -> dict[str, Any]:
    """What an artefact URI (a model version's source, a prompt URI) reads. Schemes compare
    case-insensitively, as MLflow's URI parsing does; a URI that names no known owner is left
    to the policy's URI rules (ResourceNotFound: nothing further to decide)."""
    scheme, _, rest = uri.partition(":")
    scheme, parts = scheme.lower(), [p for p in rest.split("/") if p]
    if scheme == "runs" and parts:
        return resolver.run(parts[0])
    if scheme == "models" and parts:
        if parts[0].startswith("m-"):
            return resolver.logged_model(parts[0])
        return {**resolver.registered_model(parts[0].split("@", 1)[0]), "type": "model_version"}
    if scheme == "prompts" and parts:
        return {**resolver.registered_model(parts[0].split("@", 1)[0]), "type": "prompt"}
    served = served_path(uri)
    if served is not None:
        return artifact(resolver, served)
    owner = resolver.experiment_owning_location(uri)
    if owner is None:
        raise ResourceNotFound(uri)
    return {**owner, "type": "artifact", "id": uri}


# ----------------------------------------------------------------------- the lookup table


def _sub_object(kind: str) -> Lookup:
    return lambda resolver, key: resolver.experiment_of(kind, key)


def _typed(kind: str, lookup: Lookup) -> Lookup:
    return lambda resolver, key: {**lookup(resolver, key), "type": kind}


LOOKUPS: dict[str, Lookup] = {
    "experiment": ResourceResolver.experiment,
    "run": ResourceResolver.run,
    "logged_model": ResourceResolver.logged_model,
    "trace": ResourceResolver.trace,
    "registered_model": ResourceResolver.registered_model,
    "prompt": _typed("prompt", ResourceResolver.registered_model),
    "artifact": artifact,
    "source": source_owner,
    "label_schema": _sub_object("label_schema"),
    "dataset": lambda resolver, key: _first_linked(resolver, key),
}
# Id fields that name something of another type than the route's resource.
FIELD_LOOKUPS: dict[str, Lookup] = {
    "experiment_name": ResourceResolver.experiment_by_name,
    "issue_id": _sub_object("issue"),
    "schema_id": _sub_object("label_schema"),
    "queue_id": _sub_object("review_queue"),
}
_VIA_EXPERIMENT = {"run", "logged_model", "trace", "dataset", "scorer", "experiment"}


def _first_linked(resolver: ResourceResolver, dataset_id: str) -> dict[str, Any]:
    linked = resolver.dataset_experiments(dataset_id)
    if not linked:
        raise ResourceNotFound(dataset_id)
    return linked[0]


def missing(kind: str, key: str) -> dict[str, Any]:
    """Indistinguishable from a resource the caller may not see: no existence oracle."""
    return {
        "type": kind,
        "id": key,
        "missing": True,
        "project": None,
        "classification": None,
        "owner": None,
        "tags": {},
    }


def _look_up(lookup: Lookup | None, kind: str, resolver: ResourceResolver, key: str) -> dict:
    if lookup is None:
        return missing(kind, key)
    try:
        return lookup(resolver, key)
    except ResourceNotFound:
        return missing(kind, key)


# ----------------------------------------------------------------------- resolution


def resolve(
    spec: RouteSpec, params: Mapping[str, Any], resolver: ResourceResolver, subject_name: str
) -> Resolved:
    """The resources the policy decides on for one request."""
    extra = _request_extras(spec, params, resolver)
    resolved = _primary(spec, params, resolver, subject_name, extra)
    if extra.get("uri") in PROMPT_SOURCES and _prompt_version(params):
        del resolved.resource["uri"]  # a prompt version's placeholder, not a location
    resolved.also += _secondaries(spec, params, resolver)
    if spec.ids and spec.resource != "model_version" and named_list(params, spec.ids) is None:
        resolved.asked = pick(params, spec.ids)
    return resolved


def _prompt_version(params: Mapping[str, Any]) -> bool:
    """A model version MLflow creates for a prompt (tagged so; its source is a placeholder)."""
    tags = params.get("tags")
    return isinstance(tags, list) and any(
        isinstance(t, dict) and t.get("key") == PROMPT_TAG and str(t.get("value")).lower() == "true"
        for t in tags
    )


SERVER_TRACE_TAGS = frozenset({"mlflow.artifactlocation"})


def _tag_keys(params: Mapping[str, Any]) -> list[str]:
    """Every tag key a trace request writes: `key`, `tags` (list or map), and the tags of a
    v3 trace_info."""
    keys: list[str] = []
    info = params.get("trace")
    nested = info.get("trace_info") if isinstance(info, dict) else None
    for raw in (params.get("tags"), nested.get("tags") if isinstance(nested, dict) else None):
        if isinstance(raw, list):
            keys += [str(t.get("key")) for t in raw if isinstance(t, dict)]
        elif isinstance(raw, dict):
            keys += [str(k) for k in raw]
    if isinstance(params.get("key"), str):
        keys.append(params["key"])
    return keys


def refuse_server_trace_tags(params: Mapping[str, Any]) -> None:
    """`mlflow.artifactLocation` says where MLflow reads a trace's data and attachments from;
    only the server sets it (at trace start). A client-written value would point the server
    at any URI, other experiments' artefacts and local files included."""
    for key in _tag_keys(params):
        if key.lower() in SERVER_TRACE_TAGS:
            raise BadRequest(
                f"the trace tag {key!r} is set by the server (where the trace's data is "
                "stored); a client may not write it"
            )


def _request_extras(
    spec: RouteSpec, params: Mapping[str, Any], resolver: ResourceResolver
) -> dict[str, Any]:
    """What the request asks to write that the policy judges on any resource: policy tags,
    a storage URI."""
    extra: dict[str, Any] = {}
    if spec.endpoint.startswith("mlflow.traces."):
        refuse_server_trace_tags(params)
    new_tags = requested_tags(params)
    if new_tags:
        extra["new_tags"] = new_tags
    uri = next(
        (str(params[n]) for n in ("artifact_location", "source", "url") if params.get(n)), None
    )
    if uri is not None:
        extra["uri"] = uri
        if spec.endpoint == "mlflow.experiments.create":
            check_new_artifact_location(resolver, uri)
    return extra


def _primary(
    spec: RouteSpec,
    params: Mapping[str, Any],
    resolver: ResourceResolver,
    subject_name: str,
    extra: dict[str, Any],
) -> Resolved:
    kind = spec.resource
    composite = kind == "model_version"  # named by (name, version) together
    many = named_list(params, spec.ids) if spec.ids and not composite else None
    if spec.listing:
        # A listing inside one named parent (the issues, schemas or queues of one experiment)
        # is a read of that parent; any other listing is narrowed per item (listings/).
        parent = pick(params, spec.ids) if spec.ids else None
        if parent is not None and many is not None:
            raise AmbiguousRequest(f"{' / '.join(spec.ids)} name both one parent and a list")
        if parent is None:
            return Resolved({"type": kind, "listing": True, **extra})
    if many is not None:
        return _each(kind, many, resolver, extra)
    if composite:
        name, version = pick(params, ("name",)), pick(params, ("version",))
        if name and version:
            try:
                return Resolved({**resolver.model_version(name, version), **extra})
            except ResourceNotFound:
                return Resolved({**missing(kind, f"{name}/{version}"), **extra})
        if name:
            return Resolved(
                {
                    **_look_up(LOOKUPS["registered_model"], kind, resolver, name),
                    "type": kind,
                    **extra,
                }
            )
        return _new(kind, None, subject_name, extra)
    key = pick(params, spec.ids) if spec.ids else None
    if key is not None:
        if kind == "dataset":
            return _dataset(spec, resolver, key, extra)
        lookup = FIELD_LOOKUPS.get(spec.ids[0]) or LOOKUPS.get(kind)
        if lookup is None and kind in _VIA_EXPERIMENT and spec.ids[0] == "experiment_id":
            # something inside a named experiment (a scorer): judged by that experiment
            found = _look_up(LOOKUPS["experiment"], kind, resolver, key)
            return Resolved({**found, "type": kind, "id": None, **extra})
        return Resolved({**_look_up(lookup, kind, resolver, key), **extra})
    if kind in _VIA_EXPERIMENT and (experiment_id := pick(params, ("experiment_id",))):
        found = _look_up(LOOKUPS["experiment"], kind, resolver, experiment_id)
        return Resolved({**found, "type": kind, "id": None, **extra})
    if spec.ids:
        # The route names its resource but the request does not say which: fail closed, as
        # for a missing resource.
        return Resolved({**missing(kind, ""), **extra})
    return _new(kind, None, subject_name, extra)


def _new(kind: str, key: str | None, subject_name: str, extra: dict[str, Any]) -> Resolved:
    """Something new (or server-wide): described by what the request asks for."""
    new_tags = extra.get("new_tags", {})
    return Resolved(
        {
            "type": kind,
            "id": key,
            "project": new_tags.get(PROJECT_TAG),
            "classification": new_tags.get(CLASSIFICATION_TAG),
            "owner": subject_name,
            "tags": {},
            "creating": key is None,
            **extra,
        }
    )


def _dataset(
    spec: RouteSpec, resolver: ResourceResolver, key: str, extra: dict[str, Any]
) -> Resolved:
    """Read through any experiment a dataset is linked to (as its listing shows it); changed
    only with the right on every one (a change reaches them all)."""
    try:
        linked = resolver.dataset_experiments(key)
    except ResourceNotFound:
        linked = []
    if not linked:
        return Resolved({**missing("dataset", key), **extra})
    first, others = {**linked[0], **extra}, linked[1:]
    if spec.access == "read":
        return Resolved(first, any_of=others)
    return Resolved(first, also=[(other, None) for other in others])


def _each(kind: str, ids: list[str], resolver: ResourceResolver, extra: dict[str, Any]) -> Resolved:
    if not ids:  # an empty list names nothing: judged as the bare resource type
        return Resolved({**missing(kind, ""), **extra})
    lookup = LOOKUPS.get(kind)
    resources = [_look_up(lookup, kind, resolver, item) for item in ids]
    return Resolved({**resources[0], **extra}, also=[(r, None) for r in resources[1:]])


def _secondaries(
    spec: RouteSpec, params: Mapping[str, Any], resolver: ResourceResolver
) -> list[tuple[dict[str, Any], str | None]]:
    found: list[tuple[dict[str, Any], str | None]] = []
    for named in secondary(spec.endpoint):
        named_values = [
            v
            for value in values_at(params, named.field)
            for v in (value if isinstance(value, list) else [value])
        ]
        values = [str(v) for v in named_values if _scalar(v)]
        for value in _bounded(named.field, values):
            resource = _secondary(named, resolver, value)
            if resource is not None:
                found.append(({**resource, "named_by": named.field}, named.access))
    return found


def _secondary(named: NamedId, resolver: ResourceResolver, value: str) -> dict | None:
    try:
        return LOOKUPS[named.kind](resolver, value)
    except ResourceNotFound:
        if named.may_be_new:
            return None  # nothing exists to act on (a new trace)
        if named.kind == "source":
            named_thing = source_key(value)
            # a storage URI owned by no experiment is left to the URI rules; a missing run or
            # model reads exactly like one the caller may not see
            return missing(*named_thing) if named_thing else None
        return missing(named.kind, value)


def source_key(uri: str) -> tuple[str, str] | None:
    """(resource type, key) an artefact URI names by a scheme of this server, else None."""
    scheme, _, rest = uri.partition(":")
    parts = [p for p in rest.split("/") if p]
    if scheme.lower() not in _NAMING_SCHEMES or not parts:
        return None
    if scheme.lower() == "runs":
        return "run", parts[0]
    if scheme.lower() == "prompts":
        return "prompt", parts[0].split("@", 1)[0]
    if parts[0].startswith("m-"):
        return "logged_model", parts[0]
    return "model_version", parts[0].split("@", 1)[0]
