"""Registered-model and model-version search narrowed on a real MLflow SQLite registry store
(the filter is a stand-in for OPA's)."""

import json

import pytest
from mlflow.entities.model_registry import ModelVersionTag, RegisteredModelTag
from mlflow.exceptions import MlflowException
from mlflow.protos.model_registry_pb2 import SearchModelVersions, SearchRegisteredModels
from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore
from mlflow.utils.proto_json_utils import message_to_json

from mlflow_secure.request import listings
from mlflow_secure.request.listings import registry
from mlflow_secure.request.lookups import ResourceResolver

PROMPT = "tags.`mlflow.prompt.is_prompt` = 'true'"


def project_of(index):
    return "even" if index % 2 == 0 else "odd"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("registry")
    models = SqlAlchemyStore(f"sqlite:///{root / 'registry.db'}")
    for index in range(30):
        name = f"rm-{index:02d}"
        tags = [
            RegisteredModelTag("mlflow.secure.project", project_of(index)),
            RegisteredModelTag("mlflow.user", "alice"),
            RegisteredModelTag("other", "ignored by the policy"),
        ]
        if index % 3 == 0:
            tags.append(RegisteredModelTag("mlflow.secure.classification", "internal"))
        models.create_registered_model(name, tags=tags)
        for version in range(index % 3 + 1):  # 1, 2 or 3 versions
            models.create_model_version(
                name,
                f"runs:/run-{index % 4}/model",
                run_id=f"run-{index % 4}",
                tags=[ModelVersionTag("stage", "prod" if version == 0 else "dev")],
            )
    models.delete_model_version("rm-02", "3")  # never listed, as in MLflow
    models.create_registered_model("carols", tags=[RegisteredModelTag("mlflow.user", "carol")])
    models.create_model_version("carols", "runs:/run-0/model", run_id="run-0")
    prompt = [
        RegisteredModelTag("mlflow.prompt.is_prompt", "true"),
        RegisteredModelTag("mlflow.secure.project", "even"),
    ]
    models.create_registered_model("prompt-even", tags=prompt)
    models.create_model_version(
        "prompt-even",
        "prompt-template",
        tags=[ModelVersionTag("mlflow.prompt.is_prompt", "true")],
    )
    return models


class _PublicOnly:
    """The store seen through MLflow's public API only (what a non-SQL store offers)."""

    def __init__(self, store):
        self._store = store

    def search_registered_models(self, **kwargs):
        return self._store.search_registered_models(**kwargs)

    def search_model_versions(self, **kwargs):
        return self._store.search_model_versions(**kwargs)

    def get_registered_model(self, name):
        return self._store.get_registered_model(name)


@pytest.fixture(params=["sql", "scanned"])
def any_store(request, store):
    return store if request.param == "sql" else _PublicOnly(store)


def even_only(calls):
    def allowed(resources):
        calls.append(resources)
        return {r["id"] for r in resources if r["project"] == "even"}

    return allowed


def everything(resources):
    return {r["id"] for r in resources}


def request(store, filter_call, method="GET", **params):
    resolver = ResourceResolver(lambda: None, lambda: store)
    return listings.ListingRequest(params, method, resolver, filter_call)


def models(store, allowed, method="GET", **params):
    reply = registry.search_registered_models(request(store, allowed, method, **params))
    assert reply.status == 200
    payload = json.loads(reply.body())
    names = [m["name"] for m in payload.get("registered_models", [])]
    return names, payload.get("next_page_token")


def versions(store, allowed, method="GET", **params):
    reply = registry.search_model_versions(request(store, allowed, method, **params))
    assert reply.status == 200
    payload = json.loads(reply.body())
    found = [(v["name"], v["version"]) for v in payload.get("model_versions", [])]
    return found, payload.get("next_page_token")


def page_through(fetch, store, **params):
    seen, token, pages = [], None, 0
    while True:
        extra = {"page_token": token} if token else {}
        items, token = fetch(store, even_only([]), **params, **extra)
        assert items, "a page with a token after it is never empty"
        seen += items
        pages += 1
        if not token:
            return seen, pages


def test_model_pages_are_filled_with_readable_items_only_in_one_call_over_groups(any_store):
    calls = []
    names, token = models(any_store, even_only(calls), max_results="5", order_by="name ASC")
    assert names == ["rm-00", "rm-02", "rm-04", "rm-06", "rm-08"]
    assert token
    assert len(calls) == 1  # ONE filter call ...
    groups = calls[0]
    # ... over distinct attribute sets, never over items: even/odd by internal/none, plus
    # carol's model outside any project
    assert len(groups) == 5
    assert all(g["group"] is True and g["id"].startswith("group-") for g in groups)
    assert all(g["type"] == "registered_model" for g in groups)
    assert {g["classification"] for g in groups} == {"internal", None}
    assert {g["owner"] for g in groups} == {"alice", "carol"}
    policy_tags = {"mlflow.secure.project", "mlflow.secure.classification"}
    assert all(set(g["tags"]) <= policy_tags for g in groups)  # "other" is not the policy's


def test_model_paging_never_skips_or_repeats(any_store):
    seen, pages = page_through(models, any_store, max_results="4", order_by="name ASC")
    assert seen == [f"rm-{i:02d}" for i in range(0, 30, 2)]
    assert pages == 4  # 4 + 4 + 4 + 3: filled pages, no empty page at the end


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"order_by": "name DESC"},
        {"order_by": ["last_updated_timestamp DESC", "name ASC"]},
        {"filter": "name LIKE 'rm-1%'", "order_by": "name DESC"},
        {"filter": "name IN ('rm-04', 'rm-05', 'prompt-even')"},
        {"filter": "tags.`mlflow.secure.classification` = 'internal'"},
        {"filter": PROMPT},
        {"filter": "tags.`mlflow.prompt.is_prompt` != 'true'"},
    ],
)
def test_models_are_mlflows_answer_without_the_unreadable(any_store, store, params):
    """Same filter grammar, order and prompt handling as MLflow: its answer, narrowed."""
    order_by = params.get("order_by")
    expected = [
        m.name
        for m in store.search_registered_models(
            filter_string=params.get("filter"),
            order_by=[order_by] if isinstance(order_by, str) else order_by,
            max_results=1000,
        )
        if m.tags.get("mlflow.secure.project") == "even"
    ]
    method = "POST" if isinstance(order_by, list) else "GET"
    reply = registry.search_registered_models(request(any_store, even_only([]), method, **params))
    names = [m["name"] for m in json.loads(reply.body()).get("registered_models", [])]
    assert names == expected
    assert ("prompt-even" in names) == (params.get("filter") == PROMPT)


def test_readable_pages_are_exactly_mlflows_json(any_store, store):
    ours = registry.search_registered_models(request(any_store, everything, max_results="3"))
    theirs = SearchRegisteredModels.Response()
    theirs.registered_models.extend(
        m.to_proto() for m in store.search_registered_models(max_results=3)
    )
    expected = json.loads(message_to_json(theirs))
    payload = json.loads(ours.body())
    assert payload.pop("next_page_token")
    assert payload == expected
    assert expected["registered_models"][0]["latest_versions"]  # the full entity, not a stub
    ours = registry.search_model_versions(request(any_store, everything, max_results="7"))
    theirs = SearchModelVersions.Response()
    theirs.model_versions.extend(v.to_proto() for v in store.search_model_versions(max_results=7))
    payload = json.loads(ours.body())
    assert payload.pop("next_page_token")
    assert payload == json.loads(message_to_json(theirs))


def test_versions_of_unreadable_models_are_hidden_in_one_call(any_store):
    calls = []
    found, token = versions(any_store, even_only(calls), filter="name = 'rm-01'")
    assert (found, token) == ([], None)
    assert len(calls) == 1
    assert calls[0]
    assert all(g["type"] == "model_version" for g in calls[0])
    assert {g["project"] for g in calls[0]} == {"odd"}
    found, _ = versions(any_store, even_only([]), filter="name = 'rm-02'")
    assert found == [("rm-02", "2"), ("rm-02", "1")]  # version 3 is deleted


def test_version_groups_are_per_model_attributes_not_per_version(any_store):
    calls = []
    versions(any_store, even_only(calls))
    assert len(calls) == 1
    assert len(calls[0]) == 5  # as for models: even/odd by internal/none, plus carol's
    assert all(g["group"] is True and g["id"].startswith("group-") for g in calls[0])


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"filter": "name LIKE 'rm-2%'", "order_by": "version_number DESC"},
        {"filter": "run_id IN ('run-0', 'run-2')", "order_by": "name ASC"},
        {"filter": "tags.stage = 'dev'"},
        {"filter": "version_number >= 2", "order_by": "creation_timestamp DESC"},
        {"filter": PROMPT},
    ],
)
def test_versions_are_mlflows_answer_without_the_unreadable(any_store, store, params):
    readable = {
        m.name
        for filter_string in (None, PROMPT)
        for m in store.search_registered_models(filter_string=filter_string, max_results=1000)
        if m.tags.get("mlflow.secure.project") == "even"
    }
    order_by = params.get("order_by")
    expected = [
        (v.name, str(v.version))
        for v in store.search_model_versions(
            filter_string=params.get("filter"), order_by=[order_by] if order_by else None
        )
        if v.name in readable
    ]
    found, _ = versions(any_store, even_only([]), **params)
    assert found == expected
    assert found


def test_version_paging_never_skips_or_repeats(any_store, store):
    seen, _ = page_through(versions, any_store, max_results="4", order_by="name ASC")
    expected = [
        (v.name, str(v.version))
        for v in store.search_model_versions(order_by=["name ASC"])
        if v.name.startswith("rm-") and int(v.name[3:]) % 2 == 0
    ]
    assert seen == expected
    assert len(seen) == len(set(seen)) > 20


def test_a_rule_about_one_id_never_matches_a_listed_group(store):
    names, _ = models(store, lambda resources: {r["id"] for r in resources if r["id"] == "rm-00"})
    assert names == []
    found, _ = versions(
        store, lambda resources: {r["id"] for r in resources if r["id"] in ("rm-00", "rm-00/1")}
    )
    assert found == []


def test_nothing_readable_is_an_empty_page(any_store):
    assert models(any_store, lambda resources: set(), max_results="10") == ([], None)
    assert versions(any_store, lambda resources: set(), max_results="10") == ([], None)


def test_past_the_end_is_an_empty_page(store):
    token = listings.core.encode_offset(1000)
    assert models(store, even_only([]), page_token=token) == ([], None)
    assert versions(store, even_only([]), page_token=token) == ([], None)


@pytest.mark.parametrize("token", ["!!", "e30=", "eyJvIjogLTF9", "eyJvIjogdHJ1ZX0="])
@pytest.mark.parametrize(
    "search", [registry.search_registered_models, registry.search_model_versions]
)
def test_tampered_tokens_are_refused(store, search, token):
    with pytest.raises(listings.ListingError, match="Invalid page token"):
        search(request(store, even_only([]), page_token=token))


def test_mlflows_own_page_tokens_are_refused(store):
    mlflows = store.search_registered_models(max_results=1).token.decode()
    with pytest.raises(listings.ListingError, match="Invalid page token"):
        registry.search_registered_models(request(store, even_only([]), page_token=mlflows))


@pytest.mark.parametrize(
    ("search", "limit"),
    [(registry.search_registered_models, 1000), (registry.search_model_versions, 200_000)],
)
def test_max_results_bounds_are_mlflows(store, search, limit):
    assert search(request(store, even_only([]), max_results=str(limit))).status == 200
    for bad in (str(limit + 1), "0", "-3"):
        with pytest.raises(MlflowException, match="max_results") as info:
            search(request(store, even_only([]), max_results=bad))
        assert info.value.error_code == "INVALID_PARAMETER_VALUE"
    with pytest.raises(listings.ListingError, match="Invalid"):
        search(request(store, even_only([]), max_results="many"))


def test_default_page_sizes_are_mlflows(store):
    listing = request(store, everything)
    assert registry.parse(listing, SearchRegisteredModels, 1000).count == 100
    assert registry.parse(listing, SearchModelVersions, 200_000).count == 200_000


def test_bodies_may_spell_fields_in_camel_case_but_not_both_ways(store):
    names, _ = models(store, even_only([]), "POST", maxResults=2, orderBy=["name DESC"])
    assert names == ["rm-28", "rm-26"]
    with pytest.raises(MlflowException, match="both"):
        registry.search_registered_models(
            request(store, even_only([]), "POST", max_results=2, maxResults=3)
        )
    # A query string names proto fields only, as MLflow's handler reads it.
    names, _ = models(store, even_only([]), "GET", maxResults="2")
    assert len(names) == 15


def test_mlflow_errors_are_mlflows(any_store):
    with pytest.raises(MlflowException):
        models(any_store, even_only([]), filter="nonsense ===")
    with pytest.raises(MlflowException):
        models(any_store, even_only([]), order_by="description ASC")
    with pytest.raises(MlflowException):
        versions(any_store, even_only([]), filter="source_path > 'x'")


def test_the_policy_is_asked_once_per_request(store):
    listing = request(store, even_only([]))
    registry.search_model_versions(listing)
    with pytest.raises(RuntimeError, match="once"):
        listing.allowed([{"id": "x"}])


def test_both_searches_are_registered_narrowers():
    assert listings.NARROWERS["mlflow.registered_models.search"] is (
        registry.search_registered_models
    )
    assert listings.NARROWERS["mlflow.model_versions.search"] is registry.search_model_versions


def test_large_version_pages_load_in_chunks_in_mlflows_order(store, monkeypatch):
    monkeypatch.setattr(registry, "LOAD_CHUNK", 4)
    ours = registry.search_model_versions(request(store, everything, order_by="name DESC"))
    theirs = SearchModelVersions.Response()
    theirs.model_versions.extend(
        v.to_proto() for v in store.search_model_versions(order_by=["name DESC"])
    )
    assert len(theirs.model_versions) > 50
    assert json.loads(ours.body()) == json.loads(message_to_json(theirs))
