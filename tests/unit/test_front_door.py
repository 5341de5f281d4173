"""The middleware alone: real identity store, stand-in policy engine (e2e uses a real one)."""

import asyncio
import base64
import json
import logging

import pytest
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

from mlflow_secure.identity import store
from mlflow_secure.identity.authenticator import Authenticator
from mlflow_secure.identity.subject import current_subject
from mlflow_secure.identity.throttle import Throttle
from mlflow_secure.log_redaction import QueryStringRedactor
from mlflow_secure.policy.client import CompileRefused, Decision, PolicyUnavailable
from mlflow_secure.request.front_door import (
    FrontDoorConfig,
    SecureASGIMiddleware,
    SecureWSGIMiddleware,
)
from mlflow_secure.request.lookups import ResourceResolver
from mlflow_secure.request.matcher import RouteMatcher

HEALTH = frozenset({"/health"})


def subject_name():
    try:
        return current_subject().name
    except RuntimeError:
        return None  # public route: no subject


class FakeClient:
    def __init__(self, allow=True, down=False):
        self.allow, self.down, self.inputs, self.filters = allow, down, [], []

    def _decide(self, policy_input):
        self.inputs.append(policy_input)
        if self.down:
            raise PolicyUnavailable("down")
        return Decision(self.allow, () if self.allow else ("nope",))

    async def decide(self, policy_input):
        return self._decide(policy_input)

    def decide_sync(self, policy_input):
        return self._decide(policy_input)

    def _filter(self, how, policy_input):
        self.filters.append((how, [r["id"] for r in policy_input["resources"]]))
        return {r["id"] for r in policy_input["resources"]} if self.allow else set()

    async def filter(self, policy_input):
        return self._filter("async", policy_input)

    def filter_sync(self, policy_input):
        return self._filter("sync", policy_input)

    def compile_sync(self, query, policy_input, unknowns):
        raise CompileRefused("this fake OPA has no Compile API: listings use filter")


class FakeEngine:
    revision = reusable = "sha256:0123456789abcdef"

    def __init__(self, problem=None, running=True, **client):
        self._problem = problem
        self.running = running
        self.client = FakeClient(**client)

    def still_running(self):
        return self.running

    async def problem(self):
        return self._problem

    def problem_sync(self):
        return self._problem


@pytest.fixture
def identity(tmp_path):
    engine = store.open_engine(f"sqlite:///{tmp_path / 'id.db'}")
    store.migrate(engine)
    sessions = store.session_factory(engine)
    with sessions.begin() as session:
        store.create_principal(session, "alice", "user", roles=["admin"])
        key, _ = store.create_key(session, "alice", ["read", "write", "admin"])
    yield sessions, key
    engine.dispose()


@pytest.fixture(scope="module")
def matcher():
    from mlflow.server import app as flask_app
    from mlflow.server.fastapi_app import create_fastapi_app

    return RouteMatcher(flask_app, create_fastapi_app(flask_app))


@pytest.fixture(scope="module")
def tracking(tmp_path_factory):
    root = tmp_path_factory.mktemp("tracking")
    return SqlAlchemyStore(f"sqlite:///{root / 'mlflow.db'}", "mlflow-artifacts:/")


@pytest.fixture
def config(identity, matcher, tracking):
    sessions, _ = identity

    def build(engine):
        return FrontDoorConfig(
            engine=engine,
            authenticator=Authenticator(sessions, Throttle(sessions)),
            sessions=sessions,
            health_paths=HEALTH,
            matcher=matcher,
            resolver=ResourceResolver(lambda: tracking, lambda: None),
        )

    return build


def call_asgi(middleware, scope, body=b""):
    sent, reached = [], []

    async def app(scope, receive, send):
        message = await receive()
        reached.append((scope, message.get("body", b""), subject_name()))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"OK"})

    middleware.app = app

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        sent.append(message)

    asyncio.run(middleware(scope, receive, send))
    return reached, sent


def http_scope(method, path, headers=(), query=b""):
    return {
        "type": "http",
        "method": method,
        "path": path,
        "headers": [(b"host", b"localhost:5000"), *headers],
        "query_string": query,
        "client": ("127.0.0.1", 5000),
        "scheme": "http",
    }


def bearer(key):
    return [(b"authorization", f"Bearer {key}".encode())]


def test_health_passes_when_policy_engine_answers(config):
    _reached, sent = call_asgi(
        SecureASGIMiddleware(None, config(FakeEngine())), http_scope("GET", "/health")
    )
    assert sent[0]["status"] == 200


def test_health_is_503_while_policy_engine_is_down(config):
    middleware = SecureASGIMiddleware(None, config(FakeEngine("unreachable /secret")))
    reached, sent = call_asgi(middleware, http_scope("GET", "/health"))
    assert not reached
    assert sent[0]["status"] == 503
    body = json.loads(sent[1]["body"])
    assert body["error_code"] == "TEMPORARILY_UNAVAILABLE"
    assert "/secret" not in body["message"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/2.0/mlflow/experiments/get"),
        ("POST", "/api/2.0/mlflow/runs/create"),
        ("GET", "/ajax-api/2.0/mlflow/runs/get"),
        ("POST", "/v1/traces"),
        ("GET", "/version"),
    ],
)
def test_no_credentials_is_401_with_both_challenges(config, method, path):
    engine = FakeEngine()
    reached, sent = call_asgi(SecureASGIMiddleware(None, config(engine)), http_scope(method, path))
    assert not reached
    assert engine.client.inputs == []  # anonymous requests never reach the policy
    start, body = sent
    assert start["status"] == 401
    challenges = [v for k, v in start["headers"] if k == b"www-authenticate"]
    assert [c.split(b" ")[0] for c in challenges] == [b"Bearer", b"Basic"]
    assert json.loads(body["body"])["error_code"] == "UNAUTHENTICATED"


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/health"), ("GET", "/health/"), ("GET", "/api/2.0/mlflow/x")],
)
def test_routes_no_one_serves_are_404_before_credentials_or_policy(config, method, path):
    engine = FakeEngine()
    reached, sent = call_asgi(SecureASGIMiddleware(None, config(engine)), http_scope(method, path))
    assert not reached
    assert engine.client.inputs == []
    assert sent[0]["status"] == 404
    assert json.loads(sent[1]["body"])["error_code"] == "ENDPOINT_NOT_FOUND"


def test_allowed_request_reaches_the_app_with_the_subject_bound(identity, config):
    engine = FakeEngine()
    _, key = identity
    reached, sent = call_asgi(
        SecureASGIMiddleware(None, config(engine)),
        http_scope("GET", "/api/2.0/mlflow/experiments/get", bearer(key), b"experiment_id=0"),
    )
    assert sent[0]["status"] == 200
    assert reached[0][2] == "alice"
    policy_input = engine.client.inputs[0]
    assert policy_input["subject"]["id"] == "alice"
    assert policy_input["action"] == {
        "endpoint": "mlflow.experiments.get",
        "access": "read",
        "method": "GET",
    }
    assert policy_input["request"]["client_ip"] == "127.0.0.1"
    assert policy_input["resource"]["type"] == "experiment"  # read from MLflow's store
    assert policy_input["resource"]["id"] == "0"


def test_denied_request_is_403_with_reasons(identity, config):
    _, key = identity
    reached, sent = call_asgi(
        SecureASGIMiddleware(None, config(FakeEngine(allow=False))),
        http_scope("POST", "/api/2.0/mlflow/runs/create", bearer(key)),
    )
    assert not reached
    body = json.loads(sent[1]["body"])
    assert sent[0]["status"] == 403
    assert body["reasons"] == ["nope"]
    assert len(body["decision_id"]) == 32


def test_policy_engine_down_is_503_never_allow(identity, config):
    _, key = identity
    reached, sent = call_asgi(
        SecureASGIMiddleware(None, config(FakeEngine(down=True))),
        http_scope("GET", "/api/2.0/mlflow/experiments/get", bearer(key), b"experiment_id=0"),
    )
    assert not reached
    assert sent[0]["status"] == 503


def test_websocket_is_closed_and_lifespan_passes(config):
    middleware = SecureASGIMiddleware(None, config(FakeEngine()))
    _reached, sent = call_asgi(middleware, {"type": "websocket", "path": "/ws"})
    assert sent == [{"type": "websocket.close", "code": 1008}]


def call_wsgi(middleware, method, path, headers=None):
    reached = []

    def app(environ, start_response):
        reached.append(subject_name())
        start_response("200 OK", [])
        return [b"OK"]

    middleware.app = app
    statuses = []
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "localhost:5000",
    }
    environ.update(headers or {})
    body = middleware(environ, lambda status, h: statuses.append(status))
    return reached, statuses[0], b"".join(body)


def test_wsgi_front_door_behaves_the_same(identity, config):
    _, key = identity
    path = "/api/2.0/mlflow/experiments/get"
    query = {"QUERY_STRING": "experiment_id=0"}
    middleware = SecureWSGIMiddleware(None, config(FakeEngine()))
    assert call_wsgi(middleware, "GET", "/health")[1] == "200 OK"
    assert call_wsgi(middleware, "GET", "/api/2.0/mlflow/x")[1] == "404 Not Found"
    reached, status, _body = call_wsgi(middleware, "GET", path, query)
    assert status == "401 Unauthorized"
    reached, status, _ = call_wsgi(
        middleware, "GET", path, {**query, "HTTP_AUTHORIZATION": f"Bearer {key}"}
    )
    assert (reached, status) == (["alice"], "200 OK")
    basic = base64.b64encode(f"alice:{key}".encode()).decode()
    _, status, _ = call_wsgi(
        middleware, "GET", path, {**query, "HTTP_AUTHORIZATION": f"Bearer {key}, Basic {basic}"}
    )
    assert status == "400 Bad Request"  # two credentials folded into one header
    down = SecureWSGIMiddleware(None, config(FakeEngine(down=True)))
    assert call_wsgi(down, "GET", path, {**query, "HTTP_AUTHORIZATION": f"Bearer {key}"})[
        1
    ].startswith("503")


def test_access_log_query_strings_are_redacted():
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5", "GET", "/api/2.0/mlflow/runs/get?run_id=1&key=mlsk_x", "1.1", 401),
        None,
    )
    QueryStringRedactor().filter(record)
    message = record.getMessage()
    assert "mlsk_x" not in message
    assert "/api/2.0/mlflow/runs/get?[query redacted]" in message


class RecordingAudit:
    def __init__(self):
        self.events = []

    def record(self, event):
        self.events.append(event)


class RecordingShadow:
    def __init__(self):
        self.calls = []

    def compare(self, policy_input, decision, decision_id, revision=None):
        self.calls.append((policy_input, decision, decision_id, revision))


@pytest.mark.parametrize("allow", [True, False])
def test_decisions_carry_the_policy_revision_and_reach_the_shadow(identity, config, allow):
    _, key = identity
    engine, audit, shadow = FakeEngine(allow=allow), RecordingAudit(), RecordingShadow()
    front = config(engine)
    front.audit, front.shadow = audit, shadow
    call_asgi(
        SecureASGIMiddleware(None, front),
        http_scope("GET", "/api/2.0/mlflow/experiments/get", bearer(key), b"experiment_id=0"),
    )
    wsgi = SecureWSGIMiddleware(None, front)
    headers = {"QUERY_STRING": "experiment_id=0", "HTTP_AUTHORIZATION": f"Bearer {key}"}
    call_wsgi(wsgi, "GET", "/api/2.0/mlflow/experiments/get", headers)
    assert [event.policy_revision for event in audit.events] == [engine.revision] * 2
    assert len(shadow.calls) == 2
    calls = zip(shadow.calls, audit.events, engine.client.inputs, strict=True)
    for (policy_input, decision, decision_id, revision), event, asked in calls:
        assert policy_input is asked  # the very input the active policy decided
        assert decision.allow is allow
        assert decision_id == event.decision_id
        assert revision == engine.revision


def test_no_revision_and_no_shadow_when_no_policy_decided(identity, config):
    _, key = identity
    audit, shadow = RecordingAudit(), RecordingShadow()
    front = config(FakeEngine(down=True))
    front.audit, front.shadow = audit, shadow
    call_asgi(
        SecureASGIMiddleware(None, front),
        http_scope("GET", "/api/2.0/mlflow/experiments/get", bearer(key), b"experiment_id=0"),
    )
    call_asgi(SecureASGIMiddleware(None, front), http_scope("GET", "/api/2.0/mlflow/x"))
    assert [event.decision for event in audit.events] == ["unavailable", "deny"]
    assert [event.policy_revision for event in audit.events] == [None, None]
    assert shadow.calls == []


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ([(b"host", b"evil.example:5000")], "Host header"),
        ([(b"origin", b"https://evil.example")], "cross-origin"),
    ],
)
def test_foreign_host_or_origin_is_refused_before_authentication(config, headers, reason):
    """DNS rebinding and cross-origin writes: refused first, with MLflow's own rules."""
    front, audit = config(FakeEngine(allow=True)), RecordingAudit()
    front.audit = audit
    scope = http_scope("POST", "/api/2.0/mlflow/experiments/create", headers)
    if headers[0][0] == b"host":
        scope["headers"] = [h for h in scope["headers"] if h[1] != b"localhost:5000"]
    reached, sent = call_asgi(SecureASGIMiddleware(None, front), scope, b"{}")
    assert not reached
    assert sent[0]["status"] == 403
    assert reason in audit.events[-1].reasons[0]
    assert audit.events[-1].decision == "deny"


def test_a_listing_is_narrowed_on_the_event_loop_once_the_caches_are_warm(identity, config):
    """Cold: the store is needed, so the narrowing runs in a thread (sync filter). Warm: two
    passes on the loop around one asynchronous filter call, and the same result."""
    _, key = identity
    engine = FakeEngine(allow=True)
    front = config(engine)
    body = json.dumps({"experiment_ids": ["0"]}).encode()
    scope = http_scope(
        "POST",
        "/api/2.0/mlflow/runs/search",
        [*bearer(key), (b"content-type", b"application/json")],
    )
    bodies = []
    for _ in range(2):
        reached, sent = call_asgi(SecureASGIMiddleware(None, front), dict(scope), body)
        assert sent[0]["status"] == 200
        bodies.append(json.loads(reached[0][1]))
    assert bodies[0] == bodies[1] == {"experiment_ids": ["0"]}
    assert engine.client.filters == [("sync", ["0"]), ("async", ["0"])]
    # an id nobody has seen (missing ones are never cached) sends it back to a thread
    missing = json.dumps({"experiment_ids": ["0", "424242"]}).encode()
    reached, _ = call_asgi(SecureASGIMiddleware(None, front), dict(scope), missing)
    assert json.loads(reached[0][1]) == {"experiment_ids": ["0"]}
    assert engine.client.filters[-1] == ("sync", ["0"])


def test_the_decision_cache_saves_identical_decisions_and_never_caches_an_outage(identity, config):
    from mlflow_secure.policy.decision_cache import DecisionCache

    _, key = identity
    engine = FakeEngine(allow=True)
    front = config(engine)
    front.decisions = DecisionCache(ttl=60)
    scope = http_scope("GET", "/api/2.0/mlflow/experiments/get", bearer(key), b"experiment_id=0")
    for _ in range(3):
        _, sent = call_asgi(SecureASGIMiddleware(None, front), dict(scope))
        assert sent[0]["status"] == 200
    assert len(engine.client.inputs) == 1  # one OPA decision for three identical requests
    other = http_scope("GET", "/api/2.0/mlflow/experiments/get", bearer(key), b"experiment_id=1")
    call_asgi(SecureASGIMiddleware(None, front), other)
    assert len(engine.client.inputs) == 2  # another resource is another decision
    down = FakeEngine(down=True)
    front = config(down)
    front.decisions = DecisionCache(ttl=60)
    for _ in range(2):
        _, sent = call_asgi(SecureASGIMiddleware(None, front), dict(scope))
        assert sent[0]["status"] == 503
    assert len(down.client.inputs) == 2  # an unavailable OPA is asked again, never cached


def test_a_decision_is_not_reused_while_opa_is_down_or_its_policy_unrepeatable(identity, config):
    """The cached allow is there, but a managed OPA that is not running refuses at once,
    and a policy whose answers may not be reused (no reusable revision) is asked each time."""
    from mlflow_secure.policy.decision_cache import DecisionCache

    _, key = identity
    scope = http_scope("GET", "/api/2.0/mlflow/experiments/get", bearer(key), b"experiment_id=0")
    engine = FakeEngine(allow=True)
    front = config(engine)
    front.decisions = DecisionCache(ttl=60)
    assert call_asgi(SecureASGIMiddleware(None, front), dict(scope))[1][0]["status"] == 200
    engine.running, engine.client.down = False, True  # OPA killed: the entry stays unused
    assert call_asgi(SecureASGIMiddleware(None, front), dict(scope))[1][0]["status"] == 503
    assert len(engine.client.inputs) == 2
    engine.running, engine.client.down = True, False
    assert call_asgi(SecureASGIMiddleware(None, front), dict(scope))[1][0]["status"] == 200
    assert len(engine.client.inputs) == 2  # back: the entry is used again
    engine.reusable = None  # a policy reading the time (determinism.py)
    for _ in range(2):
        assert call_asgi(SecureASGIMiddleware(None, front), dict(scope))[1][0]["status"] == 200
    assert len(engine.client.inputs) == 4


def test_a_listing_filter_is_reused_like_a_decision(identity, config):
    from mlflow_secure.policy.decision_cache import DecisionCache

    _, key = identity
    engine = FakeEngine(allow=True)
    front = config(engine)
    front.decisions = DecisionCache(ttl=60)
    body = json.dumps({"experiment_ids": ["0"]}).encode()
    headers = [*bearer(key), (b"content-type", b"application/json")]
    scope = http_scope("POST", "/api/2.0/mlflow/runs/search", headers)
    for _ in range(3):
        reached, sent = call_asgi(SecureASGIMiddleware(None, front), dict(scope), body)
        assert sent[0]["status"] == 200
        assert json.loads(reached[0][1]) == {"experiment_ids": ["0"]}
    assert engine.client.filters == [("sync", ["0"])]  # then reused, on the loop
    assert len(engine.client.inputs) == 1
    engine.running = False
    reached, sent = call_asgi(SecureASGIMiddleware(None, front), dict(scope), body)
    assert len(engine.client.inputs) == 2
    assert len(engine.client.filters) == 2


def test_an_allowed_alternative_becomes_the_decided_input(config):
    """A dataset read allowed through its second experiment: the trail (audit event, shadow
    comparison) names that experiment and the input that was allowed, not the first one."""
    from types import SimpleNamespace

    from mlflow_secure.request.decision import policy_input
    from mlflow_secure.request.pipeline import Pipeline
    from mlflow_secure.request.trail import RequestFacts, Trail

    pipeline = Pipeline(config(FakeEngine()))
    facts = RequestFacts("GET", "/api/3.0/mlflow/datasets/d", b"", "127.0.0.1", False)
    trail = Trail(facts)
    trail.subject = SimpleNamespace(policy_input=lambda: {"id": "bob"})
    trail.action = SimpleNamespace(endpoint="mlflow.datasets.get", access="read")
    first = {"type": "dataset", "id": "d", "experiment_id": "1"}
    second = {"type": "dataset", "id": "d", "experiment_id": "2"}
    trail.resource, trail.any_of = first, [second]
    trail.policy_input = policy_input(trail.subject, trail.action, first, facts)
    refusal = Decision(False, ("not yours",))
    assert pipeline.alternatives_wanted(trail, refusal)
    kept = pipeline.first_allowed(trail, refusal, [Decision(True, ())])
    assert kept.allow
    assert trail.resource == second
    assert trail.policy_input["resource"] == second
    assert pipeline.first_allowed(trail, refusal, [PolicyUnavailable("down")]) is refusal
