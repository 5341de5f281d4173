"""Registered-model and model-version search end to end: a real server, a real OPA and the
bundled policies narrow both listings to what the caller may read, on `/api` and `/ajax-api`,
on SQLite and PostgreSQL (the policy pushed into the store query; the batched filter's path
is test_listing_fallback.py's)."""

import json

import pytest
from mlflow import MlflowClient

from tests.support import servers, teams

pytestmark = pytest.mark.e2e

PREFIXES = ("/api", "/ajax-api")
MODELS = "/2.0/mlflow/registered-models/search"
VERSIONS = "/2.0/mlflow/model-versions/search"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(request, tmp_path_factory):
    backend = None
    if request.param == "postgresql":
        backend = request.getfixturevalue("postgres_server").make_database("e2e_registry")
    server = servers.start(
        tmp_path_factory.mktemp("registry"),
        workers=2,
        env={"MLFLOW_SECURE_AUTH_MAX_FAILURES": "1000"},
        backend_uri=backend,
    )
    actors = teams.populate(server)

    def ok(response):
        assert response.status_code == 200, response.text
        return response.json()

    def populate(owner, project, models, versions_each):
        actor = actors[owner]
        tags = [{"key": "mlflow.secure.project", "value": project}]
        experiment = ok(
            actor.call(
                "POST", "/2.0/mlflow/experiments/create", json={"name": project, "tags": tags}
            )
        )["experiment_id"]
        run = ok(actor.call("POST", "/2.0/mlflow/runs/create", json={"experiment_id": experiment}))
        run_id = run["run"]["info"]["run_id"]
        for index in range(models):
            name = f"{project}-{index:02d}"
            ok(
                actor.call(
                    "POST",
                    "/2.0/mlflow/registered-models/create",
                    json={"name": name, "tags": tags},
                )
            )
            for _ in range(versions_each):
                ok(
                    actor.call(
                        "POST",
                        "/2.0/mlflow/model-versions/create",
                        json={"name": name, "source": f"runs:/{run_id}/model", "run_id": run_id},
                    )
                )

    populate("alice", "fraud", models=6, versions_each=2)
    populate("bob", "churn", models=5, versions_each=1)
    yield server, actors
    server.interrupt()


def names(payload, key):
    return [item["name"] for item in payload.get(key, [])]


@pytest.mark.parametrize("prefix", PREFIXES)
def test_each_team_lists_only_its_own_models_and_versions(world, prefix):
    _, actors = world
    bob = actors["bob"]
    models = names(bob.search(MODELS, prefix, max_results=100), "registered_models")
    assert models == [f"churn-{i:02d}" for i in range(5)]
    versions = names(bob.search(VERSIONS, prefix), "model_versions")
    assert sorted(versions) == [f"churn-{i:02d}" for i in range(5)]
    # Naming alice's model outright finds nothing, exactly like a model that does not exist.
    assert bob.search(VERSIONS, prefix, filter="name='fraud-00'") == {}
    assert bob.search(MODELS, prefix, filter="name='fraud-00'") == {}
    assert bob.search(MODELS, prefix, filter="name='no-such-model'") == {}
    alice = actors["alice"]
    models = names(alice.search(MODELS, prefix), "registered_models")
    assert models == [f"fraud-{i:02d}" for i in range(6)]
    versions = alice.search(VERSIONS, prefix, filter="name='fraud-03'")["model_versions"]
    assert [(v["name"], v["version"]) for v in versions] == [("fraud-03", "2"), ("fraud-03", "1")]


@pytest.mark.parametrize("prefix", PREFIXES)
def test_each_team_lists_only_its_own_experiments_on_this_database_too(world, prefix):
    _, actors = world
    for who, project in (("alice", "fraud"), ("bob", "churn")):
        found = names(actors[who].search("/2.0/mlflow/experiments/search", prefix), "experiments")
        assert found == [project]
    assert (
        actors["bob"].search("/2.0/mlflow/experiments/search", prefix, filter="name='fraud'") == {}
    )


def test_the_bundled_policy_is_pushed_into_the_store_query(world):
    """The answers above came from the store query itself, not from the batched filter."""
    server, actors = world
    for prefix in PREFIXES:
        assert actors["bob"].search(MODELS, prefix, max_results=3)["registered_models"]
        assert actors["bob"].search(VERSIONS, prefix, max_results=3)["model_versions"]
        assert actors["bob"].search("/2.0/mlflow/experiments/search", prefix)["experiments"]
    assert "uses the batched filter" not in server.log()


@pytest.mark.parametrize("who", ["admin", "audrey"])
def test_administrators_and_auditors_see_everything(world, who):
    _, actors = world
    for prefix in PREFIXES:
        models = names(actors[who].search(MODELS, prefix), "registered_models")
        assert len(models) == 11
        assert {m.split("-")[0] for m in models} == {"fraud", "churn"}
        versions = names(actors[who].search(VERSIONS, prefix), "model_versions")
        assert len(versions) == 6 * 2 + 5


@pytest.mark.parametrize("prefix", PREFIXES)
def test_pages_are_full_and_tokens_never_skip_or_repeat(world, prefix):
    _, actors = world
    alice = actors["alice"]
    for path, key, size, expected in (
        (MODELS, "registered_models", 4, [f"fraud-{i:02d}" for i in range(6)]),
        (VERSIONS, "model_versions", 5, None),
    ):
        everything = alice.search(path, prefix, order_by="name ASC")
        seen, token, pages = [], None, []
        while True:
            params = {"max_results": size, "order_by": "name ASC"}
            page = alice.search(path, prefix, **params, **({"page_token": token} if token else {}))
            pages.append(len(page.get(key, [])))
            seen += [(item["name"], item.get("version")) for item in page.get(key, [])]
            token = page.get("next_page_token")
            assert "total" not in json.dumps(page)
            if not token:
                break
        assert seen == [(item["name"], item.get("version")) for item in everything[key]]
        assert all(count == size for count in pages[:-1])  # every page but the last is full
        assert 0 < pages[-1] <= size
        if expected:
            assert [name for name, _ in seen] == expected
        else:
            assert len(seen) == 12
            assert {name for name, _ in seen} == {f"fraud-{i:02d}" for i in range(6)}


@pytest.mark.parametrize("prefix", PREFIXES)
def test_bad_tokens_and_page_sizes_are_refused(world, prefix):
    _, actors = world
    bob = actors["bob"]
    for path in (MODELS, VERSIONS):
        bad = bob.call("GET", path, prefix=prefix, params={"page_token": "!!"})
        assert bad.status_code == 400, bad.text
    too_many = bob.call("GET", MODELS, prefix=prefix, params={"max_results": 1001})
    assert too_many.status_code == 400
    assert too_many.json()["error_code"] == "INVALID_PARAMETER_VALUE"


def test_the_stock_client_pages_through_bobs_models(world, monkeypatch):
    server, actors = world
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_AUTH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", actors["bob"].key)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    client = MlflowClient()
    seen, token = [], None
    while True:
        page = client.search_registered_models(max_results=2, page_token=token)
        seen += [model.name for model in page]
        token = page.token
        if not token:
            break
    assert seen == [f"churn-{i:02d}" for i in range(5)]
    versions = client.search_model_versions()
    assert sorted(v.name for v in versions) == seen
