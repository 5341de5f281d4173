"""Experiment search, answered here: MLflow's query cannot be told which experiments to keep.

On a SQLite or PostgreSQL tracking store the policy is pushed into the database: OPA's
partial evaluation of the read rule becomes one more condition of MLflow's own search
statement (pushdown.py), which lists the page's ids in the client's order; only those are
loaded in full, as MLflow loads them. The policy is not asked about items at all, and the
cost is MLflow's query plus the condition's.

When the policy cannot be written as SQL (or on another database) the batched filter serves
the request instead: one query reads the ids and policy attributes of every experiment
matching the client's filter, ONE filter call decides the distinct attribute groups, and the
page is cut from the narrowed order (linear in the store). Other stores are scanned through
MLflow's public search (same answer, slower still).

Page tokens name a position in the narrowed order, as MLflow's own do in the unfiltered one:
pages are filled to `max_results`, never skip or repeat an item while nothing changes, and
reveal no totals.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlflow.entities import LifecycleStage, ViewType
from mlflow.protos.service_pb2 import SearchExperiments
from mlflow.utils.proto_json_utils import message_to_json, parse_dict

from mlflow_secure.request.listings import store_indexes, tag_keys
from mlflow_secure.request.listings.core import (
    MAX_RESULTS_LIMIT,
    JsonReply,
    ListingError,
    ListingRequest,
    decode_offset,
    encode_offset,
    max_results,
    readable_by_group,
    readable_by_key,
)
from mlflow_secure.request.listings.pushdown import (
    Attributes,
    Untranslatable,
    fallback_logged,
    read_condition,
    require_pushdown,
    tag_attributes,
)
from mlflow_secure.request.lookups import (
    CLASSIFICATION_TAG,
    OWNER_TAG,
    PROJECT_TAG,
    policy_attributes,
)

POLICY_TAG_PREFIX = "mlflow.secure."
SCAN_PAGE = 1000
ENDPOINT = "mlflow.experiments.search"
# What the policy knows of a listed experiment before reading the store: its kind. The id is
# a group's, as in the batched filter (core), so a rule about one id never matches a listing.
_LISTED = {"type": "experiment", "id": "group", "group": True, "experiment_id": "group"}
_SEARCH_FIELDS = {"view_type", "max_results", "order_by", "filter", "page_token"}


def attributes(tags: Mapping[str, str], lifecycle_stage: str | None) -> dict[str, Any]:
    """What the policy reads of a listed experiment (never its id or name: see core)."""
    return {"type": "experiment", **policy_attributes(tags), "lifecycle_stage": lifecycle_stage}


def _parse(params: Mapping[str, Any]) -> Any:
    message = SearchExperiments()
    fields = {k: v for k, v in params.items() if k in _SEARCH_FIELDS}
    if isinstance(fields.get("order_by"), str):
        fields["order_by"] = [fields["order_by"]]
    try:
        parse_dict(fields, message)
    except Exception as exc:  # protobuf's ParseError and friends
        raise ListingError(f"Invalid experiments search request: {exc}") from None
    return message


def search(listing: ListingRequest) -> JsonReply:
    """The JSON MLflow's handler would return, holding only readable experiments."""
    request = _parse(listing.params)
    count = max_results(request.max_results)
    offset = decode_offset(request.page_token)
    view_type = request.view_type or ViewType.ACTIVE_ONLY
    store = listing.resolver.tracking_store()
    finder = _sql_page if _queryable(store) else _scanned_page
    experiments, more = finder(
        store, listing, view_type, request.filter, list(request.order_by), offset, count
    )
    response = SearchExperiments.Response()
    response.experiments.extend(e.to_proto() for e in experiments)
    if more:
        response.next_page_token = encode_offset(offset + count)
    return JsonReply(200, message_to_json(response).encode())


# ------------------------------------------------------------------------- SQL stores


def _is_sql(store: Any) -> bool:
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    return isinstance(store, SqlAlchemyStore)


def _queryable(store: Any) -> bool:
    """A SQL store whose policy tag keys are all spelt as the policy spells them (the SQL
    paths compare keys exactly; see tag_keys)."""
    return _is_sql(store) and not tag_keys.has_case_variants(store_indexes.EXPERIMENT_TAGS)


def _sql_page(
    store: Any,
    listing: ListingRequest,
    view_type: int,
    filter_string: str,
    order_by: list[str],
    offset: int,
    count: int,
) -> tuple[list[Any], bool]:
    from mlflow.store.tracking.dbmodels.models import SqlExperiment
    from sqlalchemy import select

    with store.ManagedSessionMaker() as session:
        try:
            readable = _readable_condition(store, listing)
        except Untranslatable as reason:
            fallback_logged(ENDPOINT, reason)
            keys = _keys(session, _described(store, view_type, filter_string, order_by))
            allowed = readable_by_key(keys, _describe, listing.allowed, stored_as="experiment_id")
            narrowed = [item for item in keys if item in allowed]
            page_ids, more = narrowed[offset : offset + count], len(narrowed) > offset + count
        else:  # MLflow's own search statement, with the policy as one more condition
            ids = _matching(store, view_type, filter_string, order_by, select(SqlExperiment))
            ids = ids.with_only_columns(SqlExperiment.experiment_id).where(readable)
            found = [str(i) for i in session.execute(ids.offset(offset).limit(count + 1)).scalars()]
            page_ids, more = found[:count], len(found) > count
        # Loaded by id, as MLflow loads them: its eager options would repeat the whole
        # search statement as a subquery to load the tags.
        loaded = (
            session.execute(
                select(SqlExperiment)
                .options(*store._get_eager_experiment_query_options())
                .filter(SqlExperiment.experiment_id.in_([int(i) for i in page_ids]))
            )
            .scalars()
            .all()
        )
        retention = store._get_effective_experiment_trace_archival_retention_context()
        by_id = {str(e.experiment_id): store._to_experiment(e, retention) for e in loaded}
    return [by_id[i] for i in page_ids if i in by_id], more


def _matching(
    store: Any, view_type: int, filter_string: str, order_by: list[str], selected: Any
) -> Any:
    """`selected` narrowed to the experiments matching the client's filter, in the client's
    order: MLflow's own clause builders, as `SqlAlchemyStore._search_experiments` uses them,
    so filters and orderings mean exactly what they mean to MLflow (and fail with MLflow's
    errors), and the store's hooks (workspaces) still apply."""
    from functools import reduce

    from mlflow.store.tracking.dbmodels.models import SqlExperiment
    from mlflow.store.tracking.sqlalchemy_store import (
        _get_search_experiments_filter_clauses,
        _get_search_experiments_order_by_clauses,
    )
    from mlflow.utils.search_utils import SearchExperimentsUtils

    parsed = SearchExperimentsUtils.parse_search_filter(filter_string)
    attribute_filters, joins = _get_search_experiments_filter_clauses(parsed, store._get_dialect())
    stages = set(LifecycleStage.view_type_to_stages(view_type))
    return (
        reduce(lambda s, j: s.join(j), joins, selected)
        .filter(
            *attribute_filters,
            SqlExperiment.lifecycle_stage.in_(stages),
            *store._experiment_where_clauses(),
        )
        .order_by(*_get_search_experiments_order_by_clauses(order_by))
    )


def _described(store: Any, view_type: int, filter_string: str, order_by: list[str]) -> Any:
    """The matching experiments' ids with what the batched filter describes: stage and the
    policy tags read by outer joins (project, classification, owner)."""
    from mlflow.store.tracking.dbmodels.models import SqlExperiment, SqlExperimentTag
    from sqlalchemy import and_, select
    from sqlalchemy.orm import aliased

    tags = {key: aliased(SqlExperimentTag) for key in _JOINED_TAGS}
    selected = select(
        SqlExperiment.experiment_id,
        SqlExperiment.lifecycle_stage,
        *(tag.value for tag in tags.values()),
    )
    for key, tag in tags.items():
        selected = selected.outerjoin(
            tag, and_(tag.experiment_id == SqlExperiment.experiment_id, tag.key == key)
        )
    return _matching(store, view_type, filter_string, order_by, selected)


def _readable_condition(store: Any, listing: ListingRequest) -> Any:
    """The experiments the policy lets the caller read, as a condition on MLflow's
    experiments table (pushdown.py); raises Untranslatable when it cannot be written so."""
    from mlflow.store.tracking.dbmodels.models import SqlExperiment, SqlExperimentTag

    require_pushdown(store._get_dialect())
    tagged = tag_attributes(
        SqlExperiment.experiment_id, SqlExperimentTag, SqlExperimentTag.experiment_id
    )
    fields = {**tagged.fields, "lifecycle_stage": lambda p: p(SqlExperiment.lifecycle_stage)}
    return read_condition(listing, _LISTED, Attributes(fields, tagged.tag, tagged.null_or_in))


def _keys(session: Any, query: Any) -> dict[str, tuple]:
    """Experiment id → policy key (stage, project, classification, owner, other policy
    tags) for the batched filter, in the query's order."""
    rows = session.execute(query).all()
    extra = _other_policy_tags(session)
    return {str(row[0]): (*row[1:], extra.get(row[0], ())) for row in rows}


def readable_ids(listing: ListingRequest, view_type: int = ViewType.ALL) -> list[str]:
    """Every experiment the caller may read (for listings that must name them all)."""
    from mlflow.store.tracking.dbmodels.models import SqlExperiment
    from sqlalchemy import select

    store = listing.resolver.tracking_store()
    if not _queryable(store):
        found, _ = _scanned_page(store, listing, view_type, "", [], 0, MAX_RESULTS_LIMIT)
        return [e.experiment_id for e in found]
    with store.ManagedSessionMaker() as session:
        try:
            readable = _readable_condition(store, listing)
        except Untranslatable as reason:
            fallback_logged(ENDPOINT, reason)
        else:
            ids = _matching(store, view_type, "", [], select(SqlExperiment.experiment_id))
            return [str(i) for i in session.execute(ids.where(readable)).scalars()]
        keys = _keys(session, _described(store, view_type, "", []))
    allowed = readable_by_key(keys, _describe, listing.allowed, stored_as="experiment_id")
    return [item for item in keys if item in allowed]


# The tags read by outer joins in the ordered query; any other policy tag is read apart.
_JOINED_TAGS = (PROJECT_TAG, CLASSIFICATION_TAG, OWNER_TAG)


def _describe(key: tuple) -> dict[str, Any]:
    stage, project, classification, owner, extra = key
    tags = dict(extra)
    for name, value in ((PROJECT_TAG, project), (CLASSIFICATION_TAG, classification)):
        if value is not None:
            tags[name] = value
    return attributes({**tags, OWNER_TAG: owner} if owner is not None else tags, stage)


def _other_policy_tags(session: Any) -> dict[int, tuple[tuple[str, str], ...]]:
    """Policy tags beyond project and classification (rare), per experiment, sorted."""
    from mlflow.store.tracking.dbmodels.models import SqlExperimentTag
    from sqlalchemy import select

    found: dict[int, dict[str, str]] = {}
    rows = session.execute(
        select(SqlExperimentTag.experiment_id, SqlExperimentTag.key, SqlExperimentTag.value).where(
            SqlExperimentTag.key.like(POLICY_TAG_PREFIX + "%"),
            SqlExperimentTag.key.not_in(_JOINED_TAGS),
        )
    )
    for experiment_id, key, value in rows:
        # LIKE ignores case on SQLite: keep exactly the keys the policy reads.
        if key.startswith(POLICY_TAG_PREFIX):
            found.setdefault(experiment_id, {})[key] = value
    return {i: tuple(sorted(tags.items())) for i, tags in found.items()}


# ------------------------------------------------------------------------- other stores


def _scanned_page(
    store: Any,
    listing: ListingRequest,
    view_type: int,
    filter_string: str,
    order_by: list[str],
    offset: int,
    count: int,
) -> tuple[list[Any], bool]:
    matching: list[Any] = []
    token = None
    while True:
        page = store.search_experiments(
            view_type=view_type,
            max_results=SCAN_PAGE,
            order_by=order_by,
            filter_string=filter_string,
            page_token=token,
        )
        matching.extend(page)
        token = page.token
        if not token:
            break
    described = {e.experiment_id: attributes(e.tags or {}, e.lifecycle_stage) for e in matching}
    readable = readable_by_group(described, listing.allowed, stored_as="experiment_id")
    narrowed = [e for e in matching if e.experiment_id in readable]
    return narrowed[offset : offset + count], len(narrowed) > offset + count
