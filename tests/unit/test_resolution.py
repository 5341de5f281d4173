"""Resource resolution against MLflow's own SQLite stores, and route matching on the real apps."""

import json

import pytest
from mlflow.entities import ExperimentTag
from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

from mlflow_secure.request import canonical
from mlflow_secure.request.census import lookup, route_key
from mlflow_secure.request.lookups import ResourceResolver
from mlflow_secure.request.matcher import RouteMatcher
from mlflow_secure.request.resolution import AmbiguousRequest, check_artifact_path
from mlflow_secure.request.resolution import resolve as resolve_all


def resolve(spec, params, resolver, subject):
    """The resolved resource with its further resources flattened in, as the tests read it."""
    resolved = resolve_all(spec, params, resolver, subject)
    flat = dict(resolved.resource)
    if resolved.also:
        flat["also"] = [resource for resource, _ in resolved.also]
    if resolved.any_of:
        flat["any_of"] = resolved.any_of
    return flat


def request_params(method, query, body, path_params, spec=None, key=None):
    """The canonical reading of a request (by default as a proto route that reads lists)."""
    spec = spec or lookup("/api/2.0/mlflow/runs/update", "POST")
    reads = body if method not in {"GET", "HEAD"} or not query else None
    return canonical.read(spec, key, method, query, reads, path_params).params


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("stores")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    tracking = SqlAlchemyStore(uri, "mlflow-artifacts:/")  # as `mlflow server` serving artefacts
    registry = RegistryStore(uri)
    experiment = tracking.create_experiment(
        "fraud-exp",
        artifact_location="mlflow-artifacts:/placeholder",
        tags=[
            ExperimentTag("mlflow.secure.project", "fraud"),
            ExperimentTag("mlflow.secure.classification", "confidential"),
            ExperimentTag("mlflow.user", "alice"),
        ],
    )
    default_location = tracking.create_experiment("default-loc")
    run = tracking.create_run(experiment, "alice", 0, [], "r")
    registry.create_registered_model("churn-model")
    return tracking, registry, experiment, run.info.run_id, default_location


@pytest.fixture
def resolver(stores):
    tracking, registry, *_ = stores
    return ResourceResolver(lambda: tracking, lambda: registry)


@pytest.fixture(scope="module")
def matcher():
    from mlflow.server import app as flask_app
    from mlflow.server.fastapi_app import create_fastapi_app

    return RouteMatcher(flask_app, create_fastapi_app(flask_app))


def spec_for(matcher, method, path):
    matched = matcher.match(method, path)
    return lookup(matched.rule, method), matched.path_params


def key_for(matcher, method, path):
    return route_key(matcher.match(method, path).rule, method)


def test_run_resolves_to_its_experiments_attributes(stores, resolver, matcher):
    _, _, experiment, run_id, _ = stores
    spec, path_params = spec_for(matcher, "GET", "/api/2.0/mlflow/runs/get")
    params = request_params("GET", f"run_id={run_id}".encode(), b"", path_params, spec)
    resource = resolve(spec, params, resolver, "bob")
    assert resource["type"] == "run"
    assert resource["id"] == run_id
    assert resource["experiment_id"] == experiment
    assert (resource["project"], resource["classification"], resource["owner"]) == (
        "fraud",
        "confidential",
        "alice",
    )


def test_camel_case_alias_and_conflicts(stores, resolver, matcher):
    _, _, _, run_id, _ = stores
    spec, _ = spec_for(matcher, "POST", "/api/2.0/mlflow/runs/update")
    key = key_for(matcher, "POST", "/api/2.0/mlflow/runs/update")
    body = json.dumps({"runId": run_id}).encode()
    params = request_params("POST", b"", body, {}, spec, key)
    assert resolve(spec, params, resolver, "x")["id"] == run_id
    conflicting = json.dumps({"run_id": run_id, "run_uuid": "other"}).encode()
    with pytest.raises(AmbiguousRequest, match="run_id / run_uuid"):
        resolve(spec, request_params("POST", b"", conflicting, {}), resolver, "x")
    with pytest.raises(AmbiguousRequest, match="more than once"):
        request_params("POST", b"", b'{"run_id": "a", "run_id": "b"}', {})
    with pytest.raises(AmbiguousRequest, match="more than once"):
        request_params("GET", b"run_id=a&run_id=b", b"", {})


def test_missing_resources_are_indistinguishable_from_forbidden_ones(resolver, matcher):
    spec, _ = spec_for(matcher, "GET", "/api/2.0/mlflow/runs/get")
    resource = resolve(spec, {"run_id": "0" * 32}, resolver, "bob")
    assert resource["missing"] is True
    assert resource["project"] is None


def test_creation_is_described_by_the_request(resolver, matcher):
    spec, _ = spec_for(matcher, "POST", "/api/2.0/mlflow/experiments/create")
    body = json.dumps(
        {
            "name": "new",
            "artifact_location": "file:///etc",
            "tags": [{"key": "mlflow.secure.project", "value": "churn"}],
        }
    ).encode()
    resource = resolve(spec, request_params("POST", b"", body, {}, spec), resolver, "carol")
    assert resource["creating"] is True
    assert resource["project"] == "churn"
    assert resource["owner"] == "carol"
    assert resource["uri"] == "file:///etc"
    assert resource["new_tags"] == {"mlflow.secure.project": "churn"}


def test_model_versions_are_governed_by_their_registered_model(resolver, matcher):
    spec, _ = spec_for(matcher, "GET", "/api/2.0/mlflow/registered-models/get")
    assert resolve(spec, {"name": "churn-model"}, resolver, "x")["type"] == "registered_model"
    spec, _ = spec_for(matcher, "GET", "/model-versions/get-artifact")
    resource = resolve(spec, {"name": "churn-model", "version": "7"}, resolver, "x")
    assert resource["missing"] is True  # no version 7: refused like a forbidden one


def test_artifact_paths_belong_to_the_experiment_with_the_default_location(
    stores, resolver, matcher
):
    _, _, experiment, _, default_location = stores
    spec, params = spec_for(
        matcher, "GET", f"/api/2.0/mlflow-artifacts/artifacts/{default_location}/r1/artifacts/m"
    )
    resource = resolve(spec, params, resolver, "x")
    assert resource["type"] == "artifact"
    assert resource["experiment_id"] == default_location
    # The fraud experiment has a custom location: a path under its id proves nothing.
    spec, params = spec_for(
        matcher, "GET", f"/api/2.0/mlflow-artifacts/artifacts/{experiment}/r/artifacts/m"
    )
    assert resolve(spec, params, resolver, "x")["missing"] is True


@pytest.mark.parametrize(
    "path", ["../x", "1/../2", "1/%2e%2e/x", "1/%252e/x", "1\\x", "/1/x", "1/a\x00", "1/./x"]
)
def test_artifact_traversal_in_any_encoding(path):
    with pytest.raises(AmbiguousRequest):
        check_artifact_path(path)


def test_attribute_cache_is_dropped_on_change(stores, resolver):
    tracking, _, experiment, _, _ = stores
    assert resolver.experiment(experiment)["classification"] == "confidential"
    tracking.set_experiment_tag(
        experiment, ExperimentTag("mlflow.secure.classification", "restricted")
    )
    assert resolver.experiment(experiment)["classification"] == "confidential"  # cached
    resolver.forget_experiment(experiment)
    assert resolver.experiment(experiment)["classification"] == "restricted"
    tracking.set_experiment_tag(
        experiment, ExperimentTag("mlflow.secure.classification", "confidential")
    )


def test_matcher_uses_the_frameworks_own_matching(matcher):
    assert matcher.match("POST", "/v1/traces").rule == "/v1/traces"
    assert matcher.match("GET", "/ajax-api/3.0/jobs/abc").path_params == {"job_id": "abc"}
    assert matcher.match("HEAD", "/api/2.0/mlflow/runs/get").rule == "/api/2.0/mlflow/runs/get"
    assert matcher.match("POST", "/api/2.0/mlflow/runs/get") is None  # wrong method
    assert matcher.match("GET", "/api/2.0/mlflow/no-such-thing") is None


def _resolved(matcher, resolver, method, path, query=b"", body=b""):
    spec, path_params = spec_for(matcher, method, path)
    key = key_for(matcher, method, path)
    params = request_params(method, query, body, path_params, spec, key)
    return resolve(spec, params, resolver, "bob")


def test_list_valued_ids_name_every_resource(stores, resolver, matcher):
    """Each run of a bulk metrics request is resolved; the first is the resource and the
    rest must pass the same decision (`also`). A missing run is one more refusal."""
    tracking, _, _experiment, run_id, default_location = stores
    other = tracking.create_run(default_location, "bob", 0, [], "other").info.run_id
    query = f"run_id={run_id}&run_id={other}&run_id=nope&metric_key=m".encode()
    resource = _resolved(
        matcher, resolver, "GET", "/ajax-api/2.0/mlflow/metrics/get-history-bulk", query
    )
    assert (resource["type"], resource["id"], resource["project"]) == ("run", run_id, "fraud")
    assert [(r["id"], r.get("missing")) for r in resource["also"]] == [
        (other, None),
        ("nope", True),
    ]
    assert resource["also"][0]["experiment_id"] == default_location
    # the same run twice is one resource; a single run is no list at all
    twice = f"run_id={run_id}&run_id={run_id}&metric_key=m".encode()
    bulk = "/ajax-api/2.0/mlflow/metrics/get-history-bulk"
    single = _resolved(matcher, resolver, "GET", bulk, twice)
    assert "also" not in single
    assert single["id"] == run_id
    interval = _resolved(
        matcher,
        resolver,
        "GET",
        "/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval",
        f"run_ids={other}&metric_key=m".encode(),
    )
    assert (interval["id"], "also" in interval) == (other, False)


def test_lists_that_are_not_ids_or_too_long_are_refused(resolver, matcher):
    path = "/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval"
    body = json.dumps({"experiment_ids": [{"x": 1}]}).encode()
    # refused as MLflow's message could not hold it, before resolution sees it (in the words
    # of MLflow's schema for the message)
    with pytest.raises(canonical.BadRequest, match="for parameter 'experiment_ids' supplied"):
        _resolved(matcher, resolver, "POST", "/api/3.0/mlflow/traces/metrics", b"", body)
    with pytest.raises(AmbiguousRequest, match="other than ids"):
        resolve(
            lookup("/api/3.0/mlflow/traces/metrics", "POST"),
            {"experiment_ids": [{}]},
            resolver,
            "x",
        )
    too_many = "&".join(f"run_ids=r{i}" for i in range(101)).encode()
    with pytest.raises(AmbiguousRequest, match="more than 100"):
        _resolved(matcher, resolver, "GET", path, too_many)


def test_repeated_query_parameters_are_lists_only_where_mlflow_reads_lists():
    spec = lookup("/api/2.0/mlflow/experiments/search", "GET")
    params = request_params("GET", b"order_by=a&order_by=b&experiment_ids=1", b"", {}, spec)
    assert params == {"order_by": ["a", "b"], "experiment_ids": ["1"]}
    with pytest.raises(AmbiguousRequest, match="more than once"):
        request_params("GET", b"run_id=1&run_id=2", b"", {})


def test_listing_inside_one_parent_is_a_read_of_that_parent(stores, resolver, matcher):
    _, _, experiment, _, _ = stores
    scoped = _resolved(
        matcher,
        resolver,
        "GET",
        "/api/3.0/mlflow/label-schemas/list",
        f"experiment_id={experiment}".encode(),
    )
    assert (scoped["type"], scoped["id"], "listing" in scoped) == ("experiment", experiment, False)
    everything = _resolved(matcher, resolver, "POST", "/api/3.0/mlflow/issues/search", b"", b"{}")
    assert everything == {"type": "experiment", "listing": True}


def test_sub_objects_and_datasets_resolve_to_their_experiments(stores, resolver, matcher):
    tracking, _, experiment, _, default_location = stores
    queue = tracking.create_review_queue(experiment, name="q", queue_type="custom")
    resource = _resolved(
        matcher,
        resolver,
        "GET",
        "/api/3.0/mlflow/review-queues/items/list",
        f"queue_id={queue.queue_id}".encode(),
    )
    assert (resource["type"], resource["id"], resource["project"]) == (
        "experiment",
        experiment,
        "fraud",
    )
    missing = _resolved(
        matcher, resolver, "GET", "/api/3.0/mlflow/review-queues/items/list", b"queue_id=rq-none"
    )
    assert missing["missing"] is True
    dataset = tracking.create_dataset(name="d", experiment_ids=[experiment, default_location])
    linked = _resolved(matcher, resolver, "GET", f"/api/3.0/mlflow/datasets/{dataset.dataset_id}")
    assert linked["type"] == "dataset"
    assert linked["experiment_id"] in {experiment, default_location}
    assert len(linked["any_of"]) == 1  # read through any experiment it is linked to
    body = json.dumps({"dataset_record_ids": ["r1"]}).encode()
    changed = _resolved(
        matcher,
        resolver,
        "DELETE",
        f"/api/3.0/mlflow/datasets/{dataset.dataset_id}/records",
        b"",
        body,
    )
    assert len(changed["also"]) == 1  # changed only with the right on every one
    assert "any_of" not in changed


def test_cache_only_resolution_signals_instead_of_touching_the_store(stores, resolver, matcher):
    from mlflow_secure.request.lookups import NeedsStore, cache_only

    _, _, experiment, run_id, _ = stores
    query = f"run_id={run_id}".encode()
    with pytest.raises(NeedsStore), cache_only():
        _resolved(matcher, resolver, "GET", "/api/2.0/mlflow/runs/get", query)
    warm = _resolved(matcher, resolver, "GET", "/api/2.0/mlflow/runs/get", query)
    with cache_only():
        cached = _resolved(matcher, resolver, "GET", "/api/2.0/mlflow/runs/get", query)
    assert cached == warm
    assert cached["experiment_id"] == experiment


HTTP_ROOT = "http://tracking.example:5000/api/2.0/mlflow-artifacts/artifacts"


def test_http_roots_of_mlflows_proxy_are_read_as_mlflow_reads_them():
    from mlflow_secure.request.lookups import served_path

    assert served_path(f"{HTTP_ROOT}/3") == "3"
    assert served_path(
        f"HTTPS://h/prefix{HTTP_ROOT[len('http://tracking.example:5000') :]}/t/x/"
    ) == ("t/x")
    assert served_path("mlflow-artifacts://h:1/7/") == "7"
    assert served_path("http://h/api/2.0/mlflow/artifacts/3") is None  # not the proxy's route
    assert served_path("s3://bucket/api/2.0/mlflow-artifacts/artifacts/3") is None


def test_an_http_default_root_places_proxied_paths_like_mlflow_artifacts(tmp_path):
    """`--default-artifact-root http://<server>/api/2.0/mlflow-artifacts/artifacts`: an
    experiment's location is `<root>/<id>`, and an upload to `<id>/<run>/...` through the
    proxy is its own; a custom http root is a tree no other experiment may take."""
    from mlflow_secure.request.resolution import artifact, check_new_artifact_location

    tracking = SqlAlchemyStore(f"sqlite:///{tmp_path / 'mlflow.db'}", HTTP_ROOT)
    default = tracking.create_experiment("placed-by-root")
    assert tracking.get_experiment(default).artifact_location == f"{HTTP_ROOT}/{default}"
    custom = tracking.create_experiment("team-a", artifact_location=f"{HTTP_ROOT}/team-a")
    resolver = ResourceResolver(lambda: tracking, lambda: None)
    assert artifact(resolver, f"{default}/r1/artifacts/a.txt")["experiment_id"] == default
    assert artifact(resolver, "team-a/r2/artifacts/a.txt")["experiment_id"] == custom
    for taken in (
        "mlflow-artifacts:/team-a/sub",
        f"{HTTP_ROOT}/team-a",
        "mlflow-artifacts:/team-a",
    ):
        with pytest.raises(canonical.BadRequest, match="overlaps"):
            check_new_artifact_location(resolver, taken)
