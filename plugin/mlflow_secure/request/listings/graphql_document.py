"""A GraphQL request read as MLflow will run it: the limits, every root and nested field
mapped to the resource it reads, and the analysis the narrower decides on."""

from __future__ import annotations

import json
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from functools import cache
from typing import Any

from graphql import (
    GraphQLError,
    GraphQLObjectType,
    GraphQLSchema,
    OperationType,
    get_named_type,
    is_leaf_type,
    parse,
    validate,
)
from graphql.execution.collect_fields import collect_fields, collect_sub_fields
from graphql.execution.execute import ExecutionContext
from graphql.execution.values import get_argument_values
from graphql.language import ast

from mlflow_secure.request.listings.core import ListingError

# MLflow's own defaults (graphql_no_batching.py), fixed here: an operator raising MLflow's
# limits through its environment variables does not raise ours.
MAX_ROOT_FIELDS = 10  # root field selections in the whole document, fragments expanded
MAX_ALIASES = 10  # aliased selections at one level
MAX_SAME_FIELD = 10  # selections of one field at one level, aliased or not
MAX_DEPTH = 10
MAX_SELECTIONS = 1000
MAX_TOKENS = 10_000  # parsing stops here, before any other work
MAX_RUN_MODEL_VERSIONS = 1000  # a run with more cannot have its model versions checked
PAGE = 1000

META_FIELDS = frozenset({"__typename", "__schema", "__type"})  # MLflow's schema is public
ANSWERED_HERE = META_FIELDS | {"test", "testMutation"}  # no store behind them
REGISTRY_ID = "registry:model_versions"
# The whole registry as one unfiltered listing: the policy grants it to those who see
# everything (administrators, auditors), never by project or ownership.
WHOLE_REGISTRY = {"type": "model_version", "listing": True, "filtered": False, "id": REGISTRY_ID}


class Refused(Exception):
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


def read_request(params: Mapping[str, Any], method: str) -> tuple[str, Any, Any]:
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
        raise Refused(f"Permission denied: GraphQL field {name} is not served.")
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
    raise Refused(
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
            raise Refused(f"Permission denied: GraphQL field {where} is not served.")
        if kind == MODEL_VERSIONS:
            yield where
        named = get_named_type(field_def.type)
        if _is_object(named):
            yield from _crossings(context, named, sub_nodes, where)
