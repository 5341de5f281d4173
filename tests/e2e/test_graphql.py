"""GraphQL end to end: a real server, a real OPA and the bundled policies, POSTs to /graphql.

Two teams (alice in fraud, bob in churn), an auditor and the administrator; every root field
is judged by what it reads, searches keep only readable experiments, model versions are
checked against their registered models, and alias batching is refused.
"""

import httpx
import pytest

from tests.support import servers, teams

pytestmark = pytest.mark.e2e

GET_RUN = '{ mlflowGetRun(input: {runId: "<run>"}) { run { info { runId experimentId } } } }'
SEARCH_RUNS = """
  query SearchRuns($data: MlflowSearchRunsInput!) {
    mlflowSearchRuns(input: $data) {
      runs { info { runId experimentId } experiment { name } data { metrics { key value } } }
      nextPageToken
    }
  }
"""


def ok(response):
    assert response.status_code == 200, response.text
    return response.json()


def data(response):
    payload = ok(response)
    assert payload["errors"] is None, payload
    return payload["data"]


def refused(response, status=403):
    assert response.status_code == status, response.text
    payload = response.json()
    code = {403: "PERMISSION_DENIED", 400: "INVALID_PARAMETER_VALUE"}[status]
    assert payload["error_code"] == code, payload
    return payload["message"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    server = servers.start(
        tmp_path_factory.mktemp("graphql"), env={"MLFLOW_SECURE_AUTH_MAX_FAILURES": "1000"}
    )
    actors = teams.populate(server, bob_clearance="confidential")
    ids = {}

    def experiment(name, project):
        tags = [{"key": "mlflow.secure.project", "value": project}]
        body = {"name": name, "tags": tags}
        return ok(actors["admin"].call("POST", "/2.0/mlflow/experiments/create", json=body))

    def run(owner, experiment_id, dataset):
        actor = actors[owner]
        body = {"experiment_id": experiment_id}
        run_id = ok(actor.call("POST", "/2.0/mlflow/runs/create", json=body))["run"]["info"][
            "run_id"
        ]
        metric = {"run_id": run_id, "key": "loss", "value": 0.5, "timestamp": 1, "step": 1}
        ok(actor.call("POST", "/2.0/mlflow/runs/log-metric", json=metric))
        inputs = {
            "run_id": run_id,
            "datasets": [
                {
                    "tags": [{"key": "mlflow.data.context", "value": "training"}],
                    "dataset": {
                        "name": dataset,
                        "digest": dataset[:8],
                        "source_type": "local",
                        "source": "{}",
                    },
                }
            ],
        }
        ok(actor.call("POST", "/2.0/mlflow/runs/log-inputs", json=inputs))
        return run_id

    ids["fraud"] = experiment("fraud-exp", "fraud")["experiment_id"]
    ids["churn"] = experiment("churn-exp", "churn")["experiment_id"]
    ids["alice_run"] = run("alice", ids["fraud"], "fraud-data")
    ids["bob_run"] = run("bob", ids["churn"], "churn-data")
    ids["bob_mixed"] = run("bob", ids["churn"], "churn-more")

    def register(actor, model, project, run_id):
        tags = [{"key": "mlflow.secure.project", "value": project}]
        ok(
            actor.call(
                "POST", "/2.0/mlflow/registered-models/create", json={"name": model, "tags": tags}
            )
        )
        version = {"name": model, "source": f"runs:/{run_id}/model", "run_id": run_id}
        ok(actor.call("POST", "/2.0/mlflow/model-versions/create", json=version))

    register(actors["bob"], "churn-model", "churn", ids["bob_run"])
    # bob's run registered as a version of a fraud model bob may not read
    register(actors["admin"], "fraud-model", "fraud", ids["bob_mixed"])
    ids["missing_run"] = "0" * 32
    yield server, actors, ids
    server.interrupt()


def fill(template, ids):
    for name, value in ids.items():
        template = template.replace(f"<{name}>", value)
    return template


# ------------------------------------------------------------------------- direct reads

THEIRS = [
    GET_RUN.replace("<run>", "<alice_run>"),
    '{ mlflowGetExperiment(input: {experimentId: "<fraud>"}) { experiment { name tags { key } } } '
    "}",
    '{ mlflowListArtifacts(input: {runId: "<alice_run>"}) { rootUri files { path } } }',
    '{ mlflowGetMetricHistoryBulkInterval(input: {runIds: ["<bob_run>", "<alice_run>"], '
    'metricKey: "loss"}) { metrics { runId value } } }',
    # hidden behind an alias next to a readable field
    '{ mine: mlflowGetRun(input: {runId: "<bob_run>"}) { run { info { runId } } } '
    'theirs: mlflowGetRun(input: {runUuid: "<alice_run>"}) { run { info { runId } } } }',
]


@pytest.mark.parametrize("query", THEIRS)
def test_bob_cannot_read_alices_runs_experiments_artifacts_or_metrics(world, query):
    _, actors, ids = world
    message = refused(actors["bob"].graphql(fill(query, ids)))
    assert "you may not read" in message
    # alice reads the same through GraphQL (the mixed one names bob's run: not hers)
    if "bob_run" not in query:
        assert data(actors["alice"].graphql(fill(query, ids)))


def test_a_missing_run_is_refused_like_a_forbidden_one(world):
    _, actors, ids = world
    bob = actors["bob"]
    forbidden = bob.graphql(fill(GET_RUN.replace("<run>", "<alice_run>"), ids))
    missing = bob.graphql(fill(GET_RUN.replace("<run>", "<missing_run>"), ids))
    assert (forbidden.status_code, forbidden.json()) == (missing.status_code, missing.json())


def test_variables_are_judged_as_they_will_be_read(world):
    _, actors, ids = world
    query = "query ($id: String) { mlflowGetRun(input: {runId: $id}) { run { info { runId } } } }"
    refused(actors["bob"].graphql(query, {"id": ids["alice_run"]}))
    got = data(actors["bob"].graphql(query, {"id": ids["bob_run"]}))
    assert got["mlflowGetRun"]["run"]["info"]["runId"] == ids["bob_run"]


def test_alice_reads_her_own(world):
    _, actors, ids = world
    alice = actors["alice"]
    run = data(alice.graphql(fill(GET_RUN.replace("<run>", "<alice_run>"), ids)))
    assert run["mlflowGetRun"]["run"]["info"]["experimentId"] == ids["fraud"]
    history = (
        '{ mlflowGetMetricHistoryBulkInterval(input: {runIds: ["<alice_run>"], metricKey: "loss"})'
        " { metrics { runId value step } } }"
    )
    metrics = data(alice.graphql(fill(history, ids)))["mlflowGetMetricHistoryBulkInterval"]
    assert metrics["metrics"] == [{"runId": ids["alice_run"], "value": 0.5, "step": "1"}]
    # a GET request is read from its query string, and MLflow runs exactly that
    query = fill(GET_RUN.replace("<run>", "<alice_run>"), ids)
    response = alice.server.api("GET", "/graphql", alice.key, params={"query": query})
    assert response.json()["data"]["mlflowGetRun"]["run"]["info"]["runId"] == ids["alice_run"]
    theirs = fill(GET_RUN.replace("<run>", "<bob_run>"), ids)
    refused(alice.server.api("GET", "/graphql", alice.key, params={"query": theirs}))


def test_a_get_body_cannot_smuggle_another_query(world):
    server, actors, ids = world
    alice = actors["alice"]
    mine = fill(GET_RUN.replace("<run>", "<alice_run>"), ids)
    theirs = fill(GET_RUN.replace("<run>", "<bob_run>"), ids)
    response = httpx.request(
        "GET",
        server.url + "/graphql",
        params={"query": mine},
        json={"query": theirs},
        headers={"Authorization": f"Bearer {alice.key}"},
        timeout=30,
    )
    # refused by the front door, or answered from the query string: never the body's query
    assert response.status_code in (200, 400), response.text
    assert ids["bob_run"] not in response.text


# ------------------------------------------------------------------------- searches


def test_bobs_run_search_over_both_teams_returns_only_his_runs(world):
    _, actors, ids = world
    variables = {"data": {"experimentIds": [ids["fraud"], ids["churn"]], "maxResults": 50}}
    found = data(actors["bob"].graphql(SEARCH_RUNS, variables))["mlflowSearchRuns"]["runs"]
    assert {r["info"]["runId"] for r in found} == {ids["bob_run"], ids["bob_mixed"]}
    assert {r["experiment"]["name"] for r in found} == {"churn-exp"}
    # the same as a literal, and through MLflow's read-only "mutation" of the same field
    literal = fill(
        '{ mlflowSearchRuns(input: {experimentIds: ["<fraud>", "<churn>"]}) '
        "{ runs { info { runId } } } }",
        ids,
    )
    for query in (literal, "mutation " + literal):
        runs = data(actors["bob"].graphql(query))["mlflowSearchRuns"]["runs"]
        assert {r["info"]["runId"] for r in runs} == {ids["bob_run"], ids["bob_mixed"]}
    # alice sees only hers, the administrator and the auditor everything
    found = data(actors["alice"].graphql(SEARCH_RUNS, variables))["mlflowSearchRuns"]["runs"]
    assert [r["info"]["runId"] for r in found] == [ids["alice_run"]]
    for who in ("admin", "audrey"):
        found = data(actors[who].graphql(SEARCH_RUNS, variables))["mlflowSearchRuns"]["runs"]
        assert len(found) == 3


def test_a_search_over_nothing_readable_is_empty(world):
    _, actors, ids = world
    variables = {"data": {"experimentIds": [ids["fraud"], "987654"]}}
    found = data(actors["bob"].graphql(SEARCH_RUNS, variables))["mlflowSearchRuns"]
    assert found["runs"] == []
    # beside another read, the search is sent to MLflow naming no experiment: still empty
    query = fill(
        '{ mlflowSearchRuns(input: {experimentIds: ["<fraud>"]}) { runs { info { runId } } } '
        'mlflowGetRun(input: {runId: "<bob_run>"}) { run { info { runId } } } }',
        ids,
    )
    both = data(actors["bob"].graphql(query))
    assert both["mlflowSearchRuns"]["runs"] == []
    assert both["mlflowGetRun"]["run"]["info"]["runId"] == ids["bob_run"]


def test_bobs_dataset_search_over_both_teams_returns_only_his_datasets(world):
    _, actors, ids = world
    query = fill(
        'mutation { mlflowSearchDatasets(input: {experimentIds: ["<fraud>", "<churn>"]}) '
        "{ datasetSummaries { experimentId name } } }",
        ids,
    )
    summaries = data(actors["bob"].graphql(query))["mlflowSearchDatasets"]["datasetSummaries"]
    assert {(s["experimentId"], s["name"]) for s in summaries} == {
        (ids["churn"], "churn-data"),
        (ids["churn"], "churn-more"),
    }
    only_theirs = query.replace(f'"{ids["churn"]}"', "")
    empty = data(actors["bob"].graphql(only_theirs))["mlflowSearchDatasets"]
    assert empty == {"datasetSummaries": []}
    everything = data(actors["admin"].graphql(query))["mlflowSearchDatasets"]["datasetSummaries"]
    assert len(everything) == 3


# ------------------------------------------------------------------------- model versions

RUN_WITH_VERSIONS = (
    '{ mlflowGetRun(input: {runId: "<run>"}) '
    "{ run { info { runId } modelVersions { name version } } } }"
)


def test_a_runs_model_versions_show_only_when_all_are_readable(world):
    _, actors, ids = world
    bob = actors["bob"]
    mine = data(bob.graphql(fill(RUN_WITH_VERSIONS.replace("<run>", "<bob_run>"), ids)))
    assert mine["mlflowGetRun"]["run"]["modelVersions"] == [{"name": "churn-model", "version": "1"}]
    mixed = fill(RUN_WITH_VERSIONS.replace("<run>", "<bob_mixed>"), ids)
    assert "mlflowGetRun.run.modelVersions" in refused(bob.graphql(mixed))
    without = fill(GET_RUN.replace("<run>", "<bob_mixed>"), ids)
    assert data(bob.graphql(without))["mlflowGetRun"]["run"]["info"]["runId"] == ids["bob_mixed"]
    versions = data(actors["admin"].graphql(mixed))["mlflowGetRun"]["run"]["modelVersions"]
    assert versions == [{"name": "fraud-model", "version": "1"}]


def test_registry_wide_model_version_reads_are_for_administrators_and_auditors(world):
    _, actors, ids = world
    search = "{ mlflowSearchModelVersions(input: {}) { modelVersions { name version } } }"
    in_runs = fill(
        '{ mlflowSearchRuns(input: {experimentIds: ["<churn>"]}) '
        "{ runs { info { runId } modelVersions { name } } } }",
        ids,
    )
    for query in (search, in_runs):
        assert "REST model-versions search" in refused(actors["bob"].graphql(query))
    for who in ("admin", "audrey"):
        names = data(actors[who].graphql(search))["mlflowSearchModelVersions"]["modelVersions"]
        assert {v["name"] for v in names} == {"churn-model", "fraud-model"}
        runs = data(actors[who].graphql(in_runs))["mlflowSearchRuns"]["runs"]
        assert {v["name"] for r in runs for v in r["modelVersions"]} == {
            "churn-model",
            "fraud-model",
        }


# ------------------------------------------------------------------------- batching


def test_alias_batching_is_refused(world):
    _, actors, ids = world
    bob = actors["bob"]
    many = " ".join(
        f'r{i}: mlflowGetRun(input: {{runId: "{ids["bob_run"]}"}}) {{ run {{ info {{ runId }} }} }}'
        for i in range(11)
    )
    assert "root fields" in refused(bob.graphql("{ " + many + " }"), 400)
    first, rest = many.split(" r6:")
    spread = "{ ...A ...B } fragment A on Query { " + first + " }"
    spread += " fragment B on Query { r6:" + rest + " }"
    assert "root fields" in refused(bob.graphql(spread), 400)
    deep = "{ __schema { types { fields { type " + "{ ofType " * 6 + "{ name" + " }" * 11
    assert "nest" in refused(bob.graphql(deep), 400)
    # the administrator is held to the same limits
    refused(actors["admin"].graphql("{ " + many + " }"), 400)


def test_the_administrator_reads_everything(world):
    _, actors, ids = world
    admin = actors["admin"]
    query = fill(
        "{ "
        + " ".join(
            f'{name}: mlflowGetRun(input: {{runId: "<{name}>"}}) '
            "{ run { info { runId } experiment { name } modelVersions { name } } }"
            for name in ("alice_run", "bob_run", "bob_mixed")
        )
        + ' e: mlflowGetExperiment(input: {experimentId: "<fraud>"}) { experiment { name } }'
        + ' a: mlflowListArtifacts(input: {runId: "<alice_run>"}) { rootUri }'
        + " }",
        ids,
    )
    got = data(admin.graphql(query))
    assert got["alice_run"]["run"]["experiment"]["name"] == "fraud-exp"
    assert got["e"]["experiment"]["name"] == "fraud-exp"
    assert got["a"]["rootUri"]


def test_the_route_is_served_to_ordinary_users_now(world):
    """/graphql reaches the policy as a filtered listing: not refused before narrowing."""
    _, actors, _ids = world
    assert data(actors["bob"].graphql("{ __typename }")) == {"__typename": "Query"}
