"""A policy the store query cannot express still narrows experiment, registered-model and
model-version search, through the batched filter, and the server says so once per listing
(docs/policy-authoring.md, "Listings pushed into the store query"). Real server, real
managed OPA, the operator's own policy directory, SQLite and PostgreSQL."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support import servers, teams

REPO = Path(__file__).resolve().parents[2]
# Readers see every experiment of a project whose name starts with "shared-": `startswith`
# is a function the SQL translator does not know.
SHARED_PREFIX_RULE = """package mlflow.authz

import rego.v1

readable_item(resource) if {
	input.action.access == "read"
	startswith(resource.project, "shared-")
	cleared_for(resource)
}
"""


LISTINGS = (
    ("/2.0/mlflow/experiments/search", "experiments", "mlflow.experiments.search"),
    (
        "/2.0/mlflow/registered-models/search",
        "registered_models",
        "mlflow.registered_models.search",
    ),
    ("/2.0/mlflow/model-versions/search", "model_versions", "mlflow.model_versions.search"),
)


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_an_untranslatable_rule_falls_back_to_the_filter_and_says_why(tmp_path, request, database):
    policies = tmp_path / "rego"
    shutil.copytree(REPO / "rego", policies)
    (policies / "mlflow" / "authz" / "shared_prefix.rego").write_text(SHARED_PREFIX_RULE)
    (tmp_path / "server").mkdir()
    backend = None
    if database == "postgresql":
        backend = request.getfixturevalue("postgres_server").make_database("e2e_fallback")
    server = servers.start(
        tmp_path / "server", env={"MLFLOW_SECURE_POLICY_DIR": str(policies)}, backend_uri=backend
    )
    try:
        actors = teams.populate(server)
        admin = actors["admin"].key
        made = server.api("POST", teams.API + "projects/create", admin, json={"name": "shared-ml"})
        assert made.status_code == 200, made.text
        for name, project in (("open-one", "shared-ml"), ("closed-one", "fraud")):
            tags = [{"key": "mlflow.secure.project", "value": project}]
            for path, body in (
                ("/2.0/mlflow/experiments/create", {"name": name, "tags": tags}),
                ("/2.0/mlflow/registered-models/create", {"name": name, "tags": tags}),
                ("/2.0/mlflow/model-versions/create", {"name": name, "source": "s3://b/m"}),
            ):
                created = actors["admin"].call("POST", path, json=body)
                assert created.status_code == 200, created.text
        for path, field, _ in LISTINGS:
            for _ in range(2):
                found = actors["bob"].call("GET", path, params={"max_results": 100})
                assert found.status_code == 200, found.text
                names = {item["name"] for item in found.json().get(field, [])}
                assert "open-one" in names  # the operator's rule holds
                assert "closed-one" not in names  # bob has no role in fraud
        log = server.log()
        for _, _, endpoint in LISTINGS:  # once per worker, listing and reason
            assert log.count(f"listing {endpoint} uses the batched filter") == 1, log
        assert "the function startswith" in log
    finally:
        server.interrupt()


def test_a_store_with_a_policy_key_in_another_case_is_listed_as_it_is_read(tmp_path):
    """A store from before the plugin holds `MLFLOW.SECURE.CLASSIFICATION=restricted` (the
    server refuses to write that spelling): the server finds it at start-up, says how to fix
    it, and lists the experiment exactly as it decides a single read of it."""
    from mlflow.entities import ExperimentTag
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    (tmp_path / "server").mkdir()
    uri = f"sqlite:///{tmp_path / 'server' / 'mlflow.db'}"
    legacy = SqlAlchemyStore(uri, "mlflow-artifacts:/")
    for name, extra in (
        ("plain", []),
        ("legacy", [("MLFLOW.SECURE.CLASSIFICATION", "restricted")]),
    ):
        tags = [ExperimentTag(k, v) for k, v in [("mlflow.secure.project", "fraud"), *extra]]
        legacy.create_experiment(f"old-{name}", tags=tags)
    legacy_id = legacy.get_experiment_by_name("old-legacy").experiment_id
    legacy.engine.dispose()
    server = servers.start(tmp_path / "server", backend_uri=uri)
    try:
        alice = teams.populate(server)["alice"]  # an editor of fraud, cleared for confidential
        found = alice.call("GET", "/2.0/mlflow/experiments/search", params={"max_results": 100})
        assert found.status_code == 200, found.text
        names = {e["name"] for e in found.json().get("experiments", [])}
        assert "old-plain" in names
        assert "old-legacy" not in names
        direct = alice.call(
            "GET", "/2.0/mlflow/experiments/get", params={"experiment_id": legacy_id}
        )
        assert direct.status_code in (403, 404), direct.text
        assert "spell a policy tag key in another case" in server.log()
    finally:
        server.interrupt()
