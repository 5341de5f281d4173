"""Listings pushed into the store query agree with the batched filter (Hypothesis, real OPA):
experiment search, registered-model search and model-version search.

A real managed OPA serves the bundled policies and variants of them; a real MLflow store
(SQLite, and PostgreSQL) holds one experiment for every combination of the attributes the
policy reads (project, classification, owner, a policy tag, deleted or not, empty tags and
absent ones). Hypothesis draws subjects, policies, filters, orders and page sizes; the pages
MLflow-secure serves by partial evaluation (`pushdown`) must hold the same experiments in the
same order as those served by asking `filter` about every item, across all pages.
"""

from __future__ import annotations

import itertools
import json
import logging
import shutil
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mlflow.entities import ExperimentTag
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

from mlflow_secure.config import Settings
from mlflow_secure.policy.engine import start_managed_opa
from mlflow_secure.policy.partial import Untranslatable, parse
from mlflow_secure.request import listings
from mlflow_secure.request.listings import experiments, pushdown, store_indexes
from mlflow_secure.request.listings import registry as registry_listings
from mlflow_secure.request.lookups import OWNER_TAG, ResourceResolver

REPO = Path(__file__).resolve().parents[2]
PROJECTS = ("team-a", "team-b", "other", "", None)
CLASSIFICATIONS = ("public", "internal", "confidential", "restricted", "bogus", "", None)
OWNERS = ("alice", "bob", "", None)
SHARED = ("yes", "", None)  # a policy tag beyond project and classification

# Policy variants: extra rules in the same package, beside the bundled ones.
VARIANTS = {
    "bundled": "",
    # A policy tag and an owner rule: translated (EXISTS over the tag rows).
    "shared-tag": """
readable_item(resource) if {
	input.action.access == "read"
	resource.tags["mlflow.secure.shared"] == "yes"
	resource.classification != "restricted"
}

readable_item(resource) if {
	input.action.access == "read"
	not resource.tags["mlflow.secure.shared"]
	resource.owner == "bob"
	input.subject.id == "carol"
}
""",
    # A function the translator does not know: the listing falls back to the filter.
    "prefix": """
readable_item(resource) if {
	input.action.access == "read"
	startswith(resource.project, "oth")
}
""",
}


def _policy_dir(root: Path, extra: str) -> Path:
    target = root / "rego"
    shutil.copytree(REPO / "rego", target, ignore=shutil.ignore_patterns("*_test.rego"))
    if extra:
        (target / "mlflow" / "authz" / "variant.rego").write_text(
            "package mlflow.authz\n\nimport rego.v1\n" + extra
        )
    return target


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    started = {}
    for name, extra in VARIANTS.items():
        root = tmp_path_factory.mktemp(f"opa-{name}")
        runtime = tmp_path_factory.mktemp(f"run-{name}")
        engine = start_managed_opa(
            Settings(runtime_dir=str(runtime), opa_timeout=5.0), _policy_dir(root, extra), name
        )
        assert engine.wait_until_ready(60) is None
        assert engine.refresh_revision() is not None
        started[name] = engine
    yield started
    for engine in started.values():
        engine.supervisor.stop()


def _populate(store: SqlAlchemyStore) -> None:
    combinations = itertools.product(PROJECTS, CLASSIFICATIONS, OWNERS, SHARED)
    for index, (project, classification, owner, shared) in enumerate(combinations):
        tags = [
            ExperimentTag(key, value)
            for key, value in (
                ("mlflow.secure.project", project),
                ("mlflow.secure.classification", classification),
                (OWNER_TAG, owner),
                ("mlflow.secure.shared", shared),
                ("shared", "yes"),  # not a policy tag: never shown to the policy
            )
            if value is not None
        ]
        experiment_id = store.create_experiment(f"exp-{index:03d}-{project}", tags=tags)
        if index % 7 == 3:
            store.delete_experiment(experiment_id)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def store(request, tmp_path_factory):
    if request.param == "sqlite":
        uri = f"sqlite:///{tmp_path_factory.mktemp('pushdown') / 'mlflow.db'}"
    else:
        uri = request.getfixturevalue("postgres_server").make_database("pushdown")
    tracking = SqlAlchemyStore(uri, "mlflow-artifacts:/")
    _populate(tracking)
    assert store_indexes.ensure_listing_indexes(tracking) == []
    assert store_indexes.ensure_listing_indexes(tracking) == []  # idempotent
    return tracking


subjects = st.fixed_dictionaries(
    {
        "id": st.sampled_from(["alice", "bob", "carol"]),
        "kind": st.just("user"),
        "roles": st.lists(st.sampled_from(["admin", "auditor"]), max_size=1, unique=True),
        "teams": st.just([]),
        "projects": st.lists(
            st.fixed_dictionaries(
                {
                    "name": st.sampled_from(["team-a", "team-b", "other"]),
                    "role": st.sampled_from(["viewer", "editor", "maintainer"]),
                    "via": st.just("direct"),
                }
            ),
            max_size=3,
        ),
        "clearance": st.sampled_from(["public", "internal", "confidential", "restricted", "x"]),
        "owner": st.none(),
        "scopes": st.lists(st.sampled_from(["read", "write", "admin"]), unique=True),
        "key_projects": st.none() | st.lists(st.sampled_from(["team-a", "other"]), unique=True),
        "key_id": st.none(),
        "auth": st.just("api_key"),
        "default_project": st.none(),
    }
)
searches = st.fixed_dictionaries(
    {
        "view_type": st.sampled_from(["ACTIVE_ONLY", "DELETED_ONLY", "ALL"]),
        "filter": st.sampled_from(["", "name LIKE '%team-a%'", "tags.shared = 'yes'"]),
        "order_by": st.sampled_from([[], ["name DESC"], ["creation_time ASC"]]),
        "max_results": st.integers(7, 150),
    }
)


def _listing(store, engine, subject, params, pushed):
    reader = {
        "subject": subject,
        "action": {"endpoint": "mlflow.experiments.search", "access": "read", "method": "POST"},
    }

    def allowed(resources):
        return engine.client.filter_sync({**reader, "resources": resources})

    resolver = ResourceResolver(lambda: store, lambda: None)
    return listings.ListingRequest(
        params,
        "POST",
        resolver,
        allowed,
        compile_call=engine.client.compile_sync if pushed else None,
        subject_and_action=reader,
        revision=engine.revision,
    )


def _all_pages(store, engine, subject, search, pushed):
    names, token = [], None
    while True:
        params = {**search, **({"page_token": token} if token else {})}
        reply = experiments.search(_listing(store, engine, subject, params, pushed))
        payload = json.loads(reply.body())
        names += [e["name"] for e in payload.get("experiments", [])]
        token = payload.get("next_page_token")
        if not token:
            return names


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    derandomize=True,
)
@given(subject=subjects, search=searches, variant=st.sampled_from(sorted(VARIANTS)))
def test_pushed_down_pages_equal_the_batched_filter(store, engines, subject, search, variant):
    engine = engines[variant]
    pushed = _all_pages(store, engine, subject, search, pushed=True)
    batched = _all_pages(store, engine, subject, {**search, "max_results": 1000}, pushed=False)
    assert pushed == batched


def _reader(subject):
    return {
        "subject": subject,
        "action": {"endpoint": "mlflow.experiments.search", "access": "read", "method": "POST"},
    }


MEMBER = {
    "id": "alice",
    "kind": "user",
    "roles": [],
    "teams": [],
    "projects": [{"name": "team-a", "role": "viewer", "via": "direct"}],
    "clearance": "internal",
    "owner": None,
    "scopes": ["read"],
    "key_projects": None,
    "key_id": None,
    "auth": "api_key",
    "default_project": None,
}


def test_the_bundled_policy_translates_fully_and_shows_what_a_member_may_read(
    store, engines, caplog
):
    """Not a fallback in disguise: the store query itself narrows, and the answer is what
    the policy says a viewer of team-a with internal clearance reads."""
    caplog.set_level(logging.WARNING, logger=pushdown.__name__)
    search = {"view_type": "ALL", "max_results": 1000}
    listing = _listing(store, engines["bundled"], MEMBER, search, pushed=True)
    listing.filter_call = _never  # the batched filter must not be asked
    names = [e["name"] for e in json.loads(experiments.search(listing).body())["experiments"]]
    readable = {
        (p, c, o, s)
        for p, c, o, s in itertools.product(PROJECTS, CLASSIFICATIONS, OWNERS, SHARED)
        if p == "team-a" and c in {"public", "internal", "", None}
    }
    readable |= {  # outside any project: the owner's
        (p, c, o, s)
        for p, c, o, s in itertools.product(PROJECTS, CLASSIFICATIONS, OWNERS, SHARED)
        if p in {"", None} and o == "alice" and c in {"public", "internal", "", None}
    }
    assert len(names) == len(readable) > 0
    assert all(n.endswith("-team-a") or n.endswith("-") or n.endswith("-None") for n in names)
    assert not [r for r in caplog.records if "batched filter" in r.getMessage()]


def _never(resources):
    raise AssertionError(f"the batched filter was asked about {len(resources)} items")


def test_an_untranslatable_policy_falls_back_with_a_log_line_naming_it(store, engines, caplog):
    caplog.set_level(logging.WARNING, logger=pushdown.__name__)
    pushdown.FALLBACKS_LOGGED.clear()
    search = {"view_type": "ALL", "max_results": 1000}
    listing = _listing(store, engines["prefix"], MEMBER, search, pushed=True)
    names = [e["name"] for e in json.loads(experiments.search(listing).body())["experiments"]]
    assert any(name.endswith("-other") for name in names)  # the variant's own rule held
    logged = [r.getMessage() for r in caplog.records if "batched filter" in r.getMessage()]
    assert logged
    assert "startswith" in logged[0]


def test_a_policy_change_takes_effect_on_the_next_request(tmp_path, store):
    """Residuals are cached under the policy revision: once the worker sees the new
    revision, the next listing is decided by the new policy."""
    policies = _policy_dir(tmp_path, "")
    engine = start_managed_opa(
        Settings(runtime_dir=str(tmp_path / "run"), opa_timeout=5.0), policies, "change"
    )
    try:
        assert engine.wait_until_ready(60) is None
        before_revision = engine.refresh_revision()
        search = {"view_type": "ALL", "max_results": 1000, "filter": "name LIKE '%-other'"}
        assert _all_pages(store, engine, MEMBER, search, pushed=True) == []
        (policies / "mlflow" / "authz" / "variant.rego").write_text(
            "package mlflow.authz\n\nimport rego.v1\n" + VARIANTS["shared-tag"]
        )
        deadline = time.monotonic() + 30
        while engine.refresh_revision() == before_revision:  # OPA watches its directory
            assert time.monotonic() < deadline, "OPA never loaded the changed policy"
            time.sleep(0.1)
        after = _all_pages(store, engine, MEMBER, search, pushed=True)
        assert after == _all_pages(store, engine, MEMBER, search, pushed=False)
        assert after != []
    finally:
        engine.supervisor.stop()


def test_a_cached_residual_is_reused_for_the_same_subject_and_revision(store, engines):
    calls = []
    engine = engines["bundled"]
    pushdown.RESIDUALS.clear()

    def counted(*args):
        calls.append(args)
        return engine.client.compile_sync(*args)

    subject = {**MEMBER, "id": "cache-probe"}
    search = {"view_type": "ALL", "max_results": 5}
    for revision, expected_calls in (("rev-1", 1), ("rev-1", 1), ("rev-2", 2), (None, 3)):
        listing = _listing(store, engine, subject, search, pushed=True)
        listing.compile_call, listing.revision = counted, revision
        experiments.search(listing)
        assert len(calls) == expected_calls
    other = _listing(store, engine, {**subject, "clearance": "restricted"}, search, pushed=True)
    other.compile_call, other.revision = counted, "rev-1"
    experiments.search(other)
    assert len(calls) == 4  # another subject is another question


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (
            {
                "queries": [
                    [{"terms": {"type": "ref", "value": [{"type": "var", "value": "data"}]}}]
                ]
            },
            "data",
        ),
        ({"support": [{"package": {}}], "queries": []}, "support rules"),
        (
            {
                "queries": [
                    [
                        {
                            "terms": [
                                {"type": "ref", "value": [{"type": "var", "value": "startswith"}]},
                                {"type": "string", "value": "a"},
                                {"type": "string", "value": "b"},
                            ]
                        }
                    ]
                ]
            },
            "startswith",
        ),
        ({"queries": [[{"terms": [], "with": [{"target": {}}]}]]}, "with"),
    ],
)
def test_residuals_outside_the_vocabulary_are_refused_by_name(answer, reason):
    with pytest.raises(Untranslatable, match=reason):
        parse(answer)


def test_a_residual_that_never_holds_is_an_empty_page(store, engines):
    nobody = {**MEMBER, "scopes": []}  # no read scope: OPA answers "never" ({} )
    search = {"view_type": "ALL", "max_results": 10}
    listing = _listing(store, engines["bundled"], nobody, search, pushed=True)
    listing.filter_call = _never
    assert json.loads(experiments.search(listing).body()) == {}


def test_the_narrowed_search_reads_the_tag_indexes(store, engines):
    """The statement the pushed-down search runs finds tags through the plugin's indexes."""
    from mlflow.entities import ViewType
    from mlflow.store.tracking.dbmodels.models import SqlExperiment
    from sqlalchemy import select, text

    listing = _listing(store, engines["bundled"], MEMBER, {}, pushed=True)
    readable = experiments._readable_condition(store, listing)
    ids = experiments._matching(store, ViewType.ALL, "", [], select(SqlExperiment.experiment_id))
    statement = ids.where(readable).limit(10)
    with store.engine.connect() as connection:
        if store._get_dialect() == "postgresql":
            connection.execute(text("SET enable_seqscan = off"))  # a tiny table: force the plan
        compiled = statement.compile(store.engine, compile_kwargs={"literal_binds": True})
        plan = " ".join(str(row) for row in connection.execute(text(f"EXPLAIN {compiled}")))
        if store._get_dialect() == "sqlite":
            plan = " ".join(
                str(row) for row in connection.execute(text(f"EXPLAIN QUERY PLAN {compiled}"))
            )
    expected = (
        [store_indexes.SQLITE_INDEX]
        if store._get_dialect() == "sqlite"
        else [store_indexes.POSTGRES_INDEXES["mlflow.secure.project"]]
    )
    for name in expected:
        assert name in plan, plan


# ------------------------------------------------------------------ registered models, versions
# The same agreement for the registry: readability is the registered model's (its tags), a
# model version's that of its registered model; prompts are MLflow's to exclude.


def _populate_registry(registry) -> None:
    from mlflow.entities.model_registry import ModelVersionTag, RegisteredModelTag

    combinations = itertools.product(PROJECTS, CLASSIFICATIONS, OWNERS, SHARED)
    for index, (project, classification, owner, shared) in enumerate(combinations):
        tags = [
            RegisteredModelTag(key, value)
            for key, value in (
                ("mlflow.secure.project", project),
                ("mlflow.secure.classification", classification),
                (OWNER_TAG, owner),
                ("mlflow.secure.shared", shared),
            )
            if value is not None
        ]
        if index % 11 == 5:  # a prompt: never listed by either search
            tags.append(RegisteredModelTag("mlflow.prompt.is_prompt", "true"))
        name = f"model-{index:03d}-{project}"
        registry.create_registered_model(name, tags=tags)
        for version in range(1 + index % 3):
            version_tags = [ModelVersionTag("shared", "yes")] if version % 2 else []
            registry.create_model_version(
                name, f"mlflow-artifacts:/{index}/{version}", tags=version_tags
            )


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def registry(request, tmp_path_factory):
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore

    if request.param == "sqlite":
        uri = f"sqlite:///{tmp_path_factory.mktemp('registry') / 'mlflow.db'}"
    else:
        uri = request.getfixturevalue("postgres_server").make_database("registry_pushdown")
    store = RegistryStore(uri)
    _populate_registry(store)
    assert store_indexes.ensure_registry_indexes(store) == []
    assert store_indexes.ensure_registry_indexes(store) == []  # idempotent
    return store


REGISTRY_SEARCHES = {
    "registered_models": (
        registry_listings.search_registered_models,
        "mlflow.registered_models.search",
        "registered_models",
        lambda item: item["name"],
        st.sampled_from(["", "name LIKE '%team-a%'", "tags.`mlflow.secure.shared` = 'yes'"]),
        st.sampled_from([[], ["name DESC"], ["last_updated_timestamp ASC"]]),
    ),
    "model_versions": (
        registry_listings.search_model_versions,
        "mlflow.model_versions.search",
        "model_versions",
        lambda item: (item["name"], item["version"]),
        st.sampled_from(["", "name LIKE '%team-a%'", "tags.shared = 'yes'"]),
        st.sampled_from([[], ["name DESC"], ["version_number ASC"]]),
    ),
}


def _registry_listing(registry, engine, subject, kind, params, pushed):
    _, endpoint, *_ = REGISTRY_SEARCHES[kind]
    reader = {"subject": subject, "action": {"endpoint": endpoint, "access": "read"}}

    def allowed(resources):
        return engine.client.filter_sync({**reader, "resources": resources})

    return listings.ListingRequest(
        params,
        "POST",
        ResourceResolver(lambda: None, lambda: registry),
        allowed,
        compile_call=engine.client.compile_sync if pushed else None,
        subject_and_action=reader,
        revision=engine.revision,
    )


def _registry_pages(registry, engine, subject, kind, search, pushed):
    narrow, _, field, key, *_ = REGISTRY_SEARCHES[kind]
    found, token = [], None
    while True:
        params = {**search, **({"page_token": token} if token else {})}
        listing = _registry_listing(registry, engine, subject, kind, params, pushed)
        payload = json.loads(narrow(listing).body())
        found += [key(item) for item in payload.get(field, [])]
        token = payload.get("next_page_token")
        if not token:
            return found


@st.composite
def registry_searches(draw):
    kind = draw(st.sampled_from(sorted(REGISTRY_SEARCHES)))
    *_, filters, orders = REGISTRY_SEARCHES[kind]
    search = {
        "filter": draw(filters),
        "order_by": draw(orders),
        "max_results": draw(st.integers(7, 150)),
    }
    return kind, search


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    derandomize=True,
)
@given(subject=subjects, drawn=registry_searches(), variant=st.sampled_from(sorted(VARIANTS)))
def test_pushed_down_registry_pages_equal_the_batched_filter(
    registry, engines, subject, drawn, variant
):
    kind, search = drawn
    engine = engines[variant]
    pushed = _registry_pages(registry, engine, subject, kind, search, pushed=True)
    whole = {**search, "max_results": 1000}
    assert pushed == _registry_pages(registry, engine, subject, kind, whole, pushed=False)


@pytest.mark.parametrize("kind", sorted(REGISTRY_SEARCHES))
def test_the_bundled_policy_pushes_registry_searches_down_and_shows_what_a_member_may_read(
    registry, engines, caplog, kind
):
    """Not a fallback in disguise: the registry's query narrows; a viewer of team-a with
    internal clearance sees team-a's models (and their own outside any project), no prompt."""
    caplog.set_level(logging.WARNING, logger=pushdown.__name__)
    narrow, _, field, *_ = REGISTRY_SEARCHES[kind]
    listing = _registry_listing(
        registry, engines["bundled"], MEMBER, kind, {"max_results": 1000}, pushed=True
    )
    listing.filter_call = _never
    items = json.loads(narrow(listing).body())[field]
    combinations = list(itertools.product(PROJECTS, CLASSIFICATIONS, OWNERS, SHARED))
    readable = {
        f"model-{index:03d}-{p}"
        for index, (p, c, o, _) in enumerate(combinations)
        # MLflow tells a prompt's versions by their own tag, which these versions lack
        if (index % 11 != 5 or kind == "model_versions")
        and c in {"public", "internal", "", None}
        and (p == "team-a" or (p in {"", None} and o == "alice"))
    }
    assert {item["name"] for item in items} == readable
    if kind == "model_versions":
        assert len(items) > len(readable)  # several versions of some models
    assert not [r for r in caplog.records if "batched filter" in r.getMessage()]


def test_an_untranslatable_policy_falls_back_for_the_registry_too(registry, engines, caplog):
    caplog.set_level(logging.WARNING, logger=pushdown.__name__)
    pushdown.FALLBACKS_LOGGED.clear()
    for kind in sorted(REGISTRY_SEARCHES):
        narrow, endpoint, field, *_ = REGISTRY_SEARCHES[kind]
        listing = _registry_listing(
            registry, engines["prefix"], MEMBER, kind, {"max_results": 1000}, pushed=True
        )
        names = {item["name"] for item in json.loads(narrow(listing).body())[field]}
        assert any(name.endswith("-other") for name in names)  # the variant's own rule held
        logged = [r.getMessage() for r in caplog.records if endpoint in r.getMessage()]
        assert logged
        assert "startswith" in logged[0]


def test_the_narrowed_registry_search_reads_the_tag_indexes(registry, engines):
    from mlflow.store.model_registry.dbmodels.models import SqlRegisteredModel
    from mlflow.utils.search_utils import SearchModelUtils
    from sqlalchemy import text

    listing = _registry_listing(registry, engines["bundled"], MEMBER, "registered_models", {}, True)
    readable = registry_listings._readable_condition(
        registry, listing, "registered_model", SqlRegisteredModel.name
    )
    with registry.ManagedSessionMaker() as session:
        matching = registry._get_search_registered_model_filter_query(
            session, SearchModelUtils.parse_search_filter(""), registry._get_dialect()
        )
    statement = matching.with_only_columns(SqlRegisteredModel.name).where(readable).limit(10)
    postgres = registry._get_dialect() == "postgresql"
    with registry.engine.connect() as connection:
        if postgres:
            connection.execute(text("SET enable_seqscan = off"))  # a tiny table: force the plan
        compiled = statement.compile(registry.engine, compile_kwargs={"literal_binds": True})
        explain = "EXPLAIN" if postgres else "EXPLAIN QUERY PLAN"
        plan = " ".join(str(row) for row in connection.execute(text(f"{explain} {compiled}")))
    table = store_indexes.REGISTERED_MODEL_TAGS
    expected = table.postgres_index("mlflow.secure.project") if postgres else table.sqlite_index()
    assert expected in plan, plan


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_policy_key_in_another_case_counts_in_listings_as_in_a_single_read(
    tmp_path, engines, request, database
):
    """A store from before the plugin may hold `MLFLOW.SECURE.CLASSIFICATION` (the server
    refuses to write it): a single read takes it for the classification, and so must every
    listing, though its SQL compares keys exactly (tag_keys: found at start-up, scanned)."""
    from mlflow.entities.model_registry import RegisteredModelTag
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore
    from sqlalchemy import text

    from mlflow_secure.request.listings import tag_keys

    if database == "sqlite":
        uri = f"sqlite:///{tmp_path / 'legacy.db'}"
    else:
        uri = request.getfixturevalue("postgres_server").make_database("legacy_keys")
    tracking, registry = SqlAlchemyStore(uri, "mlflow-artifacts:/"), RegistryStore(uri)
    project = "mlflow.secure.project"
    ids = {}
    for name in ("plain", "legacy"):
        ids[name] = tracking.create_experiment(
            f"exp-{name}", tags=[ExperimentTag(project, "team-a")]
        )
        registry.create_registered_model(
            f"model-{name}", tags=[RegisteredModelTag(project, "team-a")]
        )
        registry.create_model_version(f"model-{name}", "mlflow-artifacts:/m")
    with tracking.engine.begin() as connection:  # behind the server's back
        connection.execute(
            text(
                "INSERT INTO experiment_tags (key, value, experiment_id) "
                "VALUES ('MLFLOW.SECURE.CLASSIFICATION', 'restricted', :id)"
            ),
            {"id": int(ids["legacy"])},
        )
        connection.execute(
            text(
                "INSERT INTO registered_model_tags (workspace, key, value, name) VALUES "
                "('default', 'MLFLOW.SECURE.CLASSIFICATION', 'restricted', 'model-legacy')"
            )
        )
    resolver = ResourceResolver(lambda: tracking, lambda: registry)
    assert resolver.experiment(ids["legacy"])["classification"] == "restricted"
    try:
        assert tag_keys.look_for_case_variants(tracking, store_indexes.EXPERIMENT_TAGS) == 1
        assert tag_keys.look_for_case_variants(registry, store_indexes.REGISTERED_MODEL_TAGS) == 1
        engine = engines["bundled"]  # MEMBER: a viewer of team-a cleared for internal
        search = {"view_type": "ALL", "max_results": 1000}
        assert _all_pages(tracking, engine, MEMBER, search, pushed=True) == ["exp-plain"]
        for kind in sorted(REGISTRY_SEARCHES):
            found = _registry_pages(registry, engine, MEMBER, kind, {"max_results": 1000}, True)
            assert [item if isinstance(item, str) else item[0] for item in found] == ["model-plain"]
    finally:
        tag_keys.FOUND.clear()
    assert (
        tag_keys.look_for_case_variants(
            SqlAlchemyStore(f"sqlite:///{tmp_path / 'new.db'}", "x"), store_indexes.EXPERIMENT_TAGS
        )
        == 0
    )
