"""A listing's read rule as a SQL condition on MLflow's own tables (OPA partial evaluation).

`policy.partial` asks OPA for the residual of the read rule with the item unknown and
`policy.residual` brings it to a normal form of set-membership tests; this module writes that
as one SQLAlchemy condition that MLflow's own search statement can carry, so the store returns
only readable rows, page by page, in MLflow's order. The meaning is exactly what the policy
would answer about each row (the differential test pins it):

* a test of an attribute (project, classification, owner, stage) is "the row has a value in
  this set" (`Attributes.fields`: for tag-backed attributes, `id IN (tag rows of that key,
  non-empty, whose value passes)`), its null case the negation of "the row has a value",
  and "null or in this set" of a tag-backed attribute "the row has no value outside it"
  (one set for the database to build, not two: `Attributes.null_or_in`);
  every clause is true or false, never SQL's NULL, so `NOT` means Rego's `not`;
* a call on a policy tag (`input.resource.tags[key]`, undefined when the item lacks it) is
  "the row has that tag and the call holds of its value", its negation NOT that; a key
  outside the policy-tag prefix is never defined (`filter` is only shown policy tags).

What cannot be translated raises `Untranslatable`: the caller falls back to the batched
filter, with a log line naming the reason, never to an unfiltered result. Only SQLite and
PostgreSQL are trusted to compare tag keys and values byte for byte (MySQL and SQL Server
collations ignore case by default), so other dialects fall back too.

Measured on 10,000 experiments, 1% readable (SQLite, benchmarks/): partial evaluation of the
bundled policy costs OPA ~15 ms and its answer ~5 ms more to read, so normal forms are cached
(`RESIDUALS`); the narrowed id query costs ~2 ms against ~1.5 ms unfiltered with the tag
indexes the app creates (store_indexes.py), ~5.5 ms without them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, false, literal, not_, or_, select, true
from sqlalchemy.sql.elements import ColumnElement

from mlflow_secure.policy.client import CompileRefused
from mlflow_secure.policy.partial import Call, Const, Tag, Untranslatable, residual
from mlflow_secure.policy.residual import NormalForm, Tagged, Test, normal_form
from mlflow_secure.request.lookups import CLASSIFICATION_TAG, OWNER_TAG, PROJECT_TAG
from mlflow_secure.ttl_cache import TtlCache

_logger = logging.getLogger(__name__)
PUSHDOWN_DIALECTS = frozenset({"sqlite", "postgresql"})
POLICY_TAG_PREFIX = "mlflow.secure."
RESIDUAL_TTL_SECONDS = 300.0

Clause = ColumnElement[bool]
# holds(predicate on a value column) → "the row has a value satisfying it" (a clause)
Holds = Callable[[Callable[[Any], Clause]], Clause]


@dataclass(frozen=True)
class Attributes:
    """Where a listing's rows keep the attributes the policy reads, as SQL.

    `fields[f](p)`: the row's attribute f is not null and p holds of it (NOT of that with a
    trivial p: f is null). `tag(key, p)`: the row has the policy tag `key` and p holds of its
    value (which may be empty)."""

    fields: Mapping[str, Holds]
    tag: Callable[[str, Callable[[Any], Clause]], Clause]
    # For attributes kept in one tag row per item: "null, or a value in these strings", as
    # one set (the rows whose value is outside them) rather than two (those inside, and all
    # that have a value): measured on 100,000 experiments (PostgreSQL), a classification
    # test built the two sets in full, ~45 ms, where the outside set of a cleared reader is
    # empty.
    null_or_in: Mapping[str, Callable[[list[str]], Clause]] = field(default_factory=dict)


# The attributes kept as tags (the batched filter's `attributes` reads the same keys).
ATTRIBUTE_TAGS = (
    ("project", PROJECT_TAG),
    ("classification", CLASSIFICATION_TAG),
    ("owner", OWNER_TAG),
)


def require_pushdown(dialect: str) -> None:
    if dialect not in PUSHDOWN_DIALECTS:
        raise Untranslatable(f"a {dialect} store (its collation may ignore case)")


def tag_attributes(item: Any, rows: Any, owner: Any, scope: tuple[Clause, ...] = ()) -> Attributes:
    """Attributes kept in one of MLflow's key-value tag tables: `rows` (its key and value
    columns), whose `owner` column names the listed row's `item` column.

    Each test is `item IN (the owners whose tag of that key passes)`, a subquery the database
    evaluates once per statement rather than once per row; `scope` holds the tag rows to
    where the searched rows are (MLflow's workspace clauses)."""

    def tag(key: str, predicate: Callable[[Any], Clause], non_empty: bool = False) -> Clause:
        # the key as a literal: PostgreSQL matches its partial indexes (store_indexes.py)
        kept = [*scope, rows.key == literal(key, literal_execute=True), predicate(rows.value)]
        if non_empty:  # an attribute is null when its tag is absent or empty
            kept.append(rows.value != "")
        return item.in_(select(owner).where(*kept))

    def null_or_in(key: str) -> Callable[[list[str]], Clause]:
        # one row per item and key (the tag tables' primary keys): no non-empty value
        # outside `strings`; a NULL value is outside nothing (NOT IN is NULL), as it is null
        return lambda strings: not_(tag(key, lambda value: value.not_in(strings), non_empty=True))

    fields = {
        name: (lambda predicate, key=key: tag(key, predicate, non_empty=True))
        for name, key in ATTRIBUTE_TAGS
    }
    return Attributes(fields, tag, {name: null_or_in(key) for name, key in ATTRIBUTE_TAGS})


# Normal forms by policy revision, subject, action and listed kind. What invalidates an entry:
# nothing MLflow does (the residual reads no store data); a new policy revision (part of the
# key: the engine's watcher sees a change within REVISION_REFRESH_SECONDS, and the next
# listing asks OPA again); a change of the subject's roles, projects, clearance or key (part
# of the key, read from the identity store per request). No revision known: never cached.
# Partial evaluation of the bundled policy costs OPA ~15 ms, more than the page itself.
RESIDUALS = TtlCache(ttl=RESIDUAL_TTL_SECONDS, max_items=1000)


def read_condition(listing: Any, known: Mapping[str, Any], attributes: Attributes) -> Clause:
    """The condition for rows the caller may read; raises Untranslatable to fall back."""
    if listing.compile_call is None:
        raise Untranslatable("this request path has no Compile API client")
    key = None
    if listing.revision is not None:
        asked = {**listing.subject_and_action, "listed": known}
        key = listing.revision + json.dumps(asked, sort_keys=True, separators=(",", ":"))
    found = RESIDUALS.get(key) if key is not None else None
    if found is None:
        try:
            found = normal_form(residual(listing.compile_call, listing.subject_and_action, known))
        except CompileRefused as exc:
            raise Untranslatable(str(exc)) from None
        if key is not None:
            RESIDUALS.put(key, found)
    return condition(found, attributes)


# The fallbacks this process has logged: a policy outside the vocabulary makes every listing
# fall back, and the log should say why once, not per request.
FALLBACKS_LOGGED: set[str] = set()


def fallback_logged(endpoint: str, reason: Untranslatable) -> None:
    key = f"{endpoint}: {reason}"
    if key not in FALLBACKS_LOGGED:
        FALLBACKS_LOGGED.add(key)
        _logger.warning(
            "listing %s uses the batched filter: the read rule's residual holds %s "
            "(see 'Listings pushed into the store query' in docs/policy-authoring.md)",
            endpoint,
            reason,
        )


def condition(found: NormalForm, attributes: Attributes) -> Clause:
    return or_(false(), *(and_(true(), *(_sql(t, attributes) for t in c)) for c in found))


def _sql(test: Test, attributes: Attributes) -> Clause:
    if isinstance(test, Tagged):
        clause = _tagged(test.call, attributes)
        return not_(clause) if test.call.negated else clause
    if test.field not in attributes.fields:
        raise Untranslatable(f"the attribute {test.field}, which this listing lacks")
    holds = attributes.fields[test.field]
    strings = sorted(v for v in test.values if v is not None)
    if strings and None in test.values and test.field in attributes.null_or_in:
        clause = attributes.null_or_in[test.field](strings)
    else:
        parts = [holds(lambda value: value.in_(strings))] if strings else []
        if None in test.values:
            parts.append(not_(holds(lambda _value: true())))
        clause = or_(false(), *parts)
    return not_(clause) if test.negated else clause


def _tagged(call: Call, attributes: Attributes) -> Clause:
    """EXISTS a row of the tag whose value satisfies the call (before its negation)."""
    (tag,) = [t for t in call.args if isinstance(t, Tag)]
    if not tag.key.startswith(POLICY_TAG_PREFIX):
        return false()  # `filter` is shown policy tags only

    def on_value(value: Any) -> Clause:
        others = [t for t in call.args if t is not tag]
        if call.function is None:
            return true()  # bare: the tag is defined (a string, never false)
        if not all(isinstance(t, Const) for t in others):
            raise Untranslatable(f"the call {call.function} on a tag and an attribute")
        constants = [t.value for t in others]  # type: ignore[union-attr]
        if call.function == "is_string" and not constants:
            return true()
        if call.function == "is_null" and not constants:
            return false()
        if call.function in {"eq", "equal", "neq"} and len(constants) == 1:
            (constant,) = constants
            same = value == constant if isinstance(constant, str) else false()
            return not_(same) if call.function == "neq" else same
        if call.function == "internal.member_2" and call.args[0] is tag and constants:
            (collection,) = constants
            if isinstance(collection, frozenset):
                strings = sorted(v for v in collection if isinstance(v, str))
                return value.in_(strings) if strings else false()
        raise Untranslatable(f"the call {call.function} on a tag")

    return attributes.tag(tag.key, on_value)
