"""GraphQL, authorised field by field before MLflow runs it.

MLflow's `/graphql` reads runs, experiments, artefact listings, metric histories, datasets
and model versions, each root field by its own arguments, and aliases let one request batch
many of them. The policy allowed the request as a filtered listing; here the document is
judged the way graphql-core will run it: parsed, held to MLflow's batching limits (at least),
validated against MLflow's schema, its operation chosen by `operationName`, its variables
coerced and its fragments expanded by graphql-core's own field collection. Then:

* every root field is mapped to what it reads (`ROOT_FIELDS`), and every nested field with a
  resolver of its own is classified (`NESTED_FIELDS`); anything else is refused, so MLflow
  gaining a field never widens access;
* direct reads (a run, an experiment, a run's artefacts or metric histories) must all be
  readable or nothing reaches MLflow (403); a missing resource is refused like a forbidden one;
* searches naming experiments (runs, datasets) keep only the readable ones, written into the
  document as a literal; when nothing at all is left to read, the front door answers itself;
* model versions cross into the registry: those of one named run are checked one by one;
  elsewhere (a free-form search, the model versions of searched runs) only a caller the policy
  lets list the whole registry unfiltered (administrators, auditors) gets them.

The policy is asked once, about everything the document reads. MLflow is then sent a
canonical JSON body holding exactly the request judged here, never the client's raw body, so
it cannot run anything else (a GET's body, a field only one JSON parser saw); a rewritten
document is judged again and must read exactly what was allowed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import replace
from typing import Any

from graphql import (
    GraphQLInputObjectType,
    GraphQLList,
    GraphQLNonNull,
    ast_from_value,
    execute_sync,
    print_ast,
)
from graphql.language import SKIP, Visitor, ast, visit

from mlflow_secure.request.listings.core import JsonReply, ListingError, ListingRequest, Rewrite
from mlflow_secure.request.listings.graphql_document import (
    ANSWERED_HERE,
    MAX_RUN_MODEL_VERSIONS,
    NESTED_FIELDS,
    PAGE,
    REGISTRY_ID,
    ROOT_FIELDS,
    WHOLE_REGISTRY,
    Analysis,
    Reads,
    Refused,
    RootField,
    analyse,
    has_own_resolver,
    mlflow_schema,
    read_request,
)
from mlflow_secure.request.lookups import ResourceNotFound

# ------------------------------------------------------------------------- the decision


def _denied(message: str) -> JsonReply:
    # `data` and `errors` as GraphQL clients read them: the UI shows the message (with
    # `"data": null` it shows only the status code; without `errors` it spins forever)
    payload = {"error_code": "PERMISSION_DENIED", "message": message, "data": {}}
    return JsonReply(403, json.dumps({**payload, "errors": [message]}).encode())


def _unreadable(path: str) -> str:
    return (
        f"Permission denied: GraphQL field {path} reads something that does not exist or "
        "that you may not read."
    )


def _registry_store(resolver: Any) -> Any:
    # ResourceResolver keeps the registry store private; it is the one MLflow serves from.
    return resolver.registry_store()


def run_model_versions(resolver: Any, run_id: str) -> list[tuple[str, str]] | None:
    """(name, version) of every model version registered from a run; None: cannot tell."""
    try:
        real_id = resolver.tracking_store().get_run(run_id).info.run_id  # as MLflow filters
        if not real_id or "'" in real_id or "\\" in real_id:
            return None
        registry, found, token = _registry_store(resolver), [], None
        while True:
            page = registry.search_model_versions(
                filter_string=f"run_id = '{real_id}'", max_results=PAGE, page_token=token
            )
            found += [(v.name, str(v.version)) for v in page]
            token = page.token
            if not token:
                return found
            if len(found) >= MAX_RUN_MODEL_VERSIONS:
                return None
    except Exception:  # a registry that cannot answer cannot vouch for anything
        return None


class _Resources:
    """Everything the document reads, each under a unique id, for the one filter call."""

    def __init__(self, resolver: Any) -> None:
        self.resolver = resolver
        self.found: dict[str, dict[str, Any] | None] = {}  # None: does not exist
        self.of_run: dict[str, list[str] | None] = {}
        self.permitted: AbstractSet[str] = frozenset()

    def want(self, kind: str, key: str, load: Callable[..., dict[str, Any]], *args: Any) -> str:
        uid = f"{kind}:{key}"
        if uid not in self.found:
            try:
                self.found[uid] = {**load(*args), "id": uid}
            except ResourceNotFound:
                self.found[uid] = None
        return uid

    def add(self, reads: Reads) -> None:
        resolver = self.resolver
        for experiment_id in (*reads.experiments, *(reads.searched or ())):
            self.want("experiment", experiment_id, resolver.experiment, experiment_id)
        for run_id in reads.runs:
            uid = self.want("run", run_id, resolver.run, run_id)
            if reads.run_model_versions and self.found[uid] and run_id not in self.of_run:
                versions = run_model_versions(resolver, run_id)
                self.of_run[run_id] = (
                    None
                    if versions is None
                    else [
                        self.want("model_version", f"{n}/{v}", resolver.model_version, n, v)
                        for n, v in versions
                    ]
                )
        if reads.registry:
            self.found[REGISTRY_ID] = dict(WHOLE_REGISTRY)

    def ask(self, listing: ListingRequest) -> None:
        self.permitted = listing.allowed([r for r in self.found.values() if r is not None])

    def readable(self, uid: str) -> bool:
        return self.found.get(uid) is not None and uid in self.permitted


def _judge(field: RootField, resources: _Resources) -> tuple[str, ...] | None:
    """The experiment ids a search keeps (None: not a search); refuses unreadable reads."""
    reads = field.reads
    direct = [f"experiment:{i}" for i in reads.experiments] + [f"run:{i}" for i in reads.runs]
    if not all(resources.readable(uid) for uid in direct):
        raise Refused(_unreadable(field.name))
    if reads.registry and not resources.readable(REGISTRY_ID):
        raise Refused(
            f"Permission denied: GraphQL field {reads.registry[0]} reads model versions "
            "across the whole registry, which only callers who may list every model version "
            "can do; use the REST model-versions search (or mlflowGetRun for one run's)."
        )
    if reads.run_model_versions:
        for run_id in reads.runs:
            versions = resources.of_run.get(run_id)
            if versions is None or not all(resources.readable(uid) for uid in versions):
                raise Refused(_unreadable(f"{field.name}.run.modelVersions"))
    if reads.searched is None:
        return None
    return tuple(i for i in reads.searched if resources.readable(f"experiment:{i}"))


# ------------------------------------------------------------------------- the answer


def _literal(value: Any, type_: Any) -> ast.ValueNode:
    """A coerced argument value written back as a GraphQL literal of its input type."""
    if isinstance(type_, GraphQLNonNull):
        return _literal(value, type_.of_type)
    if value is None:
        return ast.NullValueNode()
    if isinstance(type_, GraphQLList):
        return ast.ListValueNode(values=tuple(_literal(v, type_.of_type) for v in value))
    if isinstance(type_, GraphQLInputObjectType):
        return ast.ObjectValueNode(
            fields=tuple(
                ast.ObjectFieldNode(
                    name=ast.NameNode(value=name), value=_literal(value[key], f.type)
                )
                for name, f in type_.fields.items()
                if (key := f.out_name or name) in value
            )
        )
    node = ast_from_value(value, type_)
    if node is None:
        raise ValueError(f"cannot write a {type_} back")
    return node


class _VariablesUsed(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def enter_variable_definition(self, *_args: Any) -> Any:
        return SKIP

    def enter_variable(self, node: ast.VariableNode, *_args: Any) -> None:
        self.names.add(node.name.value)


def _reachable(analysis: Analysis) -> list[ast.FragmentDefinitionNode]:
    names: set[str] = set()
    stack = [analysis.operation.selection_set]
    while stack:
        for selection in stack.pop().selections:
            if isinstance(selection, ast.FragmentSpreadNode):
                name = selection.name.value
                if name not in names and name in analysis.fragments:
                    names.add(name)
                    stack.append(analysis.fragments[name].selection_set)
            elif selection.selection_set is not None:
                stack.append(selection.selection_set)
    return [f for f in analysis.fragments.values() if f.name.value in names]


def _body(query: str, variables: Any, operation_name: Any) -> bytes:
    payload = {"query": query, "variables": variables, "operationName": operation_name}
    return json.dumps(payload).encode()


def _requested(field: RootField) -> list[Any]:
    return list((field.args.get("input") or {}).get("experiment_ids") or [])


def _narrowed_args(field: RootField, ids: tuple[str, ...]) -> dict[str, Any]:
    return {**field.args, "input": {**field.args["input"], "experiment_ids": list(ids)}}


def _rewrite(analysis: Analysis, changed: Mapping[str, tuple[str, ...]]) -> bytes:
    """Only the operation MLflow will run, narrowed searches' experiment ids as literals."""
    for field in analysis.fields:
        if field.key not in changed:
            continue
        input_type = analysis.root_type.fields[field.name].args["input"].type
        literal = _literal(_narrowed_args(field, changed[field.key])["input"], input_type)
        for node in field.nodes:
            node.arguments = tuple(
                ast.ArgumentNode(name=a.name, value=literal) if a.name.value == "input" else a
                for a in node.arguments
            )
    operation = analysis.operation
    fragments = _reachable(analysis)
    used = _VariablesUsed()
    for definition in (operation, *fragments):
        visit(definition, used)
    operation.variable_definitions = tuple(
        d
        for d in operation.variable_definitions or ()
        if isinstance(d, ast.VariableDefinitionNode) and d.variable.name.value in used.names
    )
    document = ast.DocumentNode(definitions=(operation, *fragments))
    variables = analysis.variables
    if variables is not None:
        variables = {k: v for k, v in variables.items() if k in used.names}
    return _body(print_ast(document), variables, analysis.operation_name)


def _verified(analysis: Analysis, changed: Mapping[str, tuple[str, ...]], body: bytes) -> bool:
    """The rewritten request, judged again, reads exactly what was decided."""
    expected = [
        (
            f.key,
            f.name,
            _narrowed_args(f, changed[f.key]),
            replace(f.reads, searched=changed[f.key]),
        )
        if f.key in changed
        else (f.key, f.name, f.args, f.reads)
        for f in analysis.fields
    ]
    try:
        again = analyse(*read_request(json.loads(body), "POST"))
    except (ListingError, Refused):
        return False
    return [(f.key, f.name, f.args, f.reads) for f in again.fields] == expected


class _EmptySearches:
    """Middleware answering searches left with no experiment as MLflow answers an empty one."""

    def __init__(self, keys: set[str]) -> None:
        self.keys = keys

    def resolve(self, next_: Callable, root: Any, info: Any, **args: Any) -> Any:
        if info.path.prev is None and info.path.key in self.keys:
            from mlflow.protos.service_pb2 import SearchDatasets, SearchRuns

            empty = {"mlflowSearchRuns": SearchRuns, "mlflowSearchDatasets": SearchDatasets}
            return empty[info.field_name].Response()
        return next_(root, info, **args)


def _answer_here(analysis: Analysis, emptied: set[str]) -> JsonReply:
    """The response MLflow would give, for a document reading nothing: no MLflow needed."""
    result = execute_sync(
        mlflow_schema(),
        analysis.document,
        variable_values=analysis.variables,
        operation_name=analysis.operation_name,
        middleware=[_EmptySearches(emptied)],
    )
    errors = [error.message for error in result.errors] if result.errors else None
    return JsonReply(200, json.dumps({"data": result.data, "errors": errors}).encode())


def narrow(listing: ListingRequest) -> Rewrite | JsonReply:
    """Refuse, answer, or pass on (canonical and narrowed) one GraphQL request."""
    try:
        analysis = analyse(*read_request(listing.params, listing.method.upper()))
        resources = _Resources(listing.resolver)
        for field in analysis.fields:
            resources.add(field.reads)
        resources.ask(listing)
        kept = {f.key: _judge(f, resources) for f in analysis.fields}
    except Refused as exc:
        return _denied(str(exc))
    answered_here = {f.key for f in analysis.fields if f.name in ANSWERED_HERE}
    emptied = {f.key for f in analysis.fields if f.reads.searched and not kept[f.key]}
    if emptied and answered_here | emptied == {f.key for f in analysis.fields}:
        return _answer_here(analysis, emptied)
    changed = {
        f.key: kept[f.key]
        for f in analysis.fields
        if kept[f.key] is not None and list(kept[f.key]) != _requested(f)
    }
    if not changed:
        return Rewrite(body=_body(analysis.query, analysis.variables, analysis.operation_name))
    body = _rewrite(analysis, changed)
    if not _verified(analysis, changed, body):
        payload = {"error_code": "INTERNAL_ERROR", "message": "GraphQL narrowing failed."}
        return JsonReply(500, json.dumps(payload).encode())
    return Rewrite(body=body)


__all__ = [
    "NESTED_FIELDS",
    "REGISTRY_ID",
    "ROOT_FIELDS",
    "WHOLE_REGISTRY",
    "analyse",
    "has_own_resolver",
    "mlflow_schema",
    "narrow",
    "run_model_versions",
]
