"""The client plugins against real HTTP servers on 127.0.0.1: a token endpoint and an echo
server standing in for the tracking server, reached through MLflow's own request machinery."""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import secrets
import string
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote_plus

import pytest
import requests
from mlflow.exceptions import MlflowException

from mlflow_secure import __version__
from mlflow_secure.client import bearer, context, credentials, oidc
from mlflow_secure.client.auth_provider import (
    BearerAuth,
    OidcClientCredentials,
    OidcTokenSource,
    SecureAuthProvider,
    SecureClientError,
)
from mlflow_secure.client.errors import ClientError
from mlflow_secure.client.header_provider import SecureHeaderProvider, encryption_capability

BASE62 = string.ascii_letters + string.digits
CLIENT_ID = "ci-runner"
CLIENT_SECRET = "cs-" + "Zq9" * 12


def make_key() -> str:
    return "mlsk_" + "".join(secrets.choice(BASE62) for _ in range(61))


@pytest.fixture(autouse=True)
def _isolated_client_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fresh token cache per test, and no stock MLflow credential or proxy from the shell."""
    monkeypatch.setattr(oidc, "_token_sources", {})
    monkeypatch.setattr(context, "_warned_values", set())
    for name in (
        "MLFLOW_SECURE_API_KEY",
        "MLFLOW_SECURE_API_KEY_FILE",
        "MLFLOW_SECURE_OIDC_TOKEN_URL",
        "MLFLOW_SECURE_OIDC_CLIENT_ID",
        "MLFLOW_SECURE_OIDC_CLIENT_SECRET",
        "MLFLOW_SECURE_OIDC_CLIENT_SECRET_FILE",
        "MLFLOW_SECURE_OIDC_SCOPE",
        "MLFLOW_SECURE_OIDC_AUDIENCE",
        "MLFLOW_SECURE_PROJECT",
        "MLFLOW_TRACKING_TOKEN",
        "MLFLOW_TRACKING_USERNAME",
        "MLFLOW_TRACKING_PASSWORD",
        "MLFLOW_TRACKING_AUTH",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


def applied_authorization(auth: requests.auth.AuthBase) -> str:
    prepared = requests.Request("GET", "http://127.0.0.1:5000/api/2.0/mlflow/x", auth=auth)
    return prepared.prepare().headers["Authorization"]


# --- API keys -----------------------------------------------------------------------------------


def test_api_key_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    key = make_key()
    monkeypatch.setenv("MLFLOW_SECURE_API_KEY", key)
    provider = SecureAuthProvider()
    assert provider.get_name() == "secure"
    assert applied_authorization(provider.get_auth()) == f"Bearer {key}"


def test_env_key_wins_over_key_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env_key, file_key = make_key(), make_key()
    key_file = tmp_path / "key"
    key_file.write_text(file_key)
    key_file.chmod(0o600)
    monkeypatch.setenv("MLFLOW_SECURE_API_KEY", env_key)
    monkeypatch.setenv("MLFLOW_SECURE_API_KEY_FILE", str(key_file))
    assert applied_authorization(SecureAuthProvider().get_auth()) == f"Bearer {env_key}"


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_key_file_owner_only_is_accepted(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, mode: int
) -> None:
    key = make_key()
    key_file = tmp_path / "mlflow.key"
    key_file.write_text(f"\n{key}\n")  # editors add a newline; it is stripped
    key_file.chmod(mode)
    monkeypatch.setenv("MLFLOW_SECURE_API_KEY_FILE", str(key_file))
    assert applied_authorization(SecureAuthProvider().get_auth()) == f"Bearer {key}"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o620, 0o602])
def test_key_file_open_to_others_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, mode: int
) -> None:
    key = make_key()
    key_file = tmp_path / "mlflow.key"
    key_file.write_text(key)
    key_file.chmod(mode)
    monkeypatch.setenv("MLFLOW_SECURE_API_KEY_FILE", str(key_file))
    with pytest.raises(SecureClientError) as caught:
        SecureAuthProvider().get_auth()
    message = caught.value.message
    assert str(key_file) in message
    assert "chmod 600" in message
    assert f"{mode:04o}" in message
    assert key not in str(caught.value)
    assert key[5:20] not in str(caught.value)


def test_key_file_must_be_a_regular_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    directory = tmp_path / "keydir"
    directory.mkdir(mode=0o700)
    monkeypatch.setenv("MLFLOW_SECURE_API_KEY_FILE", str(directory))
    with pytest.raises(SecureClientError, match="not a regular file"):
        SecureAuthProvider().get_auth()

    fifo = tmp_path / "keyfifo"
    os.mkfifo(fifo, 0o600)
    monkeypatch.setenv("MLFLOW_SECURE_API_KEY_FILE", str(fifo))
    with pytest.raises(SecureClientError, match="not a regular file"):
        SecureAuthProvider().get_auth()  # refused, not blocked waiting for a writer


def test_missing_key_file_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    missing = tmp_path / "nope.key"
    monkeypatch.setenv("MLFLOW_SECURE_API_KEY_FILE", str(missing))
    with pytest.raises(SecureClientError, match="cannot be opened") as caught:
        SecureAuthProvider().get_auth()
    assert str(missing) in caught.value.message


def _malformed(key: str) -> dict[str, str]:
    return {
        "double quotes": f'"{key}"',
        "single quotes": f"'{key}'",
        "bearer prefix": f"Bearer {key}",
        "truncated": key[:-1],
        "bad character": key[:-1] + "-",
        "inner whitespace": key[:30] + " " + key[30:],
        "wrong prefix": "mlsx_" + key[5:],
    }


@pytest.mark.parametrize(
    ("case", "hint"),
    [
        ("double quotes", "quotes"),
        ("single quotes", "quotes"),
        ("bearer prefix", "Bearer"),
        ("truncated", "65 characters"),
        ("bad character", "letters and digits"),
        ("inner whitespace", "whitespace"),
        ("wrong prefix", "mlsk_"),
    ],
)
def test_malformed_key_error_does_not_echo_it(
    monkeypatch: pytest.MonkeyPatch, case: str, hint: str
) -> None:
    key = make_key()
    bad = _malformed(key)[case]
    monkeypatch.setenv("MLFLOW_SECURE_API_KEY", bad)
    with pytest.raises(SecureClientError) as caught:
        SecureAuthProvider().get_auth()
    text = str(caught.value)
    assert "MLFLOW_SECURE_API_KEY" in text
    assert hint in text
    # No run of 8 key characters survives in the message.
    body = key[5:]
    assert not any(body[i : i + 8] in text for i in range(len(body) - 7))


def test_malformed_key_in_file_names_file_not_contents(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    key = make_key()
    key_file = tmp_path / "mlflow.key"
    key_file.write_text(f'"{key}"')
    key_file.chmod(0o600)
    monkeypatch.setenv("MLFLOW_SECURE_API_KEY_FILE", str(key_file))
    with pytest.raises(SecureClientError, match="quotes") as caught:
        SecureAuthProvider().get_auth()
    assert str(key_file) in caught.value.message
    assert key[5:20] not in str(caught.value)


def test_nothing_configured_says_what_to_set() -> None:
    with pytest.raises(SecureClientError) as caught:
        SecureAuthProvider().get_auth()
    message = caught.value.message
    for name in (
        "MLFLOW_SECURE_API_KEY",
        "MLFLOW_SECURE_API_KEY_FILE",
        "MLFLOW_SECURE_OIDC_TOKEN_URL",
    ):
        assert name in message


def test_reprs_hide_credentials() -> None:
    key = make_key()
    creds = OidcClientCredentials("https://idp.example/token", CLIENT_ID, CLIENT_SECRET)
    assert CLIENT_SECRET not in repr(creds)
    assert key not in repr(BearerAuth(credentials.StaticCredential(key)))
    assert key not in repr(credentials.StaticCredential(key))


# --- OIDC client credentials --------------------------------------------------------------------


@dataclass
class TokenEndpoint:
    """A client-credentials token endpoint: checks Basic auth, counts grants."""

    url: str = ""
    expires_in: int | None = 3600
    delay: float = 0.0
    fail_with: int | None = None
    grants: list[dict[str, list[str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def count(self) -> int:
        with self.lock:
            return len(self.grants)


@pytest.fixture
def token_endpoint() -> Iterator[TokenEndpoint]:
    state = TokenEndpoint()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _reply(self, status: int, payload: dict[str, object]) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            form = parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
            scheme, _, encoded = self.headers.get("Authorization", "").partition(" ")
            user, _, password = base64.b64decode(encoded).decode().partition(":")
            if state.delay:
                time.sleep(state.delay)
            if state.fail_with:
                self._reply(state.fail_with, {"error": "temporarily_unavailable"})
                return
            if (
                scheme != "Basic"
                or unquote_plus(user) != CLIENT_ID
                or unquote_plus(password) != CLIENT_SECRET
            ):
                # A careless IdP that echoes what it was sent: the client must not repeat it.
                self._reply(
                    401,
                    {"error": "invalid_client", "error_description": f"bad secret {password}"},
                )
                return
            if form.get("grant_type") != ["client_credentials"]:
                self._reply(400, {"error": "unsupported_grant_type"})
                return
            with state.lock:
                state.grants.append(form)
                number = len(state.grants)
            payload: dict[str, object] = {"access_token": f"tok.{number}", "token_type": "Bearer"}
            if state.expires_in is not None:
                payload["expires_in"] = state.expires_in
            self._reply(200, payload)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_port}/oauth2/token"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def oidc_env(monkeypatch: pytest.MonkeyPatch, token_endpoint: TokenEndpoint) -> TokenEndpoint:
    monkeypatch.setenv("MLFLOW_SECURE_OIDC_TOKEN_URL", token_endpoint.url)
    monkeypatch.setenv("MLFLOW_SECURE_OIDC_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("MLFLOW_SECURE_OIDC_CLIENT_SECRET", CLIENT_SECRET)
    return token_endpoint


def test_oidc_token_is_fetched_once_and_cached(
    monkeypatch: pytest.MonkeyPatch, oidc_env: TokenEndpoint
) -> None:
    monkeypatch.setenv("MLFLOW_SECURE_OIDC_SCOPE", "mlflow.write")
    monkeypatch.setenv("MLFLOW_SECURE_OIDC_AUDIENCE", "https://mlflow.example")
    provider = SecureAuthProvider()
    # MLflow asks for a new auth object on every request; the token must outlive it.
    headers = [applied_authorization(provider.get_auth()) for _ in range(5)]
    assert headers == ["Bearer tok.1"] * 5
    assert oidc_env.count == 1
    assert oidc_env.grants[0] == {
        "grant_type": ["client_credentials"],
        "scope": ["mlflow.write"],
        "audience": ["https://mlflow.example"],
    }


def test_oidc_secret_from_file(
    monkeypatch: pytest.MonkeyPatch, oidc_env: TokenEndpoint, tmp_path: Path
) -> None:
    secret_file = tmp_path / "client-secret"
    secret_file.write_text(CLIENT_SECRET + "\n")
    secret_file.chmod(0o600)
    monkeypatch.delenv("MLFLOW_SECURE_OIDC_CLIENT_SECRET")
    monkeypatch.setenv("MLFLOW_SECURE_OIDC_CLIENT_SECRET_FILE", str(secret_file))
    assert applied_authorization(SecureAuthProvider().get_auth()) == "Bearer tok.1"

    secret_file.chmod(0o644)
    with pytest.raises(SecureClientError, match="chmod 600") as caught:
        SecureAuthProvider().get_auth()
    assert "MLFLOW_SECURE_OIDC_CLIENT_SECRET_FILE" in caught.value.message
    assert CLIENT_SECRET not in str(caught.value)


def test_oidc_token_is_refreshed_near_expiry(oidc_env: TokenEndpoint) -> None:
    # 31 s lifetime, 30 s margin: the token is due for refresh one second after it is issued.
    oidc_env.expires_in = 31
    provider = SecureAuthProvider()
    assert applied_authorization(provider.get_auth()) == "Bearer tok.1"
    assert applied_authorization(provider.get_auth()) == "Bearer tok.1"
    assert oidc_env.count == 1
    time.sleep(1.2)
    assert applied_authorization(provider.get_auth()) == "Bearer tok.2"
    assert applied_authorization(provider.get_auth()) == "Bearer tok.2"
    assert oidc_env.count == 2


def _in_threads(fn, n: int = 10) -> list[str]:
    barrier = threading.Barrier(n)
    results: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run() -> None:
        try:
            barrier.wait()
            value = fn()
            with lock:
                results.append(value)
        except BaseException as exc:  # reported to the test below
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    return results


def test_oidc_one_fetch_and_one_refresh_under_concurrency(oidc_env: TokenEndpoint) -> None:
    oidc_env.expires_in = 31
    oidc_env.delay = 0.3  # hold the grant open so all threads pile up on it
    provider = SecureAuthProvider()

    first = _in_threads(lambda: applied_authorization(provider.get_auth()))
    assert first == ["Bearer tok.1"] * 10
    assert oidc_env.count == 1

    time.sleep(1.2)  # into the refresh window, token still valid
    second = _in_threads(lambda: applied_authorization(provider.get_auth()))
    assert oidc_env.count == 2
    # Threads that arrived during the refresh kept using the still-valid token.
    assert set(second) <= {"Bearer tok.1", "Bearer tok.2"}
    assert applied_authorization(provider.get_auth()) == "Bearer tok.2"


def test_oidc_wrong_secret_is_a_clear_error_without_the_secret(
    monkeypatch: pytest.MonkeyPatch, oidc_env: TokenEndpoint
) -> None:
    wrong = "wrong-" + secrets.token_urlsafe(24)
    monkeypatch.setenv("MLFLOW_SECURE_OIDC_CLIENT_SECRET", wrong)
    with pytest.raises(SecureClientError) as caught:
        SecureAuthProvider().get_auth()
    text = str(caught.value)
    assert "refused the client credentials" in text
    assert "invalid_client" in text
    assert CLIENT_ID in text
    assert oidc_env.url in text
    assert wrong not in text
    assert "bad secret" not in text  # the IdP's free text is not repeated
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None


def test_oidc_unreachable_endpoint_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler) as placeholder:
        port = placeholder.server_port  # bound then closed: nothing listens there
    url = f"http://127.0.0.1:{port}/token"
    monkeypatch.setenv("MLFLOW_SECURE_OIDC_TOKEN_URL", url)
    monkeypatch.setenv("MLFLOW_SECURE_OIDC_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("MLFLOW_SECURE_OIDC_CLIENT_SECRET", CLIENT_SECRET)
    with pytest.raises(SecureClientError, match="could not be reached") as caught:
        SecureAuthProvider().get_auth()
    assert url in str(caught.value)
    assert CLIENT_SECRET not in str(caught.value)


def test_oidc_refresh_failure_keeps_valid_token(
    token_endpoint: TokenEndpoint, caplog: pytest.LogCaptureFixture
) -> None:
    now = [1000.0]
    creds = OidcClientCredentials(token_endpoint.url, CLIENT_ID, CLIENT_SECRET)
    source = OidcTokenSource(creds, clock=lambda: now[0])
    assert source.token() == "tok.1"  # 3600 s lifetime, refresh 360 s before expiry

    token_endpoint.fail_with = 503
    now[0] += 3600 - 100
    with caplog.at_level(logging.WARNING, logger=oidc.__name__):
        assert source.token() == "tok.1"
    assert "HTTP 503" in caplog.text
    assert CLIENT_SECRET not in caplog.text

    now[0] += 200  # past expiry: no stale token is ever sent
    with pytest.raises(ClientError, match="HTTP 503"):
        source.token()

    token_endpoint.fail_with = None
    assert source.token() == "tok.2"


def test_oidc_missing_expires_in_uses_default_lifetime(token_endpoint: TokenEndpoint) -> None:
    token_endpoint.expires_in = None
    now = [0.0]
    creds = OidcClientCredentials(token_endpoint.url, CLIENT_ID, CLIENT_SECRET)
    source = OidcTokenSource(creds, clock=lambda: now[0])
    assert source.token() == "tok.1"
    # No expires_in: assume the default lifetime, refreshed its 30 s margin before the end.
    now[0] = oidc.DEFAULT_TOKEN_LIFETIME_SECONDS - 31
    assert source.token() == "tok.1"
    now[0] = oidc.DEFAULT_TOKEN_LIFETIME_SECONDS - 29
    assert source.token() == "tok.2"


def test_oidc_partial_configuration_names_what_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLFLOW_SECURE_OIDC_CLIENT_ID", CLIENT_ID)
    with pytest.raises(SecureClientError, match="partly configured") as caught:
        SecureAuthProvider().get_auth()
    message = caught.value.message
    assert "MLFLOW_SECURE_OIDC_TOKEN_URL" in message
    assert "MLFLOW_SECURE_OIDC_CLIENT_SECRET" in message
    assert "MLFLOW_SECURE_OIDC_CLIENT_ID," not in message


def test_oidc_token_url_must_use_tls_off_this_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_SECURE_OIDC_TOKEN_URL", "http://idp.example/token")
    monkeypatch.setenv("MLFLOW_SECURE_OIDC_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("MLFLOW_SECURE_OIDC_CLIENT_SECRET", CLIENT_SECRET)
    with pytest.raises(SecureClientError, match="https://") as caught:
        SecureAuthProvider().get_auth()
    assert CLIENT_SECRET not in str(caught.value)


def test_token_url_user_info_is_not_repeated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_SECURE_OIDC_TOKEN_URL", "http://ci:hunter2hunter2@idp.example/t")
    monkeypatch.setenv("MLFLOW_SECURE_OIDC_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("MLFLOW_SECURE_OIDC_CLIENT_SECRET", CLIENT_SECRET)
    with pytest.raises(SecureClientError, match=r"idp\.example/t") as caught:
        SecureAuthProvider().get_auth()
    assert "hunter2" not in str(caught.value)


def test_cleartext_tracking_uri_warns_once_without_the_key(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(bearer, "_warned_cleartext_hosts", set())
    key = make_key()
    auth = BearerAuth(credentials.StaticCredential(key))
    with caplog.at_level(logging.WARNING, logger=bearer.__name__):
        for _ in range(3):
            requests.Request("GET", "http://mlflow.internal:5000/api", auth=auth).prepare()
        requests.Request("GET", "https://mlflow.internal/api", auth=auth).prepare()
        requests.Request("GET", "http://localhost:5000/api", auth=auth).prepare()
    warnings = [r for r in caplog.records if "without TLS" in r.getMessage()]
    assert len(warnings) == 1
    assert "mlflow.internal:5000" in warnings[0].getMessage()
    assert key not in caplog.text


# --- header provider ----------------------------------------------------------------------------

SECRET_LOOKING_HEADER = re.compile(r"auth|token|secret|key|cookie|password", re.IGNORECASE)


def test_the_encryption_header_says_none_when_another_repository_took_the_scheme(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mlflow.store.artifact.artifact_repository_registry import (
        _artifact_repository_registry as registry,
    )
    from mlflow.store.artifact.mlflow_artifacts_repo import MlflowArtifactsRepository

    monkeypatch.setitem(
        registry.get_registered_artifact_repositories(),
        "mlflow-artifacts",
        MlflowArtifactsRepository,
    )
    assert encryption_capability() == "none"


def test_header_provider_sends_context_only(monkeypatch: pytest.MonkeyPatch) -> None:
    key = make_key()
    monkeypatch.setenv("MLFLOW_SECURE_API_KEY", key)
    monkeypatch.setenv("MLFLOW_SECURE_OIDC_CLIENT_SECRET", CLIENT_SECRET)
    provider = SecureHeaderProvider()
    assert provider.in_context() is True
    headers = provider.request_headers()
    assert headers == {
        "X-MLflow-Secure-Client": f"mlflow-secure/{__version__}",
        "X-MLflow-Secure-Encryption": "mlse-v1",
    }
    assert encryption_capability() == "mlse-v1"
    for name, value in headers.items():
        assert not SECRET_LOOKING_HEADER.search(name)
        assert key not in value
        assert CLIENT_SECRET not in value
        assert "mlsk_" not in value


def test_errors_reach_mlflow_as_mlflow_exceptions(
    monkeypatch: pytest.MonkeyPatch, oidc_env: TokenEndpoint
) -> None:
    """Helpers raise the MLflow-free `ClientError`; the plugins hand MLflow an MlflowException
    with the same message and error code."""
    monkeypatch.setenv("MLFLOW_SECURE_OIDC_CLIENT_SECRET", "wrong-secret")
    with pytest.raises(MlflowException) as caught:
        SecureAuthProvider().get_auth()
    assert isinstance(caught.value, SecureClientError)
    assert isinstance(caught.value, ClientError)
    assert caught.value.error_code == "UNAUTHENTICATED"

    monkeypatch.setenv("MLFLOW_SECURE_API_KEY", "not-a-key")
    with pytest.raises(SecureClientError) as bad_key:
        SecureAuthProvider().get_auth()
    assert bad_key.value.error_code == "INVALID_PARAMETER_VALUE"
    assert bad_key.value.__context__ is None


@pytest.mark.parametrize("project", ["fraud", "team.fraud-2", "a", "Fraud_Q4", "x" * 64])
def test_header_provider_names_the_chosen_project(
    monkeypatch: pytest.MonkeyPatch, project: str
) -> None:
    monkeypatch.setenv("MLFLOW_SECURE_PROJECT", f"  {project}\n")  # surrounding space ignored
    headers = SecureHeaderProvider().request_headers()
    assert headers["X-MLflow-Secure-Project"] == project
    assert headers["X-MLflow-Secure-Client"] == f"mlflow-secure/{__version__}"


@pytest.mark.parametrize("value", ["", "   "])
def test_empty_project_setting_sends_no_project(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("MLFLOW_SECURE_PROJECT", value)
    assert "X-MLflow-Secure-Project" not in SecureHeaderProvider().request_headers()


@pytest.mark.parametrize(
    "value",
    [
        "fraud team",
        "fraud\r\nX-Injected: 1",
        "-fraud",
        ".hidden",
        "fraud/q4",
        "fraud,vision",
        "x" * 65,
        "frâud",
        "mlflow.secure.project=fraud",
    ],
)
def test_an_invalid_project_setting_is_left_out_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, value: str
) -> None:
    monkeypatch.setenv("MLFLOW_SECURE_PROJECT", value)
    with caplog.at_level(logging.WARNING, logger=context.__name__):
        for _ in range(3):
            headers = SecureHeaderProvider().request_headers()
            # The other context headers still go: only the bad value is dropped.
            assert headers == {
                "X-MLflow-Secure-Client": f"mlflow-secure/{__version__}",
                "X-MLflow-Secure-Encryption": "mlse-v1",
            }
    warnings = [r.getMessage() for r in caplog.records if "MLFLOW_SECURE_PROJECT" in r.getMessage()]
    assert len(warnings) == 1  # once per value, not once per request
    assert "not a project name" in warnings[0]
    assert "default project" in warnings[0]


def test_a_long_invalid_project_setting_is_shortened_in_the_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("MLFLOW_SECURE_PROJECT", "bad value " + "y" * 500)
    with caplog.at_level(logging.WARNING, logger=context.__name__):
        SecureHeaderProvider().request_headers()
    assert "y" * 100 not in caplog.text
    assert "…" in caplog.text


# --- through MLflow's own machinery -------------------------------------------------------------


@pytest.fixture
def echo_server() -> Iterator[tuple[str, list[dict[str, str]]]]:
    """A stand-in tracking server that records the headers of each request."""
    seen: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            seen.append(dict(self.headers.items()))
            body = b"{}"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_mlflow_http_request_uses_the_provider(
    monkeypatch: pytest.MonkeyPatch,
    echo_server: tuple[str, list[dict[str, str]]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    from mlflow.tracking.request_auth import registry as auth_registry
    from mlflow.tracking.request_header import registry as header_registry
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    # The entry points are not installed in this checkout: register as they would.
    auth_providers = auth_registry.RequestAuthProviderRegistry()
    auth_providers.register(SecureAuthProvider)
    monkeypatch.setattr(auth_registry, "_request_auth_provider_registry", auth_providers)
    header_providers = header_registry.RequestHeaderProviderRegistry()
    header_providers.register(SecureHeaderProvider)
    monkeypatch.setattr(header_registry, "_request_header_provider_registry", header_providers)

    url, seen = echo_server
    key = make_key()
    monkeypatch.setenv("MLFLOW_SECURE_API_KEY", key)
    monkeypatch.setenv("MLFLOW_TRACKING_AUTH", "secure")
    monkeypatch.setenv("MLFLOW_SECURE_PROJECT", "fraud")
    # A stock token left in the shell loses to the plugin the user asked for.
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "stale-stock-token")

    with caplog.at_level(logging.DEBUG):
        response = http_request(
            get_default_host_creds(url), "/api/2.0/mlflow/experiments/search", "GET"
        )
    assert response.status_code == 200
    assert len(seen) == 1
    received = {name.lower(): value for name, value in seen[0].items()}
    assert received["authorization"] == f"Bearer {key}"
    assert received["x-mlflow-secure-client"] == f"mlflow-secure/{__version__}"
    assert received["x-mlflow-secure-encryption"] == "mlse-v1"
    assert received["x-mlflow-secure-project"] == "fraud"
    assert key not in caplog.text

    # A bad project setting is left out (with a warning); the other headers still go.
    monkeypatch.setenv("MLFLOW_SECURE_PROJECT", "two words")
    http_request(get_default_host_creds(url), "/api/2.0/mlflow/experiments/search", "GET")
    received = {name.lower(): value for name, value in seen[-1].items()}
    assert "x-mlflow-secure-project" not in received
    assert received["x-mlflow-secure-client"] == f"mlflow-secure/{__version__}"
