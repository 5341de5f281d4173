"""GraphQL authorised field by field, on a real MLflow SQLite store (the filter is a stand-in
for OPA's: it reads the project, and grants the unfiltered registry listing to admins only).

Queries name stored things as `<name>` placeholders, filled from the fixture's ids.
"""

import json

import pytest
from graphql import GraphQLObjectType, parse
from mlflow.entities import ExperimentTag, ViewType
from mlflow.entities.model_registry import RegisteredModelTag
from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

from mlflow_secure.request import listings
from mlflow_secure.request.listings import graphql as gql
from mlflow_secure.request.lookups import ResourceResolver

GET_RUN = '{ mlflowGetRun(input: {runId: "<run>"}) { run { info { runId experimentId } } } }'


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    uri = f"sqlite:///{tmp_path_factory.mktemp('graphql') / 'mlflow.db'}"
    tracking = SqlAlchemyStore(uri, "mlflow-artifacts:/")
    registry = RegistryStore(uri)
    ids = {}
    for name, project in (("fraud", "fraud"), ("churn", "churn"), ("churn2", "churn")):
        tags = [ExperimentTag("mlflow.secure.project", project)]
        ids[name] = tracking.create_experiment(name, tags=tags)
    for run, experiment in (("fraud_run", "fraud"), ("churn_run", "churn"), ("mixed", "churn")):
        ids[run] = tracking.create_run(ids[experiment], "u", 0, [], run).info.run_id
    # `mixed` is a churn run registered as a version of a fraud model
    for model, project, run in (
        ("churn-model", "churn", "churn_run"),
        ("fraud-model", "fraud", "mixed"),
    ):
        tags = [RegisteredModelTag("mlflow.secure.project", project)]
        registry.create_registered_model(model, tags=tags)
        registry.create_model_version(model, f"runs:/{ids[run]}/m", run_id=ids[run])
    ids["missing_run"] = "0" * 32
    ids["missing_experiment"] = "987654"
    return tracking, registry, ids


def fill(template, values):
    for name, value in values.items():
        template = template.replace(f"<{name}>", value)
    return template


def churn_reader(calls, admin=False):
    """Reads project churn; an administrator reads everything, the unfiltered registry too."""

    def allowed(resources):
        calls.append(resources)
        return {r["id"] for r in resources if admin or r.get("project") == "churn"}

    return allowed


def ask(world, query, variables=None, operation=None, calls=None, admin=False, method="POST"):
    tracking, registry, ids = world
    params = {"query": fill(query, ids)}
    if variables is not None:
        params["variables"] = variables
    if operation is not None:
        params["operationName"] = operation
    resolver = ResourceResolver(lambda: tracking, lambda: registry)
    calls = [] if calls is None else calls
    listing = listings.ListingRequest(params, method, resolver, churn_reader(calls, admin))
    return gql.narrow(listing)


def sent(reply):
    assert isinstance(reply, listings.Rewrite), reply.body() if reply else reply
    return json.loads(reply.body)


def denied(reply):
    assert isinstance(reply, listings.JsonReply)
    assert reply.status == 403
    payload = json.loads(reply.body())
    assert payload["error_code"] == "PERMISSION_DENIED"
    return payload["message"]


def asked_about(calls):
    assert len(calls) == 1  # ONE filter call per request
    ids = [r["id"] for r in calls[0]]
    assert len(ids) == len(set(ids))
    return {r["id"]: r for r in calls[0]}


def search_ids(body, key="mlflowSearchRuns"):
    """The experimentIds literal MLflow will see in a rewritten document, by response key."""
    (operation,) = parse(body["query"]).definitions
    (node,) = [
        s
        for s in operation.selection_set.selections
        if (s.alias.value if s.alias else s.name.value) == key
    ]
    (argument,) = node.arguments
    (ids,) = [f.value for f in argument.value.fields if f.name.value == "experimentIds"]
    return [v.value for v in ids.values]


# ------------------------------------------------------------------------- the schema


def test_every_root_field_of_mlflows_schema_is_mapped():
    schema = gql.mlflow_schema()
    assert schema.subscription_type is None
    roots = set(schema.query_type.fields) | set(schema.mutation_type.fields)
    assert roots == set(gql.ROOT_FIELDS), "MLflow's GraphQL root fields changed: map them"


def test_every_nested_field_with_its_own_resolver_is_classified():
    schema = gql.mlflow_schema()
    roots = {schema.query_type.name, schema.mutation_type.name}
    resolved = {
        (type_name, field_name)
        for type_name, type_ in schema.type_map.items()
        if isinstance(type_, GraphQLObjectType)
        and not type_name.startswith("__")
        and type_name not in roots
        for field_name, field in type_.fields.items()
        if gql.has_own_resolver(field)
    }
    assert resolved == set(gql.NESTED_FIELDS), "MLflow's nested resolvers changed: classify"


# ------------------------------------------------------------------------- root fields

ROOT_CASES = [
    (
        '{ mlflowGetExperiment(input: {experimentId: "<churn>"}) { experiment { name } } }',
        {"experiment:<churn>"},
    ),
    (GET_RUN.replace("<run>", "<churn_run>"), {"run:<churn_run>"}),
    (GET_RUN.replace("runId", "runUuid", 1).replace("<run>", "<churn_run>"), {"run:<churn_run>"}),
    (
        '{ mlflowListArtifacts(input: {runId: "<churn_run>"}) { files { path } } }',
        {"run:<churn_run>"},
    ),
    (
        '{ mlflowGetMetricHistoryBulkInterval(input: {runIds: ["<churn_run>", "<mixed>"], '
        'metricKey: "m"}) { metrics { value } } }',
        {"run:<churn_run>", "run:<mixed>"},
    ),
    (
        '{ mlflowSearchRuns(input: {experimentIds: ["<churn>"]}) { runs { info { runId } } } }',
        {"experiment:<churn>"},
    ),
    (
        'mutation { mlflowSearchRuns(input: {experimentIds: ["<churn>"]}) { nextPageToken } }',
        {"experiment:<churn>"},
    ),
    (
        'mutation { mlflowSearchDatasets(input: {experimentIds: ["<churn>"]}) '
        "{ datasetSummaries { name } } }",
        {"experiment:<churn>"},
    ),
    (
        "{ mlflowSearchModelVersions(input: {filter: \"name = 'x'\"}) { modelVersions { name } } }",
        {gql.REGISTRY_ID},
    ),
    ('{ test(inputString: "hi") { output } }', set()),
    ('mutation { testMutation(inputString: "hi") { output } }', set()),
    ("{ __typename }", set()),
]


@pytest.mark.parametrize(("query", "expected"), ROOT_CASES)
def test_each_root_field_is_judged_by_what_it_reads(world, query, expected):
    ids = world[2]
    calls = []
    body = sent(ask(world, query, calls=calls, admin=True))
    assert body == {"query": fill(query, ids), "variables": None, "operationName": None}
    if not expected:
        assert calls == []  # nothing to ask about
        return
    described = asked_about(calls)
    assert set(described) == {fill(e, ids) for e in expected}
    for uid, resource in described.items():
        if uid != gql.REGISTRY_ID:
            assert resource["type"] == uid.split(":")[0]
            assert resource["experiment_id"]  # read from the store, never the request


def test_every_root_field_has_a_case_above():
    covered = {
        s.name.value
        for query, _ in ROOT_CASES
        for s in parse(query).definitions[0].selection_set.selections
    }
    assert covered >= set(gql.ROOT_FIELDS)


def test_a_run_is_described_by_its_experiment_from_the_store(world):
    ids = world[2]
    calls = []
    sent(ask(world, GET_RUN.replace("<run>", "<churn_run>"), calls=calls))
    (resource,) = calls[0]
    assert resource["id"] == f"run:{ids['churn_run']}"
    assert (resource["project"], resource["experiment_id"]) == ("churn", ids["churn"])


# ------------------------------------------------------------------------- direct reads


@pytest.mark.parametrize(
    "query",
    [
        '{ mlflowGetExperiment(input: {experimentId: "<fraud>"}) { experiment { name } } }',
        GET_RUN.replace("<run>", "<fraud_run>"),
        '{ mlflowGetRun(input: {runId: "<churn_run>", runUuid: "<fraud_run>"}) '
        "{ run { info { runId } } } }",
        '{ mlflowListArtifacts(input: {runId: "<fraud_run>"}) { files { path } } }',
        '{ mlflowGetMetricHistoryBulkInterval(input: {runIds: ["<churn_run>", "<fraud_run>"], '
        'metricKey: "m"}) { metrics { value } } }',
        # one unreadable field refuses the whole document
        '{ a: mlflowGetRun(input: {runId: "<churn_run>"}) { run { info { runId } } } '
        'b: mlflowGetRun(input: {runId: "<fraud_run>"}) { run { info { runId } } } }',
    ],
)
def test_direct_reads_of_anything_unreadable_are_refused(world, query):
    assert "you may not read" in denied(ask(world, query))


def test_a_missing_resource_is_refused_exactly_like_a_forbidden_one(world):
    experiment = '{ mlflowGetExperiment(input: {experimentId: "<e>"}) { experiment { name } } }'
    for template, forbidden, missing in (
        (GET_RUN.replace("<run>", "<e>"), "<fraud_run>", "<missing_run>"),
        (experiment, "<fraud>", "<missing_experiment>"),
    ):
        one = ask(world, template.replace("<e>", forbidden))
        other = ask(world, template.replace("<e>", missing))
        assert one.status == 403
        assert (one.status, one.body()) == (other.status, other.body())


def test_the_policy_is_asked_once_about_everything_the_document_reads(world):
    ids = world[2]
    query = """
      query All($run: String) {
        a: mlflowGetRun(input: {runId: $run}) { run { info { runId } } }
        b: mlflowGetRun(input: {runUuid: $run}) { run { info { runId } } }
        mlflowGetExperiment(input: {experimentId: "<churn>"}) { experiment { name } }
        mlflowSearchRuns(input: {experimentIds: ["<churn>", "<fraud>", "<churn2>"]}) {
          runs { info { runId } } }
        mlflowGetMetricHistoryBulkInterval(input: {runIds: [$run], metricKey: "m"}) {
          metrics { value } }
      }
    """
    calls = []
    sent(ask(world, query, {"run": ids["churn_run"]}, calls=calls))
    assert set(asked_about(calls)) == {
        f"run:{ids['churn_run']}",
        f"experiment:{ids['churn']}",
        f"experiment:{ids['fraud']}",
        f"experiment:{ids['churn2']}",
    }


# ------------------------------------------------------------------------- searches


def test_a_search_keeps_only_readable_experiments_written_as_a_literal(world):
    ids = world[2]
    query = """
      query Runs($data: MlflowSearchRunsInput!) @component(name: "ui") {
        mlflowSearchRuns(input: $data) { runs { info { runId } } nextPageToken }
      }
    """
    data = {
        "experimentIds": [ids["churn2"], ids["fraud"], ids["missing_experiment"], ids["churn"]],
        "filter": "attributes.status = 'RUNNING'",
        "maxResults": 7,
        "orderBy": ["start_time DESC"],
        "runViewType": "ALL",
    }
    body = sent(ask(world, query, {"data": data}, operation="Runs"))
    assert search_ids(body) == [ids["churn2"], ids["churn"]]  # request order kept
    assert body["variables"] == {}  # $data is gone: the literal replaced it
    assert body["operationName"] == "Runs"
    assert "$data" not in body["query"]
    for kept in ("attributes.status = 'RUNNING'", "maxResults: 7", "start_time DESC", "ALL"):
        assert kept in body["query"]
    # the rewritten request is valid, and graphql-core reads it as narrowed
    (field,) = gql.analyse(body["query"], body["variables"], body["operationName"]).fields
    assert field.args["input"]["experiment_ids"] == [ids["churn2"], ids["churn"]]
    assert field.args["input"]["max_results"] == 7


def test_literal_and_variable_experiment_lists_are_narrowed_alike(world):
    ids = world[2]
    query = """
      query ($ids: [String], $keep: String) {
        a: mlflowSearchRuns(input: {experimentIds: $ids}) { runs { info { runId } } }
        b: mlflowSearchRuns(input: {experimentIds: ["<fraud>", "<churn>"]}) { nextPageToken }
        mlflowGetRun(input: {runId: $keep}) { run { info { runId } } }
      }
    """
    variables = {"ids": [ids["fraud"], ids["churn2"]], "keep": ids["churn_run"]}
    body = sent(ask(world, query, variables))
    assert search_ids(body, "a") == [ids["churn2"]]
    assert search_ids(body, "b") == [ids["churn"]]
    # $keep is still used (by mlflowGetRun) and kept; $ids is gone
    assert body["variables"] == {"keep": ids["churn_run"]}
    (operation,) = parse(body["query"]).definitions
    assert [d.variable.name.value for d in operation.variable_definitions] == ["keep"]


def test_a_search_reading_only_readable_experiments_passes_unchanged(world):
    query = '{ mlflowSearchRuns(input: {experimentIds: ["<churn>"]}) { runs { info { runId } } } }'
    body = sent(ask(world, query))
    assert body == {"query": fill(query, world[2]), "variables": None, "operationName": None}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (
            '{ mlflowSearchRuns(input: {experimentIds: ["<e>"]}) { runs { info { runId } } '
            "nextPageToken apiError { code } __typename } }",
            {
                "mlflowSearchRuns": {
                    "runs": [],
                    "nextPageToken": "",
                    "apiError": None,
                    "__typename": "MlflowSearchRunsResponse",
                }
            },
        ),
        (
            # MLflow's testMutation has no resolver of its own: null, as MLflow answers
            'mutation { mlflowSearchDatasets(input: {experimentIds: ["<e>"]}) '
            '{ datasetSummaries { name } } t: testMutation(inputString: "x") { output } }',
            {"mlflowSearchDatasets": {"datasetSummaries": []}, "t": None},
        ),
    ],
)
def test_a_search_left_with_nothing_is_answered_empty_here(world, query, expected):
    for experiment in ("<fraud>", "<missing_experiment>"):
        reply = ask(world, query.replace("<e>", experiment))
        assert isinstance(reply, listings.JsonReply)
        assert reply.status == 200
        assert json.loads(reply.body()) == {"data": expected, "errors": None}


def test_a_search_left_with_nothing_beside_other_reads_searches_no_experiment(world):
    query = """{
      mlflowSearchRuns(input: {experimentIds: ["<fraud>"]}) { runs { info { runId } } }
      mlflowGetRun(input: {runId: "<churn_run>"}) { run { info { runId } } }
    }"""
    assert search_ids(sent(ask(world, query))) == []


def test_mlflow_searches_nothing_when_no_experiment_is_named(world):
    """What a search emptied beside other reads relies on: no experiment, no run."""
    tracking = world[0]
    assert tracking.search_runs([], None, ViewType.ALL) == []


# ------------------------------------------------------------------------- model versions


def test_a_runs_model_versions_are_checked_one_by_one(world):
    query = '{ mlflowGetRun(input: {runId: "<run>"}) { run { info { runId } ...V } } }'
    versions = " fragment V on MlflowRunExtension { modelVersions { name version } }"
    experiment = " fragment V on MlflowRunExtension { experiment { name } }"
    calls = []
    sent(ask(world, query.replace("<run>", "<churn_run>") + versions, calls=calls))
    assert asked_about(calls)["model_version:churn-model/1"]["project"] == "churn"
    # the run is readable, one of its model versions is not: refused, naming the field
    mixed = query.replace("<run>", "<mixed>")
    assert "mlflowGetRun.run.modelVersions" in denied(ask(world, mixed + versions))
    assert isinstance(ask(world, mixed + experiment), listings.Rewrite)
    assert isinstance(ask(world, mixed + versions, admin=True), listings.Rewrite)


def test_model_versions_across_the_registry_are_for_those_who_list_it_whole(world):
    search_versions = "{ mlflowSearchModelVersions(input: {}) { modelVersions { name } } }"
    runs_versions = (
        '{ mlflowSearchRuns(input: {experimentIds: ["<churn>"]}) '
        "{ runs { ... on MlflowRunExtension { modelVersions { name } } } } }"
    )
    for query, field in (
        (search_versions, "mlflowSearchModelVersions"),
        (runs_versions, "mlflowSearchRuns.runs.modelVersions"),
    ):
        message = denied(ask(world, query))
        assert field in message
        assert "REST model-versions search" in message
        calls = []
        sent(ask(world, query, calls=calls, admin=True))
        assert asked_about(calls)[gql.REGISTRY_ID] == gql.WHOLE_REGISTRY


def test_a_runs_model_versions_cannot_be_told_without_the_run_and_the_registry(world):
    tracking, registry, ids = world
    resolver = ResourceResolver(lambda: tracking, lambda: registry)
    assert gql.run_model_versions(resolver, ids["churn_run"]) == [("churn-model", "1")]
    assert gql.run_model_versions(resolver, "x' OR name != '") is None
    broken = ResourceResolver(lambda: tracking, lambda: None)  # no registry: fail closed
    assert gql.run_model_versions(broken, ids["churn_run"]) is None


# ------------------------------------------------------------------------- batching


def aliased(count, field='test(inputString: "x") { output }', prefix="a"):
    return " ".join(f"{prefix}{i}: {field}" for i in range(count))


RUN_INFO = "info { runId }"
RUN_TAGS = "data { tags { key } }"


@pytest.mark.parametrize(
    ("query", "limit"),
    [
        ("{ " + aliased(11) + " }", "root fields"),
        ("{ " + aliased(6) + " ... on Query { " + aliased(5, prefix="b") + " } }", "root fields"),
        (
            "{ ...A ...B } fragment A on Query { " + aliased(6) + " }"
            " fragment B on Query { " + aliased(5, prefix="b") + " }",
            "root fields",
        ),
        # split across two operations: MLflow counts the whole document too
        ("query A { " + aliased(6) + " } query B { " + aliased(5) + " }", "root fields"),
        ("{ mlflowGetRun(input: {}) { run { " + aliased(11, RUN_INFO) + " } } }", "alias"),
        (
            "{ mlflowGetRun(input: {}) { run { ...A ...B } } }"
            " fragment A on MlflowRunExtension { " + aliased(6, RUN_INFO) + " }"
            " fragment B on MlflowRunExtension { " + aliased(5, RUN_TAGS, "b") + " }",
            "alias",
        ),
        ("{ mlflowGetRun(input: {}) { run { " + " ".join([RUN_INFO] * 11) + " } } }", "alias"),
        (
            "{ __schema { types { fields { type { ofType { ofType { ofType { ofType { ofType "
            "{ ofType { name } } } } } } } } } } }",
            "nest",
        ),
    ],
)
def test_alias_batching_depth_and_fragment_tricks_are_refused(world, query, limit):
    with pytest.raises(listings.ListingError, match=limit):
        ask(world, query, operation="A" if "query A" in query else None)


def test_the_limits_admit_what_mlflows_own_ui_sends(world):
    query = """
      query GetRun($data: MlflowGetRunInput!) @component(name: "MLflow.ExperimentRunTracking") {
        mlflowGetRun(input: $data) {
          apiError { helpUrl code message }
          run {
            info { runName status runUuid experimentId artifactUri endTime lifecycleStage
                   startTime userId }
            experiment { experimentId name tags { key value } artifactLocation lifecycleStage
                         lastUpdateTime }
            modelVersions { status version name source }
            data { metrics { key value step timestamp } params { key value } tags { key value } }
            inputs { datasetInputs { dataset { digest name profile schema source sourceType }
                                     tags { key value } }
                     modelInputs { modelId } }
            outputs { modelOutputs { modelId step } }
          }
        }
      }
    """
    body = sent(ask(world, query, {"data": {"runUuid": world[2]["churn_run"]}}))
    assert body["query"] == query


def test_fragment_cycles_and_huge_documents_end_in_a_refusal(world):
    cycle = "{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }"
    with pytest.raises(listings.ListingError, match="validate"):
        ask(world, cycle)
    fan = " ".join(f"f{i}: output" for i in range(9))
    chain = "".join(f" fragment L{i} on Test {{ {fan} ...L{i + 1} }}" for i in range(200))
    chain += " fragment L200 on Test { output }"
    with pytest.raises(listings.ListingError, match="at most 1000 selections"):
        ask(world, '{ test(inputString: "x") { ...L0 } }' + chain)
    with pytest.raises(listings.ListingError, match="parse"):
        ask(world, "{ " + "__typename " * 20_000 + "}")


# ------------------------------------------------------------------------- the request


def test_operation_name_chooses_what_is_judged_and_sent(world):
    query = """
      query Theirs { mlflowGetRun(input: {runId: "<fraud_run>"}) { run { info { runId } } } }
      query Mine { mlflowGetRun(input: {runId: "<churn_run>"}) { run { info { runId } } } }
    """
    assert sent(ask(world, query, operation="Mine"))["operationName"] == "Mine"
    denied(ask(world, query, operation="Theirs"))
    with pytest.raises(listings.ListingError, match="several operations"):
        ask(world, query)
    with pytest.raises(listings.ListingError, match="names no operation"):
        ask(world, query, operation="Nobody")


def test_only_the_chosen_operation_and_its_fragments_reach_mlflow_when_rewritten(world):
    query = """
      query Other { ...Unused }
      query Mine { ...S }
      fragment S on Query {
        mlflowSearchRuns(input: {experimentIds: ["<fraud>", "<churn>"]}) { nextPageToken }
      }
      fragment Unused on Query { __typename }
    """
    body = sent(ask(world, query, operation="Mine"))
    assert [d.name.value for d in parse(body["query"]).definitions] == ["Mine", "S"]


def test_variables_and_their_defaults_are_read_as_graphql_core_coerces_them(world):
    ids = world[2]
    query = (
        'query ($id: String = "<default>") '
        "{ mlflowGetRun(input: {runId: $id}) { run { info { runId } } } }"
    )
    forbidden_default = query.replace("<default>", "<fraud_run>")
    denied(ask(world, forbidden_default))  # the default is what runs
    assert isinstance(ask(world, forbidden_default, {"id": ids["churn_run"]}), listings.Rewrite)
    readable_default = query.replace("<default>", "<churn_run>")
    denied(ask(world, readable_default, {"id": ids["fraud_run"]}))
    with pytest.raises(listings.ListingError, match="variables"):
        ask(world, readable_default, {"id": {"not": "a string"}})


def test_a_get_request_is_read_from_its_query_string_and_sent_as_a_body(world):
    ids = world[2]
    query = "query ($id: String) { mlflowGetRun(input: {runId: $id}) { run { info { runId } } } }"
    body = sent(ask(world, query, json.dumps({"id": ids["churn_run"]}), method="GET"))
    assert body == {"query": query, "variables": {"id": ids["churn_run"]}, "operationName": None}
    denied(ask(world, query, json.dumps({"id": ids["fraud_run"]}), method="GET"))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "'query'"),
        ({"query": 7}, "'query'"),
        ({"query": "{ __typename }", "variables": "{}"}, "'variables'"),
        ({"query": "{ __typename }", "variables": [1]}, "'variables'"),
        ({"query": "{ __typename }", "operationName": 3}, "'operationName'"),
        ({"query": "{ nope }"}, "validate"),
        ({"query": "subscription { test { output } }"}, "subscriptions"),
        ({"query": "{ mlflowGetRun(input: {runId: 1}) }"}, "validate"),
        # MLflow's schema has no @skip/@include: a field cannot be hidden from the walk
        (
            {"query": "{ mlflowGetRun(input: {}) @skip(if: true) { run { info { runId } } } }"},
            "validate",
        ),
        ({"query": "{ mlflowGetRun("}, "parse"),
    ],
)
def test_malformed_requests_are_refused(world, params, message):
    tracking, registry, _ = world
    resolver = ResourceResolver(lambda: tracking, lambda: registry)
    listing = listings.ListingRequest(params, "POST", resolver, churn_reader([]))
    with pytest.raises(listings.ListingError, match=message):
        gql.narrow(listing)


def test_only_query_variables_and_operation_name_are_sent_on(world):
    tracking, registry, _ = world
    resolver = ResourceResolver(lambda: tracking, lambda: registry)
    params = {"query": "{ __typename }", "extensions": {"persistedQuery": 1}, "max_results": 5}
    reply = gql.narrow(listings.ListingRequest(params, "POST", resolver, churn_reader([])))
    assert sent(reply) == {"query": "{ __typename }", "variables": None, "operationName": None}


def test_messages_never_repeat_the_request(world):
    secret = "s3cr3t-token-value"
    invalid = '{ mlflowGetRun(input: {runId: "<s>", nope: 1}) { run { info { runId } } } }'
    with pytest.raises(listings.ListingError) as refused:
        ask(world, invalid.replace("<s>", secret))
    assert secret not in str(refused.value)
    assert secret not in denied(ask(world, GET_RUN.replace("<run>", secret)))


def test_a_rewrite_that_would_read_otherwise_is_not_sent(world):
    ids = world[2]
    query = fill(
        '{ mlflowSearchRuns(input: {experimentIds: ["<fraud>", "<churn>"]}) { nextPageToken } }',
        ids,
    )
    analysis = gql.analyse(query, None, None)
    changed = {"mlflowSearchRuns": (ids["churn"],)}
    good = gql._rewrite(gql.analyse(query, None, None), changed)
    assert gql._verified(analysis, changed, good)
    tampered = json.dumps({"query": query, "variables": None, "operationName": None})
    assert not gql._verified(analysis, changed, tampered.encode())


def test_fields_not_mapped_here_are_refused_until_they_are(world, monkeypatch):
    """What happens when MLflow's schema gains a field before this module knows it."""
    artifacts = '{ mlflowListArtifacts(input: {runId: "<churn_run>"}) { files { path } } }'
    experiment = '{ mlflowGetRun(input: {runId: "<churn_run>"}) { run { experiment { name } } } }'
    monkeypatch.delitem(gql.ROOT_FIELDS, "mlflowListArtifacts")
    monkeypatch.delitem(gql.NESTED_FIELDS, ("MlflowRunExtension", "experiment"))
    assert "mlflowListArtifacts is not served" in denied(ask(world, artifacts, admin=True))
    message = denied(ask(world, experiment, admin=True))
    assert "mlflowGetRun.run.experiment is not served" in message
