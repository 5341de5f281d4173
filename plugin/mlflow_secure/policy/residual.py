"""A residual in normal form: few, small conjunctions of set-membership tests.

OPA's partial evaluation expands every rule body it can: for a subject with two projects and
internal clearance the bundled read rule leaves ~50 conjunctions, the cross product of
"project is X", "classification is one of these or none" and the ways of saying "no project".
A database evaluates each one per row, so the residual is first brought to a normal form:

* each test of an attribute becomes `Within(field, values)` ("the attribute is one of
  values", None standing for null), negated or not, with Rego's meaning on the attribute
  domain the listings guarantee (null or a non-empty string: `== ""` never holds, `not
  input.resource.x` never holds, `is_string` means "not null");
* the tests of one field inside a conjunction are intersected; an empty one drops the
  conjunction, a conjunction with no tests left holds always;
* conjunctions equal but for the values of one field merge into one (the union), and a
  conjunction implied by a smaller one goes.

For the bundled policy this leaves one conjunction per project role plus one for owned
items, whatever the number of classifications. Tests of policy tags (`Tagged`) are kept as
they come: they are rare, and their SQL is an EXISTS over the tag rows.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from mlflow_secure.policy.partial import (
    Call,
    Column,
    Const,
    Residual,
    Tag,
    TagMap,
    Term,
    Untranslatable,
    Var,
)


@dataclass(frozen=True)
class Within:
    """`field` is one of `values` (None: null); `negated`: it is not."""

    field: str
    values: frozenset
    negated: bool = False


@dataclass(frozen=True)
class Tagged:
    """A call on one policy tag's value (`Tag` among `args`): true when the item has the tag
    and the call holds of its value; `negated`: not so."""

    call: Call


Test = Within | Tagged
Conjunction = frozenset  # of Test
NormalForm = tuple[Conjunction, ...]  # OR of conjunctions; () never holds


def normal_form(found: Residual) -> NormalForm:
    conjunctions = []
    for calls in found:
        conjunction = _conjunction(calls)
        if conjunction is not None:
            conjunctions.append(conjunction)
    return _minimal(_merged(set(conjunctions)))


# ----------------------------------------------------------------- one conjunction


def _conjunction(calls: tuple[Call, ...]) -> Conjunction | None:
    """The tests of one conjunction, or None when it can never hold."""
    uses = Counter(t.name for call in calls for t in call.args if isinstance(t, Var))
    tests: list[Test] = []
    for call in calls:
        test = _test(call, uses)
        if test is False:
            return None
        if test is not True:
            tests.append(test)
    return _intersected(tests)


def _test(call: Call, uses: Counter) -> Test | bool:
    bound = _binding(call, uses)
    if bound is not None:  # `x = input.resource.f`: f is defined
        return Tagged(Call(None, (bound,))) if isinstance(bound, Tag) else True
    if any(isinstance(t, Var) for t in call.args):
        raise Untranslatable("a variable shared between conditions")
    if any(isinstance(t, TagMap) for t in call.args):
        raise Untranslatable("a comparison of the whole tag map")
    tags = [t for t in call.args if isinstance(t, Tag)]
    if len(tags) > 1:
        raise Untranslatable("a comparison of two tags")
    if tags:
        return Tagged(call)
    columns = [t for t in call.args if isinstance(t, Column)]
    if not columns:
        holds = ground(call.function, [t.value for t in call.args])  # type: ignore[union-attr]
        return holds != call.negated
    if len(columns) > 1:
        raise Untranslatable("a comparison of two attributes")
    within = _within(call, columns[0])
    if isinstance(within, bool):
        return within != call.negated
    return Within(within.field, within.values, within.negated != call.negated)


def _binding(call: Call, uses: Counter) -> Term | None:
    """`x = input.resource.field` with x used nowhere else: the field's being defined."""
    if call.negated or call.function not in {"eq", "equal"} or len(call.args) != 2:
        return None
    left, right = call.args
    for var, other in ((left, right), (right, left)):
        if isinstance(var, Var) and uses[var.name] == 1 and not isinstance(other, Var | Const):
            return other
    return None


def _within(call: Call, column: Column) -> Within | bool:
    """One call on one attribute, before its own negation."""
    function, others = call.function, [t for t in call.args if t is not column]
    if function is None:
        return True  # a bare attribute: defined, a string or null, never false
    if function == "is_string" and not others:
        return Within(column.field, frozenset({None}), negated=True)
    if function == "is_null" and not others:
        return Within(column.field, frozenset({None}))
    if len(others) != 1 or not isinstance(others[0], Const):
        raise Untranslatable(f"the call {function} with {len(call.args)} arguments")
    value = others[0].value
    if function in {"eq", "equal", "neq"}:
        values = _domain({value})
        return Within(column.field, values, negated=function == "neq")
    if function == "internal.member_2" and call.args[0] is column:
        if not isinstance(value, frozenset):
            raise Untranslatable("membership in something other than a constant set")
        return Within(column.field, _domain(value))
    raise Untranslatable(f"the call {function} on an attribute")


def _domain(values: Any) -> frozenset:
    """The values an attribute can take among `values`: null and non-empty strings."""
    return frozenset(v for v in values if v is None or (isinstance(v, str) and v != ""))


def _intersected(tests: list[Test]) -> Conjunction | None:
    fields: dict[str, frozenset | None] = {}
    excluded: dict[str, frozenset] = {}
    others: list[Test] = []
    for test in tests:
        if isinstance(test, Within) and test.negated:
            excluded[test.field] = excluded.get(test.field, frozenset()) | test.values
        elif isinstance(test, Within):
            known = fields.get(test.field)
            fields[test.field] = test.values if known is None else known & test.values
        else:
            others.append(test)
    result: set[Test] = set(others)
    for field, values in fields.items():
        allowed = values - excluded.pop(field, frozenset())  # type: ignore[operator]
        if not allowed:
            return None
        result.add(Within(field, allowed))
    result |= {Within(field, values, True) for field, values in excluded.items() if values}
    return frozenset(result)


# ----------------------------------------------------------------- the disjunction


def _merged(conjunctions: set[Conjunction]) -> set[Conjunction]:
    """Merge conjunctions equal but for one field's values, until none are left to merge."""
    while True:
        groups: dict[tuple[Conjunction, str], list[tuple[Conjunction, Within]]] = {}
        for conjunction in conjunctions:
            for test in conjunction:
                if isinstance(test, Within) and not test.negated:
                    groups.setdefault((conjunction - {test}, test.field), []).append(
                        (conjunction, test)
                    )
        mergeable = next(((k, v) for k, v in groups.items() if len(v) > 1), None)
        if mergeable is None:
            return conjunctions
        (rest, field), members = mergeable
        for conjunction, _ in members:
            conjunctions.discard(conjunction)
        union = frozenset().union(*(test.values for _, test in members))
        conjunctions.add(rest | {Within(field, union)})


def _minimal(conjunctions: set[Conjunction]) -> NormalForm:
    """Drop conjunctions implied by another (a superset of its tests holds less often)."""
    ordered = sorted(conjunctions, key=lambda c: (len(c), sorted(map(repr, c))))
    kept: list[Conjunction] = []
    for conjunction in ordered:
        if not any(smaller <= conjunction for smaller in kept):
            kept.append(conjunction)
    return tuple(kept)


def ground(function: str | None, values: list[Any]) -> bool:
    """A call on constants, evaluated as Rego would."""
    if function is None:
        return values[0] is not False
    if function in {"eq", "equal"}:
        return rego_equal(*values)
    if function == "neq":
        return not rego_equal(*values)
    if function == "internal.member_2":
        item, collection = values
        return isinstance(collection, frozenset) and any(rego_equal(item, v) for v in collection)
    if function == "is_string":
        return isinstance(values[0], str)
    if function == "is_null":
        return values[0] is None
    raise Untranslatable(f"the call {function} on constants")


def rego_equal(left: Any, right: Any) -> bool:
    def kind(value: Any) -> str:
        if isinstance(value, bool):
            return "boolean"
        if isinstance(value, int | float):
            return "number"
        return type(value).__name__

    return kind(left) == kind(right) and left == right
