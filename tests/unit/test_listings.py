"""Narrowed listings on a real MLflow SQLite store (the filter is a stand-in for OPA's)."""

import json

import pytest
from mlflow.entities import ExperimentTag
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

from mlflow_secure import listings
from mlflow_secure.resources import ResourceResolver


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("listing")
    tracking = SqlAlchemyStore(f"sqlite:///{root / 'mlflow.db'}", "mlflow-artifacts:/")
    for index in range(30):
        project = "even" if index % 2 == 0 else "odd"
        tracking.create_experiment(
            f"exp-{index:02d}", tags=[ExperimentTag("mlflow.secure.project", project)]
        )
    return tracking


def even_only(calls):
    def allowed(resources):
        calls.append(len(resources))
        return {r["id"] for r in resources if r["project"] == "even"}

    return allowed


def page(store, allowed, **params):
    payload = json.loads(listings.search_experiments(params, store, allowed))
    return [e["name"] for e in payload.get("experiments", [])], payload.get("next_page_token")


def test_pages_are_filled_with_readable_items_only(store):
    calls = []
    names, token = page(store, even_only(calls), max_results=5, order_by=["name ASC"])
    assert names == ["exp-00", "exp-02", "exp-04", "exp-06", "exp-08"]
    assert token
    assert calls == [31]  # one batched filter call for the store page (Default included)


def test_paging_through_never_skips_or_repeats(store):
    seen, token = [], None
    while True:
        params = {"max_results": 4, "order_by": ["name ASC"]}
        if token:
            params["page_token"] = token
        names, token = page(store, even_only([]), **params)
        seen += names
        if not token:
            break
    assert seen == [f"exp-{i:02d}" for i in range(0, 30, 2)]


def test_nothing_readable_is_an_empty_page(store):
    names, token = page(store, lambda resources: set(), max_results=10)
    assert (names, token) == ([], None)


@pytest.mark.parametrize("token", ["!!", "e30=", "eyJ0IjogMSwgIm8iOiAtMX0="])
def test_tampered_tokens_are_refused(store, token):
    with pytest.raises(listings.ListingError, match="Invalid page token"):
        listings.search_experiments({"page_token": token}, store, even_only([]))


def test_bad_max_results_and_mlflow_errors(store):
    with pytest.raises(listings.ListingError, match="max_results"):
        listings.search_experiments({"max_results": 60000}, store, even_only([]))
    with pytest.raises(listings.MlflowException):
        listings.search_experiments({"filter": "nonsense ==="}, store, even_only([]))


def test_run_search_keeps_only_readable_experiments_in_request_order(store):
    resolver = ResourceResolver(lambda: store, lambda: None)
    ids = [e.experiment_id for e in store.search_experiments(order_by=["name ASC"])][:6]
    params = {"experiment_ids": [ids[3], ids[1], "999999", ids[0]], "max_results": 5}
    readable = listings.readable_experiments(
        params, resolver, lambda rs: {r["id"] for r in rs if r["project"] == "even"}
    )
    even = {
        e.experiment_id
        for e in store.search_experiments()
        if e.tags.get("mlflow.secure.project") == "even"
    }
    assert readable == [i for i in [ids[3], ids[1], ids[0]] if i in even]
    body = json.loads(listings.narrowed_runs_body(params, readable))
    assert body == {"max_results": 5, "experiment_ids": readable}
    assert (
        listings.readable_experiments({"experiment_ids": "1"}, resolver, lambda rs: set()) is None
    )


def test_scanning_across_many_store_pages(store, monkeypatch):
    """Small store pages: tokens from MLflow's store (bytes) are carried across requests."""
    monkeypatch.setattr(listings, "STORE_PAGE", 7)
    calls = []
    seen, token = [], None
    while True:
        params = {"max_results": 3, "order_by": ["name ASC"]}
        if token:
            params["page_token"] = token
        names, token = page(store, even_only(calls), **params)
        seen += names
        if not token:
            break
    assert seen == [f"exp-{i:02d}" for i in range(0, 30, 2)]
    assert max(calls) <= 7  # each filter call covers at most one store page
