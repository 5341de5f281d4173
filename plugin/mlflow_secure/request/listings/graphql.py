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
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from functools import cache
from typing import Any

from graphql import (
    GraphQLError,
    GraphQLInputObjectType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    OperationType,
    ast_from_value,
    execute_sync,
    get_named_type,
    is_leaf_type,
    parse,
    print_ast,
    validate,
)
from graphql.execution.collect_fields import collect_fields, collect_sub_fields
from graphql.execution.execute import ExecutionContext
from graphql.execution.values import get_argument_values
from graphql.language import SKIP, Visitor, ast, visit

from mlflow_secure.request.listings.core import JsonReply, ListingError, ListingRequest, Rewrite
from mlflow_secure.request.lookups import ResourceNotFound

# MLflow's own defaults (graphql_no_batching.py), fixed here: an operator raising MLflow's
# limits through its environment variables does not raise ours.
MAX_ROOT_FIELDS = 10  # root field selections in the whole document, fragments expanded
MAX_ALIASES = 10  # aliased selections at one level
MAX_SAME_FIELD = 10  # selections of one field at one level, aliased or not
MAX_DEPTH = 10
MAX_SELECTIONS = 1000
MAX_TOKENS = 10_000  # parsing stops here, before any other work
MAX_RUN_MODEL_VERSIONS = 1000  # a run with more cannot have its model versions checked
_PAGE = 1000

META_FIELDS = frozenset({"__typename", "__schema", "__type"})  # MLflow's schema is public
ANSWERED_HERE = META_FIELDS | {"test", "testMutation"}  # no store behind them
REGISTRY_ID = "registry:model_versions"
# The whole registry as one unfiltered listing: the policy grants it to those who see
# everything (administrators, auditors), never by project or ownership.
WHOLE_REGISTRY = {"type": "model_version", "listing": True, "filtered": False, "id": REGISTRY_ID}


class _Refused(Exception):
    """The document reads something the caller may not read: answered with 403."""


@dataclass(frozen=True)
class Reads:
    """What one root field reads, from its arguments and nested selections."""

    experiments: tuple[str, ...] = ()
    runs: tuple[str, ...] = ()
    searched: tuple[str, ...] | None = None  # experiment ids a search names: narrowed
    registry: tuple[str, ...] = ()  # paths of fields reading anywhere in the registry
    run_model_versions: bool = False  # the model versions of `runs`, checked one by one


def _ids(*values: Any) -> tuple[str, ...]:
    found: list[str] = []
    for value in values:
        items = value if isinstance(value, list) else [value]
        found += [str(item) for item in items if item not in (None, "")]
    return tuple(dict.fromkeys(found))


def _given(args: Mapping[str, Any]) -> Mapping[str, Any]:
    return args.get("input") or {}


def _experiment(args: Mapping[str, Any]) -> Reads:
    return Reads(experiments=_ids(_given(args).get("experiment_id")))


def _run(args: Mapping[str, Any]) -> Reads:
    # MLflow reads `run_id or run_uuid`: both are checked.
    given = _given(args)
    return Reads(runs=_ids(given.get("run_id"), given.get("run_uuid")))


def _runs(args: Mapping[str, Any]) -> Reads:
    return Reads(runs=_ids(_given(args).get("run_ids")))


def _search(args: Mapping[str, Any]) -> Reads:
    return Reads(searched=_ids(_given(args).get("experiment_ids")))


def _registry(_args: Mapping[str, Any]) -> Reads:
    return Reads(registry=("mlflowSearchModelVersions",))


def _nothing(_args: Mapping[str, Any]) -> Reads:
    return Reads()


# Every root field of MLflow's schema (Query and Mutation; MLflow's "mutations" are reads),
# and what it reads. tests/unit/test_graphql_listing.py fails when MLflow's schema differs.
ROOT_FIELDS: dict[str, Callable[[Mapping[str, Any]], Reads]] = {
    "mlflowGetExperiment": _experiment,  # input.experimentId → that experiment
    "mlflowGetRun": _run,  # input.runId / runUuid → that run
    "mlflowListArtifacts": _run,  # input.runId / runUuid → that run
    "mlflowGetMetricHistoryBulkInterval": _runs,  # input.runIds → every run
    "mlflowSearchRuns": _search,  # input.experimentIds → narrowed to the readable ones
    "mlflowSearchDatasets": _search,  # input.experimentIds → narrowed to the readable ones
    "mlflowSearchModelVersions": _registry,  # free-form filter → the whole registry
    "test": _nothing,  # echoes its argument
    "testMutation": _nothing,  # echoes its argument
}

SAME = "same"  # stays within the root field's resource
MODEL_VERSIONS = "model_versions"  # the registered models of a run's model versions

# Nested fields with a resolver of their own (all others read an attribute of their parent).
NESTED_FIELDS = {
    ("MlflowRunExtension", "experiment"): SAME,  # the run's own experiment
    ("MlflowRunExtension", "modelVersions"): MODEL_VERSIONS,
    ("MlflowMetricExtension", "value"): SAME,  # NaN → null
}


@cache
def mlflow_schema() -> GraphQLSchema:
    from mlflow.server.graphql.graphql_schema_extensions import schema

    return schema.graphql_schema


def has_own_resolver(field_def: Any) -> bool:
    """Whether a field runs code of its own (graphene's default reads its parent's attribute)."""
    from graphene.types.resolver import attr_resolver, dict_or_attr_resolver, dict_resolver

    resolve = field_def.resolve
    defaults = (dict_or_attr_resolver, attr_resolver, dict_resolver)
    return resolve is not None and getattr(resolve, "func", None) not in defaults


# ------------------------------------------------------------------------- the request


@dataclass
class RootField:
    key: str  # response key (alias or name)
    name: str  # the schema's field name: the only part of a document messages repeat
    nodes: list[ast.FieldNode]
    args: dict[str, Any]  # coerced, as the resolver will receive them
    reads: Reads


@dataclass
class Analysis:
    query: str
    variables: dict[str, Any] | None
    operation_name: str | None
    document: ast.DocumentNode
    operation: ast.OperationDefinitionNode
    fragments: dict[str, ast.FragmentDefinitionNode]
    root_type: GraphQLObjectType
    fields: list[RootField]


def _request(params: Mapping[str, Any], method: str) -> tuple[str, Any, Any]:
    """query, variables, operationName: from the JSON body, or a GET's query string."""
    query = params.get("query")
    if not isinstance(query, str) or not query.strip():
        raise ListingError("Invalid GraphQL request: 'query' must hold a GraphQL document.")
    variables = params.get("variables")
    if method != "POST" and isinstance(variables, str):
        try:
            variables = json.loads(variables) if variables.strip() else None
        except ValueError:
            raise ListingError("Invalid GraphQL request: 'variables' is not JSON.") from None
    if variables is not None and not isinstance(variables, dict):
        raise ListingError("Invalid GraphQL request: 'variables' must be a JSON object.")
    operation_name = params.get("operationName")
    if operation_name is not None and not isinstance(operation_name, str):
        raise ListingError("Invalid GraphQL request: 'operationName' must be a string.")
    return query, variables, operation_name


def _where(error: GraphQLError) -> str:
    # Positions only: messages never repeat the request's text.
    location = (error.locations or [None])[0]
    return f" (line {location.line}, column {location.column})" if location else ""


def _expand(
    selection_set: ast.SelectionSetNode,
    fragments: Mapping[str, ast.FragmentDefinitionNode],
    ancestors: frozenset[str],
) -> Iterator[tuple[ast.FieldNode, frozenset[str]]]:
    """The fields of one level, fragments expanded (each once per level, never in a cycle)."""
    spread: set[str] = set()
    queue = deque((selection, ancestors) for selection in selection_set.selections)
    while queue:
        selection, path = queue.popleft()
        if isinstance(selection, ast.FieldNode):
            yield selection, path
        elif isinstance(selection, ast.InlineFragmentNode):
            queue.extend((s, path) for s in selection.selection_set.selections)
        elif isinstance(selection, ast.FragmentSpreadNode):
            name = selection.name.value
            if name in path or name in spread or name not in fragments:
                continue
            spread.add(name)
            inner = path | {name}
            queue.extend((s, inner) for s in fragments[name].selection_set.selections)


def check_limits(document: ast.DocumentNode) -> None:
    """Alias batching, depth and size limits over the whole document (as MLflow counts)."""
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, ast.FragmentDefinitionNode)
    }
    root_fields = selections = 0
    for operation in document.definitions:
        if not isinstance(operation, ast.OperationDefinitionNode):
            continue
        stack = [(operation.selection_set, 1, frozenset[str]())]
        while stack:
            selection_set, depth, path = stack.pop()
            if depth > MAX_DEPTH:
                raise ListingError(f"GraphQL queries may nest at most {MAX_DEPTH} levels.")
            fields = list(_expand(selection_set, fragments, path))
            selections += len(fields)
            if depth == 1:
                root_fields += len(fields)
            if root_fields > MAX_ROOT_FIELDS:
                raise ListingError(
                    f"GraphQL queries may select at most {MAX_ROOT_FIELDS} root fields."
                )
            if selections > MAX_SELECTIONS:
                raise ListingError(f"GraphQL queries may hold at most {MAX_SELECTIONS} selections.")
            aliases = sum(1 for node, _ in fields if node.alias)
            repeats = max(Counter(node.name.value for node, _ in fields).values(), default=0)
            if aliases > MAX_ALIASES or repeats > MAX_SAME_FIELD:
                raise ListingError(
                    f"GraphQL alias batching is refused: at most {MAX_ALIASES} aliases and "
                    f"{MAX_SAME_FIELD} selections of one field per level."
                )
            stack += [(n.selection_set, depth + 1, p) for n, p in fields if n.selection_set]


def _context(
    schema: GraphQLSchema, document: ast.DocumentNode, variables: Any, operation_name: Any
) -> ExecutionContext:
    """graphql-core's own choice of operation and coercion of variables."""
    context = ExecutionContext.build(
        schema, document, raw_variable_values=variables, operation_name=operation_name
    )
    if not isinstance(context, list):
        return context
    message = context[0].message
    if message.startswith("Must provide operation name"):
        reason = "the document holds several operations: name one with 'operationName'"
    elif message.startswith(("Unknown operation", "Must provide an operation")):
        reason = "'operationName' names no operation of the document"
    else:
        reason = "'variables' do not match the operation's variable definitions"
    raise ListingError(f"Invalid GraphQL request: {reason}.")


def analyse(query: str, variables: Any, operation_name: Any) -> Analysis:
    """The document as graphql-core will run it, and what each root field reads."""
    schema = mlflow_schema()
    try:
        document = parse(query, max_tokens=MAX_TOKENS)
    except GraphQLError as exc:
        where = _where(exc)
        raise ListingError(
            f"Invalid GraphQL request: the document does not parse{where}."
        ) from None
    check_limits(document)
    errors = validate(schema, document)
    if errors:
        raise ListingError(
            "Invalid GraphQL request: the document does not validate against MLflow's schema"
            f"{_where(errors[0])}."
        )
    context = _context(schema, document, variables, operation_name)
    operation = context.operation
    root_type = {
        OperationType.QUERY: schema.query_type,
        OperationType.MUTATION: schema.mutation_type,
    }.get(operation.operation)
    if root_type is None:
        raise ListingError("Invalid GraphQL request: subscriptions are not served.")
    collected = collect_fields(
        schema, context.fragments, context.variable_values, root_type, operation.selection_set
    )
    fields = [_root_field(context, root_type, key, nodes) for key, nodes in collected.items()]
    return Analysis(
        query,
        variables,
        operation_name,
        document,
        operation,
        dict(context.fragments),
        root_type,
        fields,
    )


def _root_field(
    context: ExecutionContext, root_type: GraphQLObjectType, key: str, nodes: list[ast.FieldNode]
) -> RootField:
    name = nodes[0].name.value
    if name in META_FIELDS:
        return RootField(key, name, nodes, {}, Reads())
    mapped = ROOT_FIELDS.get(name)
    if mapped is None:
        raise _Refused(f"Permission denied: GraphQL field {name} is not served.")
    field_def = root_type.fields[name]  # the document validated
    try:
        args = get_argument_values(field_def, nodes[0], context.variable_values)
    except GraphQLError:
        raise ListingError(f"Invalid GraphQL request: bad arguments for {name}.") from None
    reads = mapped(args)
    named = get_named_type(field_def.type)
    crossings = list(_crossings(context, named, nodes, name)) if _is_object(named) else []
    if crossings and name == "mlflowGetRun":
        reads = replace(reads, run_model_versions=True)
    elif crossings:
        reads = replace(reads, registry=reads.registry + tuple(crossings))
    return RootField(key, name, nodes, args, reads)


def _is_object(named: Any) -> bool:
    if isinstance(named, GraphQLObjectType):
        return True
    if is_leaf_type(named):
        return False
    raise _Refused(
        "Permission denied: GraphQL fields of abstract types are not served."
    )  # none in MLflow's


def _crossings(
    context: ExecutionContext, parent: GraphQLObjectType, nodes: list[ast.FieldNode], path: str
) -> Iterator[str]:
    """Paths of nested fields reading beyond the root field's resource; unknown ones refused."""
    subfields = collect_sub_fields(
        context.schema, context.fragments, context.variable_values, parent, nodes
    )
    for sub_nodes in subfields.values():
        name = sub_nodes[0].name.value
        if name == "__typename":
            continue
        field_def = parent.fields[name]
        where = f"{path}.{name}"
        kind = NESTED_FIELDS.get((parent.name, name))
        if kind is None and has_own_resolver(field_def):
            raise _Refused(f"Permission denied: GraphQL field {where} is not served.")
        if kind == MODEL_VERSIONS:
            yield where
        named = get_named_type(field_def.type)
        if _is_object(named):
            yield from _crossings(context, named, sub_nodes, where)


# ------------------------------------------------------------------------- the decision


def _denied(message: str) -> JsonReply:
    payload = {"error_code": "PERMISSION_DENIED", "message": message}
    return JsonReply(403, json.dumps(payload).encode())


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
                filter_string=f"run_id = '{real_id}'", max_results=_PAGE, page_token=token
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
        self.permitted: set[str] = set()

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
        raise _Refused(_unreadable(field.name))
    if reads.registry and not resources.readable(REGISTRY_ID):
        raise _Refused(
            f"Permission denied: GraphQL field {reads.registry[0]} reads model versions "
            "across the whole registry, which only callers who may list every model version "
            "can do; use the REST model-versions search (or mlflowGetRun for one run's)."
        )
    if reads.run_model_versions:
        for run_id in reads.runs:
            versions = resources.of_run.get(run_id)
            if versions is None or not all(resources.readable(uid) for uid in versions):
                raise _Refused(_unreadable(f"{field.name}.run.modelVersions"))
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
        again = analyse(*_request(json.loads(body), "POST"))
    except (ListingError, _Refused):
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
        analysis = analyse(*_request(listing.params, listing.method.upper()))
        resources = _Resources(listing.resolver)
        for field in analysis.fields:
            resources.add(field.reads)
        resources.ask(listing)
        kept = {f.key: _judge(f, resources) for f in analysis.fields}
    except _Refused as exc:
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
