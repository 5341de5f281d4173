"""`mlflow server --app-name secure` on SQLite and PostgreSQL, under uvicorn, gunicorn, waitress."""

import json

import pytest
import sqlalchemy

from tests.support import servers

pytestmark = pytest.mark.e2e

PROTECTED = [
    ("POST", "/api/2.0/mlflow/experiments/create"),
    ("GET", "/api/2.0/mlflow/experiments/search"),
    ("GET", "/ajax-api/2.0/mlflow/experiments/search"),
    ("POST", "/api/3.0/mlflow/traces"),
    ("GET", "/api/2.0/mlflow-artifacts/artifacts"),
    ("POST", "/v1/traces"),  # FastAPI-native OTLP route
    ("GET", "/graphql"),
    ("GET", "/version"),
]
# Not routes at all: refused before credentials matter (no route serves them).
NO_ROUTE = [("GET", "/health/"), ("POST", "/health"), ("GET", "/api/2.0/mlflow/nope")]


def assert_unauthenticated(response):
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "error_code": "UNAUTHENTICATED",
        "message": "Authentication required.",
    }


def assert_health_and_denials(server):
    health = server.get("/health")
    assert health.status_code == 200
    assert health.text == "OK"
    for method, path in PROTECTED:
        response = servers.httpx.request(method, server.url + path, json={"name": "x"}, timeout=30)
        assert_unauthenticated(response)
    for method, path in NO_ROUTE:
        response = servers.httpx.request(method, server.url + path, timeout=30)
        assert response.status_code == 404
        assert response.json()["error_code"] == "ENDPOINT_NOT_FOUND"
    # The UI shell is a public census route; every data call behind it needs credentials.
    assert server.get("/").status_code == 200


@pytest.fixture(scope="module")
def sqlite_server(tmp_path_factory):
    server = servers.start(tmp_path_factory.mktemp("sqlite"))
    yield server
    server.interrupt()


def test_sqlite_health_is_public_and_every_api_call_needs_credentials(sqlite_server):
    assert_health_and_denials(sqlite_server)
    assert_only_default_experiment(sqlite_server.backend_uri)


def assert_only_default_experiment(uri):
    """MLflow really ran against this database, and the refused calls created nothing."""
    engine = sqlalchemy.create_engine(uri)
    try:
        with engine.connect() as connection:
            rows = connection.execute(sqlalchemy.text("SELECT name FROM experiments")).all()
    finally:
        engine.dispose()
    assert [row.name for row in rows] == ["Default"]


def test_postgres_backend(tmp_path, postgres_server):
    uri = postgres_server.make_database("e2e_serve")
    server = servers.start(tmp_path, backend_uri=uri)
    try:
        assert_health_and_denials(server)
        assert_only_default_experiment(uri)
    finally:
        server.interrupt()
    assert server.opa_pids() == []


def test_gunicorn(tmp_path):
    server = servers.start(tmp_path, extra_args=("--gunicorn-opts", "--timeout 60"))
    try:
        assert_wsgi_front_door(server)
    finally:
        server.interrupt()
    assert server.opa_pids() == []


def test_waitress(tmp_path):
    """The factory under waitress, launched directly.

    MLflow 3.17's CLI passes a factory to waitress both as `app()` and with `--call`, which
    waitress rejects for every `--app-name` app, so this runs waitress the way it documents.
    """
    port = servers.free_port()
    backend_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = servers.server_env(
        tmp_path,
        {"_MLFLOW_SERVER_FILE_STORE": backend_uri, "_MLFLOW_SGI_NAME": "waitress"},
    )
    command = [
        servers.sys.executable,
        "-m",
        "waitress",
        "--host=127.0.0.1",
        f"--port={port}",
        "--call",
        "mlflow_secure.app:create_app",
    ]
    server = servers.wait_healthy(servers.spawn(tmp_path, command, env, port, backend_uri))
    try:
        assert_wsgi_front_door(server)
    finally:
        server.interrupt()
    assert server.opa_pids() == []


def assert_wsgi_front_door(server):
    assert server.get("/health").status_code == 200
    assert_unauthenticated(server.post("/api/2.0/mlflow/experiments/create", json={"name": "x"}))
    assert_unauthenticated(server.get("/ajax-api/2.0/mlflow/experiments/search"))
    assert server.get("/").status_code == 200  # the UI shell (public in the census)


def test_error_bodies_never_echo_credentials(sqlite_server):
    secret = "mlsk_live_" + "s3cr3t" * 8
    in_header = sqlite_server.get(
        "/api/2.0/mlflow/experiments/search", headers={"Authorization": f"Bearer {secret}"}
    )
    in_url = sqlite_server.get("/api/2.0/mlflow/experiments/search", params={"token": secret})
    assert in_header.status_code == 401
    assert in_url.status_code == 400
    for response in (in_header, in_url):
        assert secret not in response.text
        assert secret not in json.dumps(dict(response.headers))
    assert secret not in sqlite_server.log()
