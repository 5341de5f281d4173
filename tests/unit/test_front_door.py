"""The middleware alone, with a stand-in policy engine (the e2e tests use a real one)."""

import asyncio
import json

import pytest

from mlflow_secure.front_door import SecureASGIMiddleware, SecureWSGIMiddleware

HEALTH = frozenset({"/health"})


class FakeEngine:
    def __init__(self, problem=None):
        self._problem = problem

    async def problem(self):
        return self._problem

    def problem_sync(self):
        return self._problem


def call_asgi(middleware, scope):
    sent = []
    reached = []

    async def app(scope, receive, send):
        reached.append(scope)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"OK"})

    middleware.app = app

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    asyncio.run(middleware(scope, receive, send))
    return reached, sent


def http_scope(method, path):
    return {"type": "http", "method": method, "path": path, "headers": []}


@pytest.mark.parametrize(("method", "path"), [("GET", "/health"), ("HEAD", "/health")])
def test_health_passes_when_policy_engine_answers(method, path):
    reached, sent = call_asgi(
        SecureASGIMiddleware(None, FakeEngine(), HEALTH), http_scope(method, path)
    )
    assert reached
    assert sent[0]["status"] == 200


def test_health_is_503_while_policy_engine_is_down():
    middleware = SecureASGIMiddleware(None, FakeEngine("unreachable /secret/path"), HEALTH)
    reached, sent = call_asgi(middleware, http_scope("GET", "/health"))
    assert not reached
    assert sent[0]["status"] == 503
    body = json.loads(sent[1]["body"])
    assert body["error_code"] == "TEMPORARILY_UNAVAILABLE"
    assert "/secret/path" not in body["message"]  # internals stay in the server log


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/health"),
        ("GET", "/health/"),
        ("GET", "//health"),
        ("GET", "/healthz"),
        ("GET", "/api/2.0/mlflow/experiments/search"),
        ("POST", "/ajax-api/2.0/mlflow/runs/create"),
        ("GET", "/"),
        ("GET", "/version"),
    ],
)
def test_everything_else_is_401_with_mlflow_error_shape(method, path):
    reached, sent = call_asgi(
        SecureASGIMiddleware(None, FakeEngine(), HEALTH), http_scope(method, path)
    )
    assert not reached
    start, body = sent
    assert start["status"] == 401
    headers = dict(start["headers"])
    assert headers[b"www-authenticate"].startswith(b"Bearer")
    assert headers[b"content-type"] == b"application/json"
    assert json.loads(body["body"])["error_code"] == "UNAUTHENTICATED"


def test_websocket_is_closed_without_reaching_the_app():
    reached, sent = call_asgi(
        SecureASGIMiddleware(None, FakeEngine(), HEALTH), {"type": "websocket", "path": "/ws"}
    )
    assert not reached
    assert sent == [{"type": "websocket.close", "code": 1008}]


def test_lifespan_reaches_the_app():
    reached, _ = call_asgi(SecureASGIMiddleware(None, FakeEngine(), HEALTH), {"type": "lifespan"})
    assert reached


def call_wsgi(engine, method, path):
    reached = []

    def app(environ, start_response):
        reached.append(environ)
        start_response("200 OK", [])
        return [b"OK"]

    statuses = []
    body = SecureWSGIMiddleware(app, engine, HEALTH)(
        {"REQUEST_METHOD": method, "PATH_INFO": path},
        lambda status, headers: statuses.append((status, headers)),
    )
    return reached, statuses[0], b"".join(body)


def test_wsgi_front_door_behaves_the_same():
    reached, status, _ = call_wsgi(FakeEngine(), "GET", "/health")
    assert reached
    assert status[0] == "200 OK"
    reached, status, body = call_wsgi(FakeEngine(), "GET", "/api/2.0/mlflow/experiments/search")
    assert not reached
    assert status[0] == "401 Unauthorized"
    assert json.loads(body)["error_code"] == "UNAUTHENTICATED"
    reached, status, _ = call_wsgi(FakeEngine("down"), "GET", "/health")
    assert not reached
    assert status[0] == "503 Service Unavailable"


def test_access_log_query_strings_are_redacted():
    import logging

    from mlflow_secure.log_redaction import QueryStringRedactor

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
