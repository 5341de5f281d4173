"""Whether a decision may be reused, told from the modules a real managed OPA loaded."""

import json
import logging
import subprocess
import time

import pytest

from mlflow_secure.policy import determinism

pytest_plugins = ("tests.support.policy_engines",)  # the `policies` and `engine` fixtures


@pytest.fixture(autouse=True)
def _served(engine):
    engine.refresh_revision()  # what OPA serves, and whether its answers may be reused


def _reloaded(engine, before: str, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        revision = engine.refresh_revision()
        if revision is not None and revision != before:
            return revision
        time.sleep(0.05)
    raise AssertionError("OPA did not reload the edited policies")


def test_the_bundled_policy_may_be_reused(engine):
    assert engine.reuse_problem is None
    assert engine.revision is not None
    assert engine.reusable.startswith(engine.revision + "#")
    assert engine.still_running()


HEADER = "package mlflow.authz\n\nimport rego.v1\n\n"
UNREPEATABLE = {
    "calls time.now_ns": "late if time.now_ns() > 0\n",
    "reads input.request.time": (
        'import input.request as req\n\nlate if req.time != ""\n'  # through an import alias
    ),
    "reads a part of input.request it chooses": (
        'late if {\n\tsome k\n\tinput.request[k] == "x"\n}\n'
    ),
    "reads a part of the input it chooses": 'late if {\n\tsome k\n\tinput[k].time == "x"\n}\n',
    "reads the input as a whole": "everything := input\n",
    "reads input.request as a whole": 'late if object.get(input.request, "time", "") != ""\n',
    "calls http.send": (
        'late if http.send({"method": "get", "url": "http://x"}).status_code == 200\n'
    ),
    # (on the input: evaluated in data.mlflow, it would change the revision at every read)
    "calls rand.intn": "late if rand.intn(input.subject.id, 2) == 1\n",
    "calls crypto.x509.parse_and_verify_certificates": (
        'late if crypto.x509.parse_and_verify_certificates("x")[0]\n'
    ),
    "reads data.teams.fraud, which the policy revision does not cover": (
        "late if input.subject.id in data.teams.fraud\n"
    ),
    "reads a part of data it chooses, or data as a whole": (
        'late if {\n\tsome k\n\tdata[k].x == "y"\n}\n'
    ),
}


@pytest.mark.parametrize("reason", sorted(UNREPEATABLE))
def test_a_rule_reading_what_the_key_does_not_hold_stops_reuse(engine, policies, reason, caplog):
    """Each of these rules could answer the same input differently: decisions are then
    asked of OPA every time, and the log says which module and why. Removing the rule
    brings reuse back."""
    extra = policies / "mlflow" / "authz" / "late.rego"
    hidden = extra.with_name(".late.rego")  # ignored by OPA until it is complete
    hidden.write_text(HEADER + UNREPEATABLE[reason])
    hidden.rename(extra)
    with caplog.at_level(logging.INFO, logger="mlflow_secure.policy.engine"):
        changed = _reloaded(engine, engine.revision)
    assert engine.revision == changed
    assert engine.reusable is None
    assert engine.reuse_problem.endswith(f"late.rego {reason}"), engine.reuse_problem
    assert f"policy decisions are not reused: {engine.reuse_problem}" in caplog.text
    # The next refreshes skip the module listing (nothing changed on disk): still not reused.
    reads = engine._reader.full_reads
    assert engine.refresh_revision() == changed
    assert engine._reader.full_reads == reads
    assert engine.reusable is None
    extra.unlink()
    _reloaded(engine, changed)
    assert engine.reuse_problem is None
    assert engine.reusable.startswith(engine.revision + "#")


def test_rules_of_other_packages_and_the_rest_of_the_request_keep_reuse(engine, policies):
    (policies / "lib").mkdir()
    (policies / "lib" / "helpers.rego").write_text(
        'package lib.helpers\n\nimport rego.v1\n\nreviewer(name) if startswith(name, "rev-")\n'
    )
    (policies / "mlflow" / "authz" / "extra.rego").write_text(
        HEADER
        + "reviewed if data.lib.helpers.reviewer(input.subject.id)\n\n"
        + 'on_api if startswith(input.request.path, "/api/")\n\n'
        + 'strict if data.mlflow.authz.default_classification == "restricted"\n'
    )
    _reloaded(engine, engine.revision)
    assert engine.reuse_problem is None
    assert engine.reusable.startswith(engine.revision + "#")


def test_base_data_beside_a_package_of_the_same_name_stops_reuse(engine, policies):
    """Attacker finding: `data.sharing.grants` from a sharing/data.json passed because a
    module declares `package sharing`; the revision does not cover that document."""
    (policies / "sharing").mkdir()
    (policies / "sharing" / "lib.rego").write_text("package sharing\n\nhelper := 1\n")
    (policies / "sharing" / "data.json").write_text('{"grants": [{"principal": "bob"}]}')
    (policies / "mlflow" / "authz" / "extra.rego").write_text(
        HEADER + "shared if some g in data.sharing.grants\n\nh := data.sharing.helper\n"
    )
    _reloaded(engine, engine.revision)
    assert engine.reusable is None
    assert engine.reuse_problem.endswith(
        "extra.rego reads data.sharing.grants, which the policy revision does not cover"
    )


def test_every_revision_change_starts_a_new_generation_of_reused_answers(engine, policies):
    """Attacker finding: answers of policy B stored under A's key in the moments before the
    watcher saw the change came back when A was restored. A revert is a new key."""
    first = engine.reusable
    extra = policies / "mlflow" / "authz" / "extra.rego"
    extra.write_text(HEADER + "harmless := 1\n")
    _reloaded(engine, engine.revision)
    second = engine.reusable
    extra.unlink()
    _reloaded(engine, engine.revision)
    third = engine.reusable
    assert len({first, second, third}) == 3
    assert first.split("#")[0] == third.split("#")[0]  # the same policies, a new generation


def test_the_builtins_named_unrepeatable_are_the_pinned_opas_nondeterministic_ones(opa_binary):
    """An OPA upgrade that marks another built-in nondeterministic fails here first."""
    listed = subprocess.run(
        [str(opa_binary), "capabilities", "--current"], capture_output=True, check=True
    )
    builtins = json.loads(listed.stdout)["builtins"]
    marked = {b["name"] for b in builtins if b.get("nondeterministic")}
    assert marked == determinism.NONDETERMINISTIC_BUILTINS
    names = {b["name"] for b in builtins}
    assert names >= determinism.CLOCK_READING_BUILTINS


def test_findings_are_remembered_per_module_source(monkeypatch):
    calls = []
    real = determinism.module_findings
    monkeypatch.setattr(determinism, "_remembered", {})
    monkeypatch.setattr(determinism, "module_findings", lambda ast: calls.append(1) or real(ast))
    module = {"id": "a.rego", "raw": "package a", "ast": {"package": {"path": []}, "rules": []}}
    assert determinism.reuse_problem([module]) is None
    assert determinism.reuse_problem([dict(module)]) is None
    assert len(calls) == 1
    assert determinism.reuse_problem([{"id": "b.rego", "raw": "package b"}]) == (
        "b.rego was listed without its syntax tree"
    )
