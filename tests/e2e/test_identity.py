"""Identity end to end: real server (SQLite and PostgreSQL), real OPA, real MLflow clients."""

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from tests.support import servers
from tests.support.oidc_provider import LocalOidcProvider

pytestmark = pytest.mark.e2e

CLI = str(Path(sys.executable).with_name("mlflow-secure"))
ADMIN_PASSWORD = "admin's correct horse battery"


def cli(server, key, *args, check=True):
    env = {**os.environ, "MLFLOW_TRACKING_URI": server.url, "MLFLOW_SECURE_API_KEY": key}
    env.pop("MLFLOW_TRACKING_TOKEN", None)
    result = subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=60)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def basic(user, password):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    # Many deliberate failures below come from one address; throttling has its own test.
    running = servers.start(
        tmp_path_factory.mktemp("identity"),
        workers=2,
        env={"MLFLOW_SECURE_AUTH_MAX_FAILURES": "1000"},
    )
    yield running
    running.interrupt()


@pytest.fixture(scope="module")
def admin_key(server):
    return server.admin_key()


@pytest.fixture
def tracking(monkeypatch, server):
    """The stock MLflow client pointed at the server, with no credentials of its own."""
    for name in (
        "MLFLOW_TRACKING_TOKEN",
        "MLFLOW_TRACKING_USERNAME",
        "MLFLOW_TRACKING_PASSWORD",
        "MLFLOW_TRACKING_AUTH",
        "MLFLOW_SECURE_API_KEY",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    return monkeypatch


def test_bootstrap_admin_key_file(server, admin_key):
    key_file = Path(server.env["MLFLOW_SECURE_BOOTSTRAP_KEY_FILE"])
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert server.log().count(f"its API key is in {key_file}") == 1  # printed once, two workers
    whoami = server.api("GET", "/api/2.0/mlflow-secure/whoami", admin_key)
    assert whoami.status_code == 200, whoami.text
    subject = whoami.json()["subject"]
    assert subject["id"] == "admin"
    assert subject["roles"] == ["admin"]
    assert subject["auth"] == "api_key"


def test_stock_client_with_tracking_token(tracking, admin_key):
    tracking.setenv("MLFLOW_TRACKING_TOKEN", admin_key)
    client = MlflowClient()
    experiment_id = client.create_experiment("token-experiment")
    run = client.create_run(experiment_id)
    client.log_param(run.info.run_id, "alpha", "0.5")
    client.log_metric(run.info.run_id, "loss", 0.25)
    fetched = client.get_run(run.info.run_id)
    assert fetched.data.params == {"alpha": "0.5"}
    assert fetched.data.metrics == {"loss": 0.25}


def test_no_or_bad_token_is_refused_by_the_stock_client(tracking):
    with pytest.raises(MlflowException, match="Authentication required"):
        MlflowClient().search_experiments()
    tracking.setenv("MLFLOW_TRACKING_TOKEN", "mlsk_" + "0" * 61)
    with pytest.raises(MlflowException, match="Invalid API key"):
        MlflowClient().search_experiments()


def test_cli_service_account_key_and_the_secure_auth_provider(server, admin_key, tracking):
    cli(server, admin_key, "projects", "create", "fraud")
    cli(server, admin_key, "users", "create", "alice")
    cli(server, admin_key, "service-accounts", "create", "ci-bot", "--owner", "alice")
    created = cli(
        server,
        admin_key,
        "keys",
        "create",
        "--service-account",
        "ci-bot",
        "--scope",
        "write",
        "--project",
        "fraud",
        "--expires",
        "30d",
        "--json",
    )
    payload = json.loads(created.stdout)
    key = payload["key"]
    assert payload["api_key"]["scopes"] == ["write"]
    assert payload["api_key"]["projects"] == ["fraud"]
    assert payload["api_key"]["expires_at"] is not None
    listed = cli(server, admin_key, "keys", "list", "--service-account", "ci-bot", "--json")
    assert key not in listed.stdout
    assert payload["api_key"]["key_id"] in listed.stdout

    tracking.setenv("MLFLOW_TRACKING_AUTH", "secure")
    tracking.setenv("MLFLOW_SECURE_API_KEY", key)
    whoami = subprocess.run(
        [CLI, "whoami", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "MLFLOW_TRACKING_URI": server.url},
    )
    subject = json.loads(whoami.stdout)["subject"]
    assert subject["id"] == "ci-bot"
    assert subject["kind"] == "service"
    assert subject["scopes"] == ["write"]
    assert subject["key_projects"] == ["fraud"]
    # The service account is no administrator and has no project role yet: its listings are
    # narrowed to nothing, and a direct read of the Default experiment is refused.
    assert MlflowClient().search_experiments() == []
    assert list(MlflowClient().list_webhooks()) == []
    with pytest.raises(MlflowException, match="experiment") as info:
        MlflowClient().get_experiment("0")
    assert info.value.error_code == "PERMISSION_DENIED"


def test_denials_carry_a_decision_id_and_reasons(server, admin_key):
    with httpx.Client() as http:
        created = http.post(
            server.url + "/api/2.0/mlflow-secure/users/create",
            json={"name": "bob", "password": "bob's long password"},
            headers={"Authorization": f"Bearer {admin_key}"},
        )
        assert created.status_code == 200, created.text
        denied = http.post(
            server.url + "/ajax-api/3.0/jobs/search",
            headers=basic("bob", "bob's long password"),
            json={},
        )
    assert denied.status_code == 403
    body = denied.json()
    assert body["error_code"] == "PERMISSION_DENIED"
    assert len(body["decision_id"]) == 32
    assert body["reasons"] == [
        "listing job is open to administrators and auditors only until its results are filtered"
    ]
    assert body["decision_id"] in server.log()


def test_basic_auth_for_the_ui(server, admin_key):
    updated = server.api(
        "PATCH",
        "/api/2.0/mlflow-secure/users/update",
        admin_key,
        json={"name": "admin", "password": ADMIN_PASSWORD},
    )
    assert updated.status_code == 200, updated.text
    # The UI shell is public (static); its first data call draws the browser's login prompt.
    assert server.get("/").status_code == 200
    anonymous = server.get("/ajax-api/2.0/mlflow/experiments/search?max_results=1")
    assert anonymous.status_code == 401
    challenges = anonymous.headers.get_list("www-authenticate")
    assert any(c.startswith("Basic ") for c in challenges)
    for headers in (basic("admin", ADMIN_PASSWORD), basic("admin", admin_key)):
        page = server.get("/", headers=headers)
        assert page.status_code == 200
        assert "<html" in page.text.lower()
        ajax = server.get("/ajax-api/2.0/mlflow/experiments/search?max_results=1", headers=headers)
        assert ajax.status_code == 200, ajax.text
    wrong = server.get(
        "/ajax-api/2.0/mlflow/experiments/search?max_results=1",
        headers=basic("admin", "wrong password!"),
    )
    assert wrong.status_code == 401


def test_forged_authorship_is_overwritten(server, admin_key):
    with httpx.Client(headers={"Authorization": f"Bearer {admin_key}"}) as http:
        experiment = http.post(
            server.url + "/api/2.0/mlflow/experiments/create", json={"name": "authorship"}
        ).json()["experiment_id"]
        run = http.post(
            server.url + "/api/2.0/mlflow/runs/create",
            json={
                "experiment_id": experiment,
                "user_id": "mallory",
                "tags": [{"key": "mlflow.user", "value": "mallory"}],
            },
        )
        assert run.status_code == 200, run.text
        info = run.json()["run"]
    assert info["info"]["user_id"] == "admin"
    tags = {t["key"]: t["value"] for t in info["data"]["tags"]}
    assert tags["mlflow.user"] == "admin"


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Authorization": "Token abc"}, 401),
        ({"Authorization": "Basic !!!"}, 401),
        ({"Authorization": "Basic " + base64.b64encode(b"no-colon").decode()}, 401),
        ({"Authorization": "Bearer"}, 401),
        ({"Authorization": "Bearer " + "x" * 10000}, 400),
        (
            {
                "Authorization": (
                    "Bearer eyJhbGciOiJub25lIn0.eyJwcmVmZXJyZWRfdXNlcm5hbWUiOiJhZG1pbiJ9."
                )
            },
            401,
        ),
    ],
)
def test_malformed_credentials(server, headers, status):
    response = server.get("/api/2.0/mlflow/experiments/search", headers=headers)
    assert response.status_code == status
    assert response.json()["error_code"] in {"UNAUTHENTICATED", "INVALID_PARAMETER_VALUE"}
    secret = headers["Authorization"].split(" ", 1)[-1]
    if len(secret) > 4:
        assert secret not in response.text


def test_two_authorization_headers_are_refused(server, admin_key):
    response = httpx.get(
        server.url + "/api/2.0/mlflow/experiments/search",
        headers=[("Authorization", f"Bearer {admin_key}"), ("Authorization", "Bearer other")],
    )
    assert response.status_code == 400


def test_key_in_the_url_is_refused(server, admin_key):
    response = server.get(f"/api/2.0/mlflow/experiments/search?api_key={admin_key}")
    assert response.status_code == 400
    assert admin_key not in response.text


def test_secrets_never_reach_the_log(server, admin_key):
    # Runs last in this module: everything above used these secrets.
    log = server.log()
    assert admin_key not in log
    assert admin_key[17:60] not in log
    assert ADMIN_PASSWORD not in log
    assert "bob's long password" not in log


def test_revocation_within_one_second_on_four_workers(tmp_path):
    server = servers.start(tmp_path, workers=4, env={"MLFLOW_SECURE_AUTH_MAX_FAILURES": "1000"})
    try:
        admin = server.admin_key()
        created = server.api(
            "POST", "/api/2.0/mlflow-secure/keys/create", admin, json={"scopes": ["read"]}
        ).json()
        key = created["key"]
        with httpx.Client(headers={"Authorization": f"Bearer {key}"}) as http:
            # Warm every worker's cache (requests spread over the workers).
            for _ in range(40):
                assert http.get(server.url + "/api/2.0/mlflow-secure/whoami").status_code == 200
            revoked = server.api(
                "POST",
                "/api/2.0/mlflow-secure/keys/revoke",
                admin,
                json={"key_id": created["api_key"]["key_id"]},
            )
            assert revoked.status_code == 200
            time.sleep(1.0)
            statuses = [
                http.get(server.url + "/api/2.0/mlflow-secure/whoami").status_code
                for _ in range(60)
            ]
        assert set(statuses) == {401}, statuses
    finally:
        server.interrupt()


def test_throttling_after_repeated_failures(tmp_path):
    server = servers.start(
        tmp_path,
        workers=2,
        env={"MLFLOW_SECURE_AUTH_MAX_FAILURES": "5", "MLFLOW_SECURE_AUTH_BLOCK_SECONDS": "60"},
    )
    try:
        admin = server.admin_key()
        statuses = []
        for attempt in range(8):
            response = server.get(
                "/api/2.0/mlflow/experiments/search",
                headers=basic("admin", f"wrong password {attempt:04d}"),
            )
            statuses.append(response.status_code)
        assert statuses[:4] == [401] * 4
        assert 429 in statuses[4:6]
        assert statuses[-1] == 429
        throttled = server.api("GET", "/api/2.0/mlflow-secure/whoami", admin)
        assert throttled.status_code == 429  # even a good key, from a blocked client
        assert 0 < int(throttled.headers["retry-after"]) <= 61
    finally:
        server.interrupt()


def test_oidc_bearer_tokens(tmp_path):
    with LocalOidcProvider() as provider:
        server = servers.start(
            tmp_path,
            env={
                "MLFLOW_SECURE_OIDC_ISSUER": provider.issuer,
                "MLFLOW_SECURE_OIDC_AUDIENCE": "mlflow",
            },
        )
        try:
            admin = server.admin_key()
            server.api("POST", "/api/2.0/mlflow-secure/users/create", admin, json={"name": "carol"})
            server.api(
                "POST", "/api/2.0/mlflow-secure/teams/create", admin, json={"name": "vision"}
            )
            token = provider.mint({"preferred_username": "carol", "groups": ["/vision"]})
            whoami = server.api("GET", "/api/2.0/mlflow-secure/whoami", token)
            assert whoami.status_code == 200, whoami.text
            subject = whoami.json()["subject"]
            assert (subject["id"], subject["auth"], subject["teams"]) == (
                "carol",
                "oidc",
                ["vision"],
            )
            for bad in (
                provider.mint({"preferred_username": "carol"}, expires_in=-120),
                provider.mint({"preferred_username": "carol"}, audience="someone-else"),
                provider.mint_unsigned({"preferred_username": "admin"}),
                provider.mint({"preferred_username": "stranger"}),
            ):
                response = server.api("GET", "/api/2.0/mlflow-secure/whoami", bad)
                assert response.status_code == 401
                assert bad not in response.text
        finally:
            server.interrupt()


def test_service_account_with_oidc_client_credentials(tmp_path, monkeypatch):
    """CI's path: the `secure` auth provider fetches and refreshes tokens itself."""
    with LocalOidcProvider() as provider:
        provider.register_client("ci-runner", "runner-secret-value")
        provider.token_lifetime = 60
        server = servers.start(
            tmp_path,
            env={
                "MLFLOW_SECURE_OIDC_ISSUER": provider.issuer,
                "MLFLOW_SECURE_OIDC_AUDIENCE": "mlflow",
            },
        )
        try:
            admin = server.admin_key()
            created = server.api(
                "POST",
                "/api/2.0/mlflow-secure/service-accounts/create",
                admin,
                json={"name": "ci-runner", "roles": ["admin"]},
            )
            assert created.status_code == 200, created.text
            for name in ("MLFLOW_TRACKING_TOKEN", "MLFLOW_SECURE_API_KEY"):
                monkeypatch.delenv(name, raising=False)
            monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
            monkeypatch.setenv("MLFLOW_TRACKING_AUTH", "secure")
            monkeypatch.setenv("MLFLOW_SECURE_OIDC_TOKEN_URL", provider.token_url)
            monkeypatch.setenv("MLFLOW_SECURE_OIDC_CLIENT_ID", "ci-runner")
            monkeypatch.setenv("MLFLOW_SECURE_OIDC_CLIENT_SECRET", "runner-secret-value")
            client = MlflowClient()
            experiment_id = client.create_experiment("ci-experiment")
            run = client.create_run(experiment_id)
            assert client.get_run(run.info.run_id).info.user_id == "ci-runner"
            assert provider.token_requests == 1  # cached across calls
            assert "runner-secret-value" not in server.log()
        finally:
            server.interrupt()


def test_gunicorn_workers_authenticate_and_authorise(tmp_path):
    server = servers.start(tmp_path, extra_args=("--gunicorn-opts", "--timeout 60"))
    try:
        admin = server.admin_key()
        whoami = server.api("GET", "/api/2.0/mlflow-secure/whoami", admin)
        assert whoami.status_code == 200, whoami.text
        assert whoami.json()["subject"]["id"] == "admin"
        created = server.api(
            "POST", "/api/2.0/mlflow/experiments/create", admin, json={"name": "wsgi"}
        )
        assert created.status_code == 200, created.text
        run = server.api(
            "POST",
            "/api/2.0/mlflow/runs/create",
            admin,
            json={"experiment_id": created.json()["experiment_id"], "user_id": "mallory"},
        )
        assert run.json()["run"]["info"]["user_id"] == "admin"
    finally:
        server.interrupt()


def test_postgres_identity_store(tmp_path, postgres_server):
    uri = postgres_server.make_database("e2e_identity")
    server = servers.start(tmp_path, backend_uri=uri, workers=2)
    try:
        admin = server.admin_key()
        assert server.api("GET", "/api/2.0/mlflow-secure/whoami", admin).status_code == 200
        created = server.api(
            "POST", "/api/2.0/mlflow-secure/keys/create", admin, json={"scopes": ["read", "write"]}
        ).json()
        search = server.api(
            "GET", "/api/2.0/mlflow/experiments/search?max_results=10", created["key"]
        )
        assert search.status_code == 200, search.text
        server.api(
            "POST",
            "/api/2.0/mlflow-secure/keys/revoke",
            admin,
            json={"key_id": created["api_key"]["key_id"]},
        )
        time.sleep(1.0)
        assert server.api("GET", "/api/2.0/mlflow-secure/whoami", created["key"]).status_code == 401
    finally:
        server.interrupt()
    import sqlalchemy

    engine = sqlalchemy.create_engine(uri)
    with engine.connect() as connection:
        names = sqlalchemy.inspect(connection).get_table_names()
    engine.dispose()
    assert "mls_principals" in names  # the identity store lives beside MLflow's tables
    assert "experiments" in names
