"""Resource resolution against MLflow's own SQLite stores, and route matching on the real apps."""

import json

import pytest
from mlflow.entities import ExperimentTag
from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

from mlflow_secure.resolution import AmbiguousRequest, check_artifact_path, request_params, resolve
from mlflow_secure.resources import ResourceResolver
from mlflow_secure.route_census import lookup
from mlflow_secure.route_matcher import RouteMatcher


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


def test_run_resolves_to_its_experiments_attributes(stores, resolver, matcher):
    _, _, experiment, run_id, _ = stores
    spec, path_params = spec_for(matcher, "GET", "/api/2.0/mlflow/runs/get")
    params = request_params("GET", f"run_id={run_id}".encode(), b"", path_params)
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
    body = json.dumps({"runId": run_id}).encode()
    assert resolve(spec, request_params("POST", b"", body, {}), resolver, "x")["id"] == run_id
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
    resource = resolve(spec, request_params("POST", b"", body, {}), resolver, "carol")
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
