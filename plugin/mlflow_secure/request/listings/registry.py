"""Registered-model and model-version search, answered here: MLflow's query cannot be told
which registered models to keep.

A model version is governed by its registered model (as `ResourceResolver.model_version`
says), so both searches decide readability per registered model, by its policy attributes
(project, classification, owner, policy tags: registered-model tags).

On a SQLite or PostgreSQL registry the policy is pushed into the database, as for experiment
search (pushdown.py): OPA's partial evaluation of the read rule becomes one more condition
of MLflow's own search statement (its filter and order clause builders, so filters, prompt
exclusion and workspaces mean exactly what they mean to MLflow), which lists the page's keys
in the client's order; only those are loaded in full, the way MLflow loads them. The policy
is not asked about items at all.

When the policy cannot be written as SQL (or on another database) the batched filter serves
the request: one query lists the keys of everything matching the client's filter with the
policy tags of each item's registered model, models that look alike form one group, the
policy is asked ONCE about the groups (see `core`), and the page is cut from the narrowed
order (linear in the store). Other stores are scanned through MLflow's public search
(same answer, slower still).

Page tokens name a position in the narrowed order: pages are filled to `max_results`, never
skip or repeat an item while nothing changes, and reveal no totals.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode
from mlflow.protos.model_registry_pb2 import SearchModelVersions, SearchRegisteredModels
from mlflow.store.model_registry import (
    SEARCH_MODEL_VERSION_MAX_RESULTS_THRESHOLD,
    SEARCH_REGISTERED_MODEL_MAX_RESULTS_THRESHOLD,
)
from mlflow.utils.proto_json_utils import message_to_json, parse_dict

from mlflow_secure.request.listings import store_indexes, tag_keys
from mlflow_secure.request.listings.core import (
    JsonReply,
    ListingError,
    ListingRequest,
    decode_offset,
    encode_offset,
    readable_by_group,
)
from mlflow_secure.request.listings.pushdown import (
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
LOAD_CHUNK = 400  # versions per page-loading query: within every database's parameter limit
# MLflow's SQL store orders model versions this way when the client names no order.
DEFAULT_VERSION_ORDER = ("last_updated_timestamp DESC", "name ASC", "version_number DESC")
_FIELDS = ("filter", "max_results", "order_by", "page_token")
MODELS_ENDPOINT = "mlflow.registered_models.search"
VERSIONS_ENDPOINT = "mlflow.model_versions.search"


@dataclass(frozen=True)
class Search:
    """One parsed search request: the client's filter and order, and the narrowed page."""

    filter: str
    order_by: list[str]
    offset: int
    count: int

    def page(self, narrowed: Sequence[Any]) -> tuple[list[Any], bool]:
        """The page's slice of the narrowed order, and whether anything follows it."""
        end = self.offset + self.count
        return list(narrowed[self.offset : end]), len(narrowed) > end

    def pushed_page(self, session: Any, keys: Any) -> tuple[list[Any], bool]:
        """The page of a statement that lists only readable keys, in order: one more row
        than the page is read to know whether anything follows it."""
        found = [
            tuple(row) for row in session.execute(keys.offset(self.offset).limit(self.count + 1))
        ]
        return found[: self.count], len(found) > self.count


def attributes(kind: str, tags: Mapping[str, str | None]) -> dict[str, Any]:
    """What the policy reads of a listed item: its registered model's attributes only (never
    a name or version: see core)."""
    return {"type": kind, **policy_attributes(tags)}


def is_policy_tag(key: str) -> bool:
    return key == OWNER_TAG or key.startswith(POLICY_TAG_PREFIX)


# ------------------------------------------------------------------------- requests


def parse(listing: ListingRequest, message_type: Any, limit: int) -> Search:
    """Read the request as MLflow's `_get_request_message` would, and bound `max_results`.

    A GET's query string gives proto field names only, one value per parameter; a JSON body
    may also use the camelCase JSON names, but not both spellings of one field.
    """
    message = message_type()
    from_query = listing.method == "GET"
    fields: dict[str, Any] = {}
    for descriptor in message.DESCRIPTOR.fields:
        if descriptor.name not in _FIELDS:
            continue
        names = [descriptor.name] if from_query else [descriptor.name, descriptor.json_name]
        given = [name for name in dict.fromkeys(names) if name in listing.params]
        if len(given) > 1:
            raise MlflowException.invalid_parameter_value(
                f"Request specifies both '{descriptor.name}' and '{descriptor.json_name}'; "
                "provide only one of them."
            )
        if given:
            fields[given[0]] = listing.params[given[0]]
    if from_query and isinstance(fields.get("order_by"), str):
        fields["order_by"] = [fields["order_by"]]  # a repeated field given once
    try:
        parse_dict(fields, message)
    except Exception as exc:  # protobuf's ParseError and friends
        raise ListingError(f"Invalid {message_type.__name__} request: {exc}") from None
    count = message.max_results
    if not 0 < count <= limit:
        # MLflow refuses too many; it answers nonsense pages for none, so refuse those too.
        raise MlflowException.invalid_parameter_value(
            "Invalid value for request parameter max_results. It must be between 1 and "
            f"{limit}, but got value {count}"
        )
    return Search(message.filter, list(message.order_by), decode_offset(message.page_token), count)


def is_sql(store: Any) -> bool:
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore

    return isinstance(store, SqlAlchemyStore)


def _queryable(store: Any) -> bool:
    """A SQL registry whose policy tag keys are all spelt as the policy spells them (the SQL
    paths compare keys exactly; see tag_keys)."""
    return is_sql(store) and not tag_keys.has_case_variants(store_indexes.REGISTERED_MODEL_TAGS)


def _reply(response: Any, search: Search, more: bool) -> JsonReply:
    """MLflow's JSON for a filled response message; a token only while more remain."""
    if more:
        response.next_page_token = encode_offset(search.offset + search.count)
    return JsonReply(200, message_to_json(response).encode())


# ------------------------------------------------------------------------- registered models


def search_registered_models(listing: ListingRequest) -> JsonReply:
    """The JSON MLflow's handler would return, holding only readable registered models."""
    search = parse(listing, SearchRegisteredModels, SEARCH_REGISTERED_MODEL_MAX_RESULTS_THRESHOLD)
    store = listing.resolver.registry_store()
    finder = _sql_registered_models if _queryable(store) else _scanned_registered_models
    models, more = finder(store, listing, search)
    response = SearchRegisteredModels.Response()
    response.registered_models.extend(m.to_proto() for m in models)
    return _reply(response, search, more)


def _sql_registered_models(
    store: Any, listing: ListingRequest, search: Search
) -> tuple[list[Any], bool]:
    from mlflow.store.model_registry.dbmodels.models import SqlRegisteredModel
    from mlflow.utils.search_utils import SearchModelUtils
    from sqlalchemy import select

    parsed = SearchModelUtils.parse_search_filter(search.filter)
    order = store._parse_search_registered_models_order_by(search.order_by)
    with store.ManagedSessionMaker() as session:
        matching = store._get_search_registered_model_filter_query(
            session, parsed, store._get_dialect()
        )
        try:
            readable = _readable_condition(
                store, listing, "registered_model", SqlRegisteredModel.name
            )
        except Untranslatable as reason:
            fallback_logged(MODELS_ENDPOINT, reason)
            rows = session.execute(
                _with_policy_tags(matching, SqlRegisteredModel, SqlRegisteredModel.name).order_by(
                    *order
                )
            ).all()
            ordered, tags = _gather(rows)
            described = {name: attributes("registered_model", t) for name, t in tags.items()}
            readable_names = readable_by_group(described, listing.allowed)
            page, more = search.page([name for (name,) in ordered if name in readable_names])
        else:  # MLflow's own search statement, with the policy as one more condition
            keys = matching.with_only_columns(SqlRegisteredModel.name).where(readable)
            found, more = search.pushed_page(session, keys.order_by(*order))
            page = [name for (name,) in found]
        if not page:
            return [], more
        loaded = (
            session.execute(
                select(SqlRegisteredModel)
                .options(*store._get_eager_registered_model_query_options())
                .filter(
                    *store._get_workspace_clauses(SqlRegisteredModel),
                    SqlRegisteredModel.name.in_(page),
                )
            )
            .scalars()
            .all()
        )
        latest = store._get_latest_versions_for_models(session, page)
        by_name = {
            m.name: m.to_mlflow_entity(preloaded_latest_versions=latest.get(m.name)) for m in loaded
        }
    return [by_name[name] for name in page if name in by_name], more


def _scanned_registered_models(
    store: Any, listing: ListingRequest, search: Search
) -> tuple[list[Any], bool]:
    matching = _scan(store.search_registered_models, search)
    described = {m.name: attributes("registered_model", m.tags or {}) for m in matching}
    readable = readable_by_group(described, listing.allowed)
    return search.page([m for m in matching if m.name in readable])


# ------------------------------------------------------------------------- model versions


def search_model_versions(listing: ListingRequest) -> JsonReply:
    """The JSON MLflow's handler would return, holding only versions of readable models."""
    search = parse(listing, SearchModelVersions, SEARCH_MODEL_VERSION_MAX_RESULTS_THRESHOLD)
    store = listing.resolver.registry_store()
    finder = _sql_model_versions if _queryable(store) else _scanned_model_versions
    versions, more = finder(store, listing, search)
    response = SearchModelVersions.Response()
    response.model_versions.extend(v.to_proto() for v in versions)
    return _reply(response, search, more)


def _sql_model_versions(
    store: Any, listing: ListingRequest, search: Search
) -> tuple[list[Any], bool]:
    from mlflow.entities.model_registry.model_version_stages import STAGE_DELETED_INTERNAL
    from mlflow.store.model_registry.dbmodels.models import SqlModelVersion
    from mlflow.utils.search_utils import SearchModelVersionUtils

    parsed = SearchModelVersionUtils.parse_search_filter(search.filter)
    matching = store._get_search_model_versions_filter_clauses(parsed, store._get_dialect())
    matching = matching.filter(SqlModelVersion.current_stage != STAGE_DELETED_INTERNAL)
    order = store._parse_search_model_versions_order_by(
        search.order_by or list(DEFAULT_VERSION_ORDER)
    )
    with store.ManagedSessionMaker() as session:
        try:
            readable = _readable_condition(store, listing, "model_version", SqlModelVersion.name)
        except Untranslatable as reason:
            fallback_logged(VERSIONS_ENDPOINT, reason)
            rows = session.execute(
                _with_policy_tags(
                    matching, SqlModelVersion, SqlModelVersion.name, SqlModelVersion.version
                ).order_by(*order)
            ).all()
            ordered, tags = _gather(rows)
            described = {name: attributes("model_version", t) for name, t in tags.items()}
            readable_names = readable_by_group(described, listing.allowed)
            page, more = search.page([key for key in ordered if key[0] in readable_names])
        else:  # MLflow's own search statement, with the policy as one more condition
            keys = matching.with_only_columns(SqlModelVersion.name, SqlModelVersion.version)
            page, more = search.pushed_page(session, keys.where(readable).order_by(*order))
        by_key = {}
        for chunk in _chunks(page, LOAD_CHUNK):
            for version in _load_versions(session, store, chunk):
                by_key[version.name, version.version] = version.to_mlflow_entity()
    return [by_key[key] for key in page if key in by_key], more


def _load_versions(session: Any, store: Any, keys: list[tuple[str, int]]) -> list[Any]:
    """The given (name, version) rows in full, eagerly loaded as MLflow loads them.

    Names and versions are matched separately (an index seek on every database MLflow
    supports; row-value IN is not portable) and the rows are then held to the exact pairs.
    """
    from mlflow.store.model_registry.dbmodels.models import SqlModelVersion
    from sqlalchemy import select

    wanted = set(keys)
    query = (
        select(SqlModelVersion)
        .options(*store._get_eager_model_version_query_options())
        .filter(
            *store._get_workspace_clauses(SqlModelVersion),
            SqlModelVersion.name.in_({name for name, _ in keys}),
            SqlModelVersion.version.in_({version for _, version in keys}),
        )
    )
    rows = session.execute(query).scalars().all()
    return [row for row in rows if (row.name, row.version) in wanted]


def _scanned_model_versions(
    store: Any, listing: ListingRequest, search: Search
) -> tuple[list[Any], bool]:
    matching = _scan(store.search_model_versions, search)
    described = {}
    for name in dict.fromkeys(v.name for v in matching):
        try:
            model = store.get_registered_model(name)
        except MlflowException as exc:
            if exc.error_code != ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
                raise
            continue  # gone since the scan: never readable
        described[name] = attributes("model_version", model.tags or {})
    readable = readable_by_group(described, listing.allowed)
    return search.page([v for v in matching if v.name in readable])


# ------------------------------------------------------------------------- shared


def _readable_condition(store: Any, listing: ListingRequest, kind: str, name: Any) -> Any:
    """The items whose registered model the policy lets the caller read, as a condition on
    `name` (the registered model's name column of the searched table), pushdown.py's way;
    raises Untranslatable when it cannot be written so.

    The tag rows are held to the active workspace, as MLflow's search statement holds the
    searched rows (`_get_workspace_clauses` on both), so a name never matches another
    workspace's model of the same name."""
    from mlflow.store.model_registry.dbmodels.models import SqlRegisteredModelTag as Tag

    require_pushdown(store._get_dialect())
    scope = tuple(store._get_workspace_clauses(Tag))
    # What the policy knows of a listed item before reading the store: its kind, and a
    # group's id as in the batched filter (core), so a rule about one id never matches.
    known = {"type": kind, "id": "group", "group": True}
    return read_condition(listing, known, tag_attributes(name, Tag, Tag.name, scope))


def _with_policy_tags(matching: Any, model: Any, *keys: Any) -> Any:
    """MLflow's filter query cut down to the items' keys, each row joined to one policy tag
    of the item's registered model (or to none: the join is outer)."""
    from mlflow.store.model_registry.dbmodels.models import SqlRegisteredModelTag as Tag
    from sqlalchemy import and_, or_

    return matching.with_only_columns(*keys, Tag.key, Tag.value).outerjoin(
        Tag,
        and_(
            Tag.workspace == model.workspace,
            Tag.name == model.name,
            or_(
                Tag.key.in_((OWNER_TAG, PROJECT_TAG, CLASSIFICATION_TAG)),
                Tag.key.like(POLICY_TAG_PREFIX + "%"),
            ),
        ),
    )


def _gather(rows: Sequence[Any]) -> tuple[list[tuple[Any, ...]], dict[str, dict[str, Any]]]:
    """Item keys in row order, each once, and the policy tags of each registered model."""
    ordered: dict[tuple[Any, ...], None] = {}
    tags: dict[str, dict[str, Any]] = {}
    for *key, tag_key, value in rows:
        ordered[tuple(key)] = None
        held = tags.setdefault(key[0], {})
        # LIKE ignores case on SQLite (and IN on some collations): keep exactly the keys the
        # policy reads.
        if tag_key is not None and is_policy_tag(tag_key):
            held[tag_key] = value
    return list(ordered), tags


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _scan(search_page: Any, search: Search) -> list[Any]:
    """Every match of the client's filter, in the client's order, through public search."""
    matching: list[Any] = []
    token = None
    while True:
        page = search_page(
            filter_string=search.filter,
            max_results=SCAN_PAGE,
            order_by=search.order_by or None,
            page_token=token,
        )
        matching.extend(page)
        token = page.token
        if not token:
            return matching
