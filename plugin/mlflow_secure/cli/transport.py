"""How the CLI reaches the admin API: ``requests`` directly, with the MLflow client's settings.

Importing MLflow costs seconds at every start of the CLI, so the identity commands do not: they
send their requests with ``requests`` and read the settings MLflow's ``http_request`` would:

- credentials: ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD`` (or the
  ``[mlflow]`` section of ``~/.mlflow/credentials``) as Basic, else ``MLFLOW_TRACKING_TOKEN``,
  else ``MLFLOW_SECURE_API_KEY`` / ``MLFLOW_SECURE_API_KEY_FILE`` as the bearer token;
  ``MLFLOW_TRACKING_AUTH=secure`` sends the ``secure`` plugin's credential instead;
- TLS: ``MLFLOW_TRACKING_SERVER_CERT_PATH``, ``MLFLOW_TRACKING_INSECURE_TLS``,
  ``MLFLOW_TRACKING_CLIENT_CERT_PATH``; proxies and CA bundles as ``requests`` reads them;
- retries and time-outs: ``MLFLOW_HTTP_REQUEST_MAX_RETRIES``, ``..._BACKOFF_FACTOR``,
  ``..._BACKOFF_JITTER``, ``..._TIMEOUT``, ``MLFLOW_HTTP_RESPECT_RETRY_AFTER_HEADER``;
- headers: the mlflow-secure context headers (`mlflow_secure.client.context`).

Settings only MLflow can act on (another ``MLFLOW_TRACKING_AUTH`` provider,
``MLFLOW_TRACKING_AWS_SIGV4``) select `MlflowFallback`: MLflow's own ``http_request``, slower
to start but complete. Either way failures are `AdminApiError`.
"""

from __future__ import annotations

import base64
import configparser
import json as jsonlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from urllib3.util.retry import Retry

from mlflow_secure import __version__
from mlflow_secure.client.bearer import BearerAuth
from mlflow_secure.client.context import context_headers
from mlflow_secure.client.credentials import PROVIDER_NAME, api_key_from_env, resolve_credential
from mlflow_secure.client.errors import setting
from mlflow_secure.client.urls import display_url

Json = dict[str, Any]
USER_AGENT = f"mlflow-secure-cli/{__version__}"
TRANSIENT_STATUS_CODES = frozenset({408, 429, 500, 502, 503, 504})  # as MLflow retries them
CREDENTIALS_FILE = "~/.mlflow/credentials"
# MLflow's defaults for the same settings (mlflow.environment_variables).
DEFAULT_MAX_RETRIES = 7
DEFAULT_BACKOFF_FACTOR = 2
DEFAULT_BACKOFF_JITTER = 1.0
DEFAULT_TIMEOUT_SECONDS = 120


class AdminApiError(Exception):
    """A failed admin API request: the server's JSON answer (`body`) when it sent one."""

    def __init__(self, message: str, *, status: int | None = None, body: Json | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.body = body or {}


# ---------------------------------------------------------------- settings


def _number(env: Mapping[str, str], name: str, kind: type[int] | type[float], default: float):
    value = setting(env, name)
    if value is None:
        return default
    try:
        number = kind(value)
    except ValueError:
        raise AdminApiError(f"{name} must be a number, not {value!r}") from None
    if number < 0:
        raise AdminApiError(f"{name} must not be negative")
    return number


def _flag(env: Mapping[str, str], name: str, default: bool = False) -> bool:
    value = setting(env, name)
    if value is None:
        return default
    if value.lower() not in ("true", "false", "1", "0"):
        raise AdminApiError(f"{name} must be one of true, false, 1, 0 (not {value!r})")
    return value.lower() in ("true", "1")


def needs_mlflow(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the environment asks for something only MLflow's own client can do."""
    env = os.environ if environ is None else environ
    auth = setting(env, "MLFLOW_TRACKING_AUTH")
    return (auth is not None and auth != PROVIDER_NAME) or _flag(env, "MLFLOW_TRACKING_AWS_SIGV4")


def _basic_from_file() -> tuple[str | None, str | None]:
    path = Path(CREDENTIALS_FILE).expanduser()
    if not path.exists():
        return None, None
    config = configparser.ConfigParser()
    config.read(path)
    if "mlflow" not in config:
        return None, None
    section = config["mlflow"]
    return section.get("mlflow_tracking_username"), section.get("mlflow_tracking_password")


def _authorization(env: Mapping[str, str]) -> str | None:
    """The Authorization header MLflow would send: Basic first, then a bearer token."""
    file_user, file_password = _basic_from_file()
    # MLflow reads these two as given (no stripping): so do we.
    user = env.get("MLFLOW_TRACKING_USERNAME") or file_user
    password = env.get("MLFLOW_TRACKING_PASSWORD") or file_password
    if user and password:
        return "Basic " + base64.standard_b64encode(f"{user}:{password}".encode()).decode()
    token = env.get("MLFLOW_TRACKING_TOKEN") or api_key_from_env(env)
    return f"Bearer {token}" if token else None


def _verify(env: Mapping[str, str]) -> bool | str:
    server_cert = setting(env, "MLFLOW_TRACKING_SERVER_CERT_PATH")
    insecure = _flag(env, "MLFLOW_TRACKING_INSECURE_TLS")
    if insecure and server_cert:
        raise AdminApiError(
            "MLFLOW_TRACKING_INSECURE_TLS and MLFLOW_TRACKING_SERVER_CERT_PATH are both set; "
            "set one of them"
        )
    return server_cert or not insecure


# ---------------------------------------------------------------- the transport


class HttpTransport:
    """The admin API over ``requests``, configured as MLflow's client would be."""

    def __init__(
        self,
        tracking_uri: str,
        *,
        max_retries: int | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        if urlsplit(tracking_uri).scheme not in ("http", "https"):
            raise AdminApiError(
                "the mlflow-secure admin API needs an http:// or https:// tracking URI"
            )
        self.tracking_uri = tracking_uri
        self.max_retries = max_retries
        self._environ = environ

    def request(
        self, method: str, endpoint: str, *, json: Json | None = None, params: Json | None = None
    ) -> Json:
        # Read per request, like MLflow's own stores, so a changed environment is honoured.
        env = os.environ if self._environ is None else self._environ
        url = self.tracking_uri.removesuffix("/") + endpoint
        headers = {"User-Agent": USER_AGENT, **context_headers(env)}
        if authorization := _authorization(env):
            headers["Authorization"] = authorization
        kwargs: dict[str, Any] = {}
        if setting(env, "MLFLOW_TRACKING_AUTH") == PROVIDER_NAME:
            kwargs["auth"] = _secure_auth(env)
        if client_cert := setting(env, "MLFLOW_TRACKING_CLIENT_CERT_PATH"):
            kwargs["cert"] = client_cert
        timeout = _number(env, "MLFLOW_HTTP_REQUEST_TIMEOUT", int, DEFAULT_TIMEOUT_SECONDS)
        with requests.Session() as session:
            adapter = requests.adapters.HTTPAdapter(max_retries=self._retry(env))
            session.mount("https://", adapter)
            session.mount("http://", adapter)
            try:
                response = session.request(
                    method,
                    url,
                    json=json,
                    params=params or None,
                    headers=headers,
                    verify=_verify(env),
                    timeout=timeout,
                    **kwargs,
                )
            except requests.exceptions.Timeout as exc:
                raise AdminApiError(
                    f"API request to {display_url(url)} failed with timeout exception {exc}. "
                    "To increase the timeout, set the environment variable "
                    "MLFLOW_HTTP_REQUEST_TIMEOUT to a larger value."
                ) from None
            except requests.RequestException as exc:
                raise AdminApiError(
                    f"API request to {display_url(url)} failed with exception {exc}"
                ) from None
        return _answer(response, endpoint)

    def _retry(self, env: Mapping[str, str]) -> Retry:
        retries = self.max_retries
        if retries is None:
            retries = _number(env, "MLFLOW_HTTP_REQUEST_MAX_RETRIES", int, DEFAULT_MAX_RETRIES)
        return Retry(
            total=retries,
            connect=retries,
            read=retries,
            redirect=retries,
            status=retries,
            status_forcelist=TRANSIENT_STATUS_CODES,
            backoff_factor=_number(
                env, "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", int, DEFAULT_BACKOFF_FACTOR
            ),
            backoff_jitter=_number(
                env, "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", float, DEFAULT_BACKOFF_JITTER
            ),
            raise_on_status=True,
            respect_retry_after_header=_flag(env, "MLFLOW_HTTP_RESPECT_RETRY_AFTER_HEADER", True),
            allowed_methods=None,  # every method, as MLflow retries them
        )


def _secure_auth(env: Mapping[str, str]) -> BearerAuth:
    """What ``MLFLOW_TRACKING_AUTH=secure`` makes MLflow attach: the plugin's credential,
    resolved now so that a configuration error is reported before anything is sent."""
    credential = resolve_credential(env)
    credential()
    return BearerAuth(credential)


def _answer(response: requests.Response, endpoint: str) -> Json:
    """The JSON answer, or an `AdminApiError` worded like MLflow's ``verify_rest_response``."""
    text = response.text
    if response.status_code == 200 and text.strip() in ("", "200 OK"):
        return {}
    body = _json_object(text)
    if response.status_code != 200:
        if body is not None:
            message = str(body.get("message") or f"HTTP {response.status_code}")
            raise AdminApiError(message, status=response.status_code, body=body)
        raise AdminApiError(
            f"API request to endpoint {endpoint} failed with error code "
            f"{response.status_code} != 200. Response body: '{text}'",
            status=response.status_code,
        )
    if body is None:
        raise AdminApiError(
            "API request to endpoint was successful but the response body was not in a valid "
            f"JSON format. Response body: '{text}'",
            status=response.status_code,
        )
    return body


def _json_object(text: str) -> Json | None:
    try:
        value = jsonlib.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class MlflowFallback:
    """The admin API through MLflow's own ``http_request`` (`MlflowTransport`), for settings
    only MLflow can act on; MLflow's exceptions become `AdminApiError`."""

    def __init__(self, tracking_uri: str, *, max_retries: int | None = None) -> None:
        from mlflow.exceptions import MlflowException

        from mlflow_secure.admin.client import MlflowTransport

        self._mlflow_exception = MlflowException
        try:
            self._inner = MlflowTransport(tracking_uri, max_retries=max_retries)
        except MlflowException as exc:
            raise _from_mlflow(exc) from None

    def request(
        self, method: str, endpoint: str, *, json: Json | None = None, params: Json | None = None
    ) -> Json:
        try:
            return self._inner.request(method, endpoint, json=json, params=params)
        except self._mlflow_exception as exc:
            raise _from_mlflow(exc) from None


def _from_mlflow(exc: Any) -> AdminApiError:
    body = getattr(exc, "json", None)
    if isinstance(body, dict):
        return AdminApiError(str(body.get("message") or exc.message), body=body)
    return AdminApiError(exc.message)
