"""The read rule, partially evaluated: "may this subject read an item with attributes X?"
asked once about an unknown X, answered with conditions on X that a database can evaluate.

OPA's Compile API evaluates `data.mlflow.authz.readable_item` (filter.rego, the rule behind
`filter`) with the subject, the action and the kind of item known, and the item's stored
attributes (`input.resource.<field>`, its policy tags `input.resource.tags[key]`) unknown.
What remains is a disjunction of conjunctions of builtin calls over those attributes (OPA's
JSON syntax tree); this module reads it into a small, closed vocabulary (`Residual`) that the
listing translators turn into SQL. Anything outside that vocabulary (a reference to another
document, a function we do not know, `with`, `every`, support rules) raises `Untranslatable`
naming it, and the caller falls back to asking `filter` about the items (never to an
unfiltered listing).

Why OPA's own syntax tree and not its SQL target (`Accept: application/vnd.opa.sql.*`, built
into OPA since 1.x): our attributes are rows of MLflow's key-value tag tables, not columns,
and the translation must bind values as query parameters rather than splice OPA's quoting
into SQL text. The vocabulary is small; its meaning is pinned by the differential test.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

READ_RULE = "data.mlflow.authz.readable_item"
# The attributes of a listed item the policy reads (experiments.attributes, registry's):
# each is a column for the translator. `tags` is the map of policy tags.
UNKNOWN_FIELDS = ("project", "classification", "owner", "lifecycle_stage")
TAGS_FIELD = "tags"
# Functions the translators know. OPA writes `==` and `=` as eq and `x in s` as member_2.
KNOWN_FUNCTIONS = frozenset({"eq", "equal", "neq", "internal.member_2", "is_string", "is_null"})


class Untranslatable(ValueError):
    """The residual holds something outside the vocabulary (the message names it)."""


@dataclass(frozen=True)
class Column:
    """An attribute of the item: NULL when absent, otherwise a non-empty string."""

    field: str


@dataclass(frozen=True)
class Tag:
    """A policy tag of the item: undefined when absent, otherwise a string (maybe empty)."""

    key: str


@dataclass(frozen=True)
class TagMap:
    """The whole map of policy tags: always defined (a rule may only bind it to a name)."""


@dataclass(frozen=True)
class Const:
    value: Any


@dataclass(frozen=True)
class Var:
    name: str


Term = Column | Tag | TagMap | Const | Var


@dataclass(frozen=True)
class Call:
    """`function(args...)`, or a bare term (function None: true when defined and not false)."""

    function: str | None
    args: tuple[Term, ...]
    negated: bool = False


# A residual: OR over conjunctions, each an AND over calls. () is "never"; ((),) "always".
Residual = tuple[tuple[Call, ...], ...]

Compile = Callable[[str, dict[str, Any], list[str]], dict[str, Any]]


def read_query(known: Mapping[str, Any]) -> str:
    """The query: the read rule applied to one item, its known attributes from
    `input.listed`, the rest unknown."""
    fields = [f'"{name}": input.listed.{name}' for name in known]
    fields += [f'"{name}": input.resource.{name}' for name in (*UNKNOWN_FIELDS, TAGS_FIELD)]
    return f"{READ_RULE}({{{', '.join(fields)}}})"


def residual(
    compile_call: Compile, subject_and_action: dict[str, Any], known: Mapping[str, Any]
) -> Residual:
    """Ask OPA (one Compile API call) and read its answer."""
    policy_input = {**subject_and_action, "listed": dict(known)}
    answer = compile_call(read_query(known), policy_input, ["input.resource"])
    return parse(answer)


def parse(answer: Mapping[str, Any]) -> Residual:
    if answer.get("support"):
        raise Untranslatable("support rules in the residual (a rule OPA could not inline)")
    queries = answer.get("queries") or []
    return tuple(tuple(_expression(e) for e in query) for query in queries)


def _expression(expr: Mapping[str, Any]) -> Call:
    if expr.get("with"):
        raise Untranslatable("a `with` modifier")
    negated = bool(expr.get("negated"))
    terms = expr.get("terms")
    if isinstance(terms, dict):  # a bare term: `input.resource.x`, `not input.resource.x`
        return Call(None, (_term(terms),), negated)
    if not isinstance(terms, list) or not terms or terms[0].get("type") != "ref":
        raise Untranslatable(f"the expression {_show(expr)}")
    function = _function_name(terms[0])
    if function not in KNOWN_FUNCTIONS:
        raise Untranslatable(f"the function {function}")
    return Call(function, tuple(_term(t) for t in terms[1:]), negated)


def _function_name(ref: Mapping[str, Any]) -> str:
    parts = ref.get("value") or []
    names = [p.get("value") for p in parts]
    if not all(isinstance(n, str) for n in names):
        raise Untranslatable(f"the function {_show(ref)}")
    return ".".join(names)


def _term(term: Mapping[str, Any]) -> Term:
    kind, value = term.get("type"), term.get("value")
    if kind in {"null", "boolean", "number", "string"}:
        return Const(None if kind == "null" else value)
    if kind in {"set", "array"}:
        items = [_term(item) for item in value or []]
        if not all(isinstance(item, Const) for item in items):
            raise Untranslatable(f"a collection that is not constant: {_show(term)}")
        return Const(frozenset(_hashable(i.value) for i in items))
    if kind == "var":
        return Var(str(value))
    if kind == "ref":
        return _reference(value or [])
    raise Untranslatable(f"the term {_show(term)}")


def _hashable(value: Any) -> Any:
    if isinstance(value, dict | list):
        raise Untranslatable("a collection of collections")
    return value


def _reference(parts: list[Mapping[str, Any]]) -> Term:
    path = [p.get("value") for p in parts]
    kinds = [p.get("type") for p in parts]
    if path[:2] == ["input", "resource"] and kinds[0] == "var" and kinds[1] == "string":
        rest = path[2:]
        if len(rest) == 1 and kinds[2] == "string" and rest[0] in UNKNOWN_FIELDS:
            return Column(rest[0])
        if len(rest) == 2 and rest[0] == TAGS_FIELD and kinds[3] == "string":
            return Tag(str(rest[1]))
        if rest == [TAGS_FIELD]:
            return TagMap()
    dotted = ".".join(str(p) for p in path)
    raise Untranslatable(f"a rule reading {dotted}")


def _show(node: Any) -> str:
    return json.dumps(node, separators=(",", ":"))[:200]
