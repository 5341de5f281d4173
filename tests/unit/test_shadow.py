"""Shadow mode against a real candidate OPA (managed, as the server runs it)."""

import asyncio
import json
import logging
import shutil
import tempfile
import threading
import time
from pathlib import Path

import pytest

from mlflow_secure.config import Settings
from mlflow_secure.policy.client import Decision, DecisionClient, OpaEndpoint, PolicyUnavailable
from mlflow_secure.policy.engine import PolicyEngine, StartupError
from mlflow_secure.policy.shadow import ShadowEvaluator, _Comparison, disagreement, start_shadow

CANDIDATE = """package mlflow.authz

import rego.v1

default allow := false

allow if input.subject.id == "alice"

decision := {"allow": true, "reasons": []} if allow

decision := {"allow": false, "reasons": ["candidate: only alice"]} if not allow
"""
SECRET = "mlsk_" + "S" * 61


def policy_input(subject="bob"):
    return {
        "subject": {"id": subject, "kind": "user", "roles": []},
        "action": {"endpoint": "mlflow.runs.get", "access": "read", "method": "GET"},
        "resource": {
            "type": "run",
            "id": "r1",
            "project": "fraud",
            "tags": {"mlflow.secure.note": SECRET},
            "uri": f"s3://bucket/?token={SECRET}",
        },
        "request": {"path": "/api/2.0/mlflow/runs/get", "client_ip": "10.0.0.5", "tls": True},
    }


ALLOWED = Decision(True, ())
DENIED = Decision(False, ("active: no role",))


def wait_until(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


class Lines(logging.Handler):
    """The shadow logger's lines, whatever the propagation of its parents."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.fixture
def lines():
    handler = Lines()
    logger = logging.getLogger("mlflow_secure.policy.shadow")
    logger.addHandler(handler)
    previous = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield handler.lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


@pytest.fixture
def runtime():
    # pytest's temporary paths can be too long for a unix socket.
    directory = Path(tempfile.mkdtemp(prefix="mls-sh-", dir="/tmp"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def candidate_dir(tmp_path):
    directory = tmp_path / "candidate"
    directory.mkdir()
    (directory / "candidate.rego").write_text(CANDIDATE)
    return directory


@pytest.fixture
def shadow(candidate_dir, runtime):
    settings = Settings(
        runtime_dir=str(runtime), shadow_policy_dir=str(candidate_dir), opa_timeout=2.0
    )
    evaluator = start_shadow(settings)
    try:
        yield evaluator
    finally:
        evaluator.stop()
        evaluator.engine.stop_watching()
        evaluator.engine.supervisor.stop()


def disagreements(lines):
    prefix = "shadow policy disagrees: "
    return [json.loads(line[len(prefix) :]) for line in lines if line.startswith(prefix)]


def test_disagreement_is_logged_with_both_decisions_and_no_secret(shadow, lines):
    assert shadow.engine.revision.startswith("sha256:")
    shadow.compare(policy_input("bob"), ALLOWED, "d-1", "sha256:aaaaaaaaaaaaaaaa")  # WSGI path
    assert wait_until(lambda: shadow.stats.disagreed == 1)
    (record,) = disagreements(lines)
    assert record == {
        "decision_id": "d-1",
        "differs": "allow",
        "endpoint": "mlflow.runs.get",
        "access": "read",
        "subject": "bob",
        "resource_type": "run",
        "resource_id": "r1",
        "active": {"allow": True, "reasons": [], "revision": "sha256:aaaaaaaaaaaaaaaa"},
        "candidate": {
            "allow": False,
            "reasons": ["candidate: only alice"],
            "revision": shadow.engine.revision,
        },
    }
    assert not any(SECRET in line or "mlsk_" in line for line in lines)


def test_agreement_is_counted_not_logged(shadow, lines):
    shadow.compare(policy_input("alice"), ALLOWED, "d-2")
    assert wait_until(lambda: shadow.stats.agreed == 1)
    assert disagreements(lines) == []


def test_different_reasons_alone_are_a_disagreement(shadow, lines):
    shadow.compare(policy_input("bob"), DENIED, "d-3")
    assert wait_until(lambda: shadow.stats.disagreed == 1)
    (record,) = disagreements(lines)
    assert record["differs"] == "reasons"
    assert record["active"]["reasons"] == ["active: no role"]
    assert record["candidate"]["reasons"] == ["candidate: only alice"]


def test_asgi_path_compares_in_a_task_without_waiting(shadow, lines):
    async def request():
        shadow.compare(policy_input("bob"), ALLOWED, "d-4")  # returns at once
        assert shadow.stats.disagreed == 0
        while shadow._tasks:
            await asyncio.sleep(0.01)

    asyncio.run(request())
    assert shadow.stats.disagreed == 1
    assert disagreements(lines)[0]["decision_id"] == "d-4"


def test_candidate_down_is_counted_and_logged_once_a_minute(tmp_path, lines):
    endpoint = OpaEndpoint("http://opa", uds=str(tmp_path / "nothing.sock"))
    evaluator = ShadowEvaluator(PolicyEngine(DecisionClient(endpoint, 0.5)))
    try:
        for number in range(5):
            evaluator.compare(policy_input(), ALLOWED, f"d-{number}")
        assert wait_until(lambda: evaluator.stats.failed == 5)
    finally:
        evaluator.stop()
    problems = [line for line in lines if "shadow policy engine gave no decision" in line]
    assert len(problems) == 1
    assert "the active policy is unaffected" in problems[0]


class StuckClient:
    """A candidate that never answers until released."""

    def __init__(self):
        self.release = threading.Event()

    def decide_sync(self, _policy_input):
        self.release.wait(10)
        raise PolicyUnavailable("released")

    async def decide(self, _policy_input):
        while not self.release.is_set():
            await asyncio.sleep(0.01)
        raise PolicyUnavailable("released")


class StuckEngine:
    revision = None

    def __init__(self):
        self.client = StuckClient()


def test_a_stuck_candidate_never_slows_requests_it_drops_comparisons(lines):
    engine = StuckEngine()
    evaluator = ShadowEvaluator(engine, max_pending=4)
    try:
        started = time.perf_counter()
        for number in range(50):
            evaluator.compare(policy_input(), ALLOWED, f"d-{number}")
        assert time.perf_counter() - started < 0.5
        # Two threads hold one each, four wait in the queue: the rest are dropped.
        assert evaluator.stats.dropped >= 50 - 4 - 2
        assert sum("falling behind" in line for line in lines) == 1
    finally:
        engine.client.release.set()
        evaluator.stop()


def test_a_stuck_candidate_bounds_asgi_tasks_too():
    engine = StuckEngine()
    evaluator = ShadowEvaluator(engine, max_pending=4)

    async def requests():
        for number in range(20):
            evaluator.compare(policy_input(), ALLOWED, f"d-{number}")
        assert len(evaluator._tasks) == 4
        engine.client.release.set()
        while evaluator._tasks:
            await asyncio.sleep(0.01)

    asyncio.run(requests())
    assert evaluator.stats.dropped == 16
    assert evaluator.stats.failed == 4


def test_record_is_bounded_and_scrubbed():
    noisy = Decision(False, (f"leaked {SECRET}", *("x" * 600 for _ in range(40))))
    comparison_input = policy_input()
    comparison_input["subject"]["id"] = SECRET
    record = disagreement(_Comparison(comparison_input, ALLOWED, "d", None), noisy, None)
    text = json.dumps(record)
    assert SECRET not in text
    assert len(record["candidate"]["reasons"]) == 32
    assert all(len(reason) <= 512 for reason in record["candidate"]["reasons"])


def test_shadow_mode_is_off_by_default():
    assert start_shadow(Settings()) is None


def test_candidate_that_does_not_compile_stops_start_up(tmp_path, runtime):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "broken.rego").write_text("package mlflow.authz\n\nallow if {\n")
    settings = Settings(runtime_dir=str(runtime), shadow_policy_dir=str(broken))
    with pytest.raises(StartupError, match=r"shadow mode: the policies in .* do not compile"):
        start_shadow(settings)
    missing = Settings(runtime_dir=str(runtime), shadow_policy_dir=str(tmp_path / "nowhere"))
    with pytest.raises(StartupError, match="MLFLOW_SECURE_SHADOW_POLICY_DIR"):
        start_shadow(missing)
