"""`mlflow-secure policy explain` against the bundled policies and a real identity store."""

import json

import pytest
from click.testing import CliRunner

from mlflow_secure.cli.main import main
from mlflow_secure.config import bundled_policy_dir
from mlflow_secure.identity import store
from mlflow_secure.policy.explain import ExplainError, access_for
from mlflow_secure.policy.revision import directory_revision


@pytest.fixture
def database(tmp_path):
    uri = f"sqlite:///{tmp_path / 'id.db'}"
    engine = store.open_engine(uri)
    store.migrate(engine)
    with store.session_factory(engine).begin() as session:
        store.create_principal(session, "alice", "user", clearance="confidential")
        store.create_team(session, "team-a")
        store.add_team_member(session, "team-a", "alice")
        store.create_project(session, "fraud")
        store.set_project_member(session, "fraud", "viewer", team="team-a")
    engine.dispose()
    return uri


def run(*args):
    return CliRunner().invoke(main, ["policy", "explain", *args])


def run_resource(classification):
    return json.dumps(
        {
            "type": "run",
            "id": "r",
            "experiment_id": "1",
            "project": "fraud",
            "classification": classification,
            "owner": "bob",
            "tags": {},
        }
    )


def test_allow_through_a_team_membership(database):
    result = run(
        "--subject",
        "alice",
        "--database-uri",
        database,
        "--endpoint",
        "mlflow.runs.get",
        "--resource",
        run_resource("internal"),
    )
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "allow"


def test_denials_come_with_the_policy_reasons(database):
    delete = run(
        "--subject",
        "alice",
        "--database-uri",
        database,
        "--endpoint",
        "mlflow.runs.delete",
        "--resource",
        run_resource("internal"),
    )
    assert delete.output.splitlines() == [
        "deny",
        "  - your role in project fraud (viewer) does not permit delete access",
    ]
    above = run(
        "--subject",
        "alice",
        "--database-uri",
        database,
        "--endpoint",
        "mlflow.runs.get",
        "--resource",
        run_resource("restricted"),
    )
    assert "below this run's classification (restricted)" in above.output


def test_show_input_and_scopes(database):
    result = run(
        "--subject",
        "alice",
        "--database-uri",
        database,
        "--scope",
        "read",
        "--endpoint",
        "mlflow.runs.get",
        "--show-input",
    )
    policy_input = json.loads(result.output[: result.output.rindex("}") + 1])
    assert policy_input["subject"]["scopes"] == ["read"]
    assert policy_input["subject"]["projects"] == [
        {"name": "fraud", "role": "viewer", "via": "team:team-a"}
    ]
    assert policy_input["action"]["access"] == "read"  # from the route census


def test_show_revision_names_the_policies_like_the_audit_trail(opa_binary):
    result = run("--subject-json", "{}", "--endpoint", "mlflow.runs.get", "--show-revision")
    assert result.exit_code == 0, result.output
    expected = directory_revision(opa_binary, bundled_policy_dir())
    assert result.output.splitlines()[-1] == f"policy revision: {expected}"


def test_unknown_subject_endpoint_and_bad_json_are_clear_errors(database):
    assert (
        "no principal named 'zed'"
        in run(
            "--subject", "zed", "--database-uri", database, "--endpoint", "mlflow.runs.get"
        ).output
    )
    assert "give --access" in run("--subject-json", "{}", "--endpoint", "mlflow.nothing").output
    bad = run("--subject-json", "{", "--endpoint", "mlflow.runs.get")
    assert bad.exit_code == 1
    assert "give --subject" in run("--endpoint", "mlflow.runs.get").output


def test_access_for_reads_the_census():
    assert access_for("mlflow.runs.get") == "read"
    assert access_for("mlflow.experiments.delete") == "delete"
    with pytest.raises(ExplainError):
        access_for("mlflow.unknown.thing")
