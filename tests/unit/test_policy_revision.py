"""The policy revision, read from a real managed OPA that reloads edited policies (--watch)."""

import logging
import os
import re
import shutil
import time
from types import SimpleNamespace

from click.testing import CliRunner

from mlflow_secure.cli.main import main
from mlflow_secure.policy import revision
from mlflow_secure.policy.client import DecisionClient, OpaEndpoint
from mlflow_secure.policy.engine import PolicyEngine
from mlflow_secure.policy.revision import directory_revision, policy_files, revision_of

pytest_plugins = ("tests.support.policy_engines",)  # the `policies` and `engine` fixtures

REVISION = re.compile(r"sha256:[0-9a-f]{16}")


def wait_until(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_revision_names_what_opa_serves_and_follows_a_reload(engine, policies, opa_binary):
    first = engine.refresh_revision()
    assert REVISION.fullmatch(first)
    assert engine.refresh_revision() == first  # stable while nothing changes
    assert directory_revision(opa_binary, policies) == first  # explain computes the same

    authz = policies / "mlflow" / "authz" / "authz.rego"
    authz.write_text(authz.read_text() + "\n# reviewed\n")
    assert wait_until(lambda: engine.refresh_revision() not in (first, None))
    second = engine.revision
    assert REVISION.fullmatch(second)
    assert directory_revision(opa_binary, policies) == second


def test_a_data_override_is_a_new_revision(engine, policies, tmp_path):
    first = engine.refresh_revision()
    # Moved in whole: OPA reloads on the new directory, which it does not watch yet.
    prepared = tmp_path / "overrides"
    prepared.mkdir()
    (prepared / "data.json").write_text('{"default_classification": "confidential"}')
    prepared.rename(policies / "mlflow" / "authz" / "overrides")
    assert wait_until(lambda: engine.refresh_revision() not in (first, None))


def test_an_edit_opa_rejects_keeps_the_revision_it_still_serves(engine, policies):
    first = engine.refresh_revision()
    (policies / "mlflow" / "authz" / "broken.rego").write_text("package mlflow.authz\nallow if {\n")
    time.sleep(2.0)  # OPA notices the edit, fails to compile it, keeps the old policies
    assert engine.refresh_revision() == first


def test_the_watcher_refreshes_in_the_background(engine, policies):
    first = engine.refresh_revision()
    engine.watch_revision(interval=0.1)
    (policies / "mlflow" / "authz" / "extra.rego").write_text("package mlflow.extra\n\nx := 1\n")
    assert wait_until(lambda: engine.revision not in (first, None))


def test_modules_are_read_again_only_when_the_files_change(engine, policies, monkeypatch):
    """The 275 kB module listing is not read every refresh: only while the modules on disk
    differ from what OPA served at the last full read, and at least every FULL_READ_SECONDS;
    the data is read every time."""
    first = engine.refresh_revision()
    reader = engine._reader
    full = reader.full_reads
    for _ in range(5):
        assert engine.refresh_revision() == first
    assert reader.full_reads == full  # nothing changed: data only

    authz = policies / "mlflow" / "authz" / "authz.rego"
    authz.write_text(authz.read_text() + "\n# reviewed again\n")
    assert wait_until(lambda: engine.refresh_revision() not in (first, None))
    assert reader.full_reads > full
    second, full = engine.revision, reader.full_reads
    assert engine.refresh_revision() == second
    assert reader.full_reads == full  # disk and served agree again

    monkeypatch.setattr(revision, "FULL_READ_SECONDS", 0.0)
    assert engine.refresh_revision() == second
    assert reader.full_reads == full + 1  # the backstop reads in full whatever the disk says


class _LateOpa:
    """An OPA that reloads whenever the test says, not when the files change: what a managed
    OPA does after a symlink swap (it watches the old target) until some other event."""

    def __init__(self, served):
        self.served = served
        self.listings = 0

    def read_sync(self, path, timeout=None):
        if path == revision.POLICIES_PATH:
            self.listings += 1
            return {"result": [{"raw": source} for source in self.served]}
        return {"result": {"default_classification": "internal"}}


def test_an_opa_that_reloads_late_is_caught_at_its_next_refresh(tmp_path, monkeypatch):
    """Attacker finding: with "files unchanged since the edit" as the signal, an OPA that
    reloaded an edit only later kept its old revision (and pushed-down listings their old
    condition) for up to a minute while its decisions followed the new policy."""
    directory = tmp_path / "policies"
    directory.mkdir()
    module = directory / "authz.rego"
    module.write_text("package mlflow.authz\n\nx := 1\n")
    clock = [1000.0]
    monkeypatch.setattr(revision, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    opa = _LateOpa([module.read_text()])
    reader = revision.RevisionReader(opa, directory)
    old = reader.read()
    assert reader.read() == old
    assert opa.listings == 1  # disk == served: data only

    module.write_text("package mlflow.authz\n\nx := 2\n")  # edited; OPA has not reloaded
    for _ in range(3):  # seconds apart, long after the edit: read in full, still the old one
        clock[0] += 8.0
        assert reader.read() == old
    assert opa.listings == 4

    opa.served = [module.read_text()]  # OPA reloads, late
    clock[0] += 2.0
    new = reader.read()
    assert new != old  # at the very next refresh
    assert reader.read() == new
    assert opa.listings == 5  # and data only again


def test_a_module_added_and_moved_away_between_refreshes_is_still_seen(tmp_path, monkeypatch):
    """Attacker finding: OPA keeps serving a module whose directory was moved away (it
    unloads only paths an event names), so disk == last served is no proof that OPA serves
    what it served then; the tree changed, so the listing is read."""
    monkeypatch.setattr(revision, "time", SimpleNamespace(monotonic=lambda: 1000.0))
    directory = tmp_path / "policies"
    (directory / "staging").mkdir(parents=True)
    module = directory / "authz.rego"
    module.write_text("package mlflow.authz\n\nx := 1\n")
    opa = _LateOpa([module.read_text()])
    reader = revision.RevisionReader(opa, directory)
    old = reader.read()
    assert reader.read() == old
    assert opa.listings == 1

    grant = directory / "staging" / "grant.rego"
    grant.write_text("package mlflow.authz\n\ny := 1\n")
    opa.served = [module.read_text(), grant.read_text()]  # OPA loaded it ...
    (directory / "staging").rename(tmp_path / "parked")  # ... and keeps it once moved away
    assert reader.read() != old  # the tree changed: read in full
    for _ in range(3):  # disk never equals what OPA serves again: every refresh reads in full
        reader.read()
    assert opa.listings == 5


def test_trees_that_cannot_be_compared_are_read_in_full_without_hanging(tmp_path):
    """Attacker finding: 1,000 nested directories raised RecursionError in the watcher thread
    (the revision then stayed frozen); a FIFO named like a module, or a link cycle, hung it."""
    directory = tmp_path / "policies"
    directory.mkdir()
    module = directory / "authz.rego"
    module.write_text("package mlflow.authz\n\nx := 1\n")
    opa = _LateOpa([module.read_text()])
    reader = revision.RevisionReader(opa, directory)
    reader.read()
    os.makedirs(os.path.join(directory, *["a"] * 200))
    os.mkfifo(directory / "pipe.rego")
    (directory / "loop").symlink_to(".")
    for _ in range(2):
        reader.read()  # returns: neither RecursionError nor a blocked read of the FIFO
    assert opa.listings == 3  # read in full each time
    assert revision._disk_sources(directory) is None


def test_the_watcher_survives_what_the_reader_raises(engine, caplog):
    engine.refresh_revision()

    def broken():
        raise RecursionError("maximum recursion depth exceeded")

    engine._reader.read = broken
    with caplog.at_level(logging.WARNING, logger="mlflow_secure.policy.engine"):
        assert engine.refresh_revision() is None  # unknown: nothing is cached under it
    assert engine.revision is None
    assert "RecursionError" in caplog.text


def test_opa_status_shows_the_revision(engine):
    url = f"unix://{engine.supervisor.socket_path}"
    result = CliRunner().invoke(main, ["opa", "status", "--url", url])
    assert result.exit_code == 0, result.output
    assert f"policy revision: {engine.refresh_revision()}" in result.output


def test_unreachable_opa_means_unknown_revision_logged_once(tmp_path, caplog):
    endpoint = OpaEndpoint("http://opa", uds=str(tmp_path / "nothing.sock"))
    engine = PolicyEngine(DecisionClient(endpoint, 0.5), revision="sha256:0000000000000000")
    with caplog.at_level(logging.WARNING, logger="mlflow_secure.policy.engine"):
        assert engine.refresh_revision() is None
        assert engine.refresh_revision() is None
    assert engine.revision is None  # never the last value: it may no longer be what decides
    warnings = [r for r in caplog.records if "cannot read the policy revision" in r.message]
    assert len(warnings) == 1


def test_same_policies_in_another_directory_are_the_same_revision(policies, tmp_path, opa_binary):
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(policies, elsewhere)
    assert directory_revision(opa_binary, elsewhere) == directory_revision(opa_binary, policies)


def test_revision_is_by_content_in_any_order():
    assert revision_of(["a", "b"], {"x": 1}) == revision_of(["b", "a"], {"x": 1})
    assert revision_of(["a", "b"], {"x": 1}) != revision_of(["a", "b"], {"x": 2})
    assert revision_of(["a", "b"], None) != revision_of(["a", "c"], None)


def test_policy_files_skip_tests_and_hidden_files(policies):
    (policies / ".git").mkdir()
    (policies / ".git" / "x.rego").write_text("package x\n")
    (policies / ".swap.rego").write_text("package x\n")
    names = {path.name for path in policy_files(policies)}
    assert "authz.rego" in names
    assert not any(name.endswith("_test.rego") or name.startswith(".") for name in names)
    assert "x.rego" not in names
