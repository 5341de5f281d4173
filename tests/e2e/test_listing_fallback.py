"""A policy the store query cannot express still narrows experiment search, through the
batched filter, and the server says so once (docs/policy-authoring.md, "Listings pushed
into the store query"). Real server, real managed OPA, the operator's own policy directory."""

from __future__ import annotations

import shutil
from pathlib import Path

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


def test_an_untranslatable_rule_falls_back_to_the_filter_and_says_why(tmp_path):
    policies = tmp_path / "rego"
    shutil.copytree(REPO / "rego", policies)
    (policies / "mlflow" / "authz" / "shared_prefix.rego").write_text(SHARED_PREFIX_RULE)
    (tmp_path / "server").mkdir()
    server = servers.start(tmp_path / "server", env={"MLFLOW_SECURE_POLICY_DIR": str(policies)})
    try:
        actors = teams.populate(server)
        admin = actors["admin"].key
        made = server.api("POST", teams.API + "projects/create", admin, json={"name": "shared-ml"})
        assert made.status_code == 200, made.text
        for name, project in (("open-one", "shared-ml"), ("closed-one", "fraud")):
            tags = [{"key": "mlflow.secure.project", "value": project}]
            created = actors["admin"].call(
                "POST", "/2.0/mlflow/experiments/create", json={"name": name, "tags": tags}
            )
            assert created.status_code == 200, created.text
        for _ in range(2):
            found = actors["bob"].call(
                "GET", "/2.0/mlflow/experiments/search", params={"max_results": 100}
            )
            assert found.status_code == 200, found.text
            names = {e["name"] for e in found.json().get("experiments", [])}
            assert "open-one" in names  # the operator's rule holds
            assert "closed-one" not in names  # bob has no role in fraud
        log = server.log()
        assert log.count("uses the batched filter") == 1  # once per worker and reason
        assert "the function startswith" in log
    finally:
        server.interrupt()
