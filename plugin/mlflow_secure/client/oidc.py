"""OIDC client credentials for service accounts and CI: the settings, and the access token.

The token is requested with the ``client_credentials`` grant (client id and secret sent with
HTTP Basic), cached in memory per configuration, and refreshed before it expires, one refresh
at a time. No secret, token or identity provider free text ever reaches a message.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import quote_plus, urlsplit

import requests

from mlflow_secure.client.errors import (
    INTERNAL_ERROR,
    TEMPORARILY_UNAVAILABLE,
    UNAUTHENTICATED,
    ClientError,
    config_error,
    setting,
)
from mlflow_secure.client.secret_files import read_secret_file
from mlflow_secure.client.urls import display_url, is_loopback_host

_logger = logging.getLogger(__name__)

# Names of environment variables, not secrets (hence the S105 waivers).
ENV_OIDC_TOKEN_URL = "MLFLOW_SECURE_OIDC_TOKEN_URL"  # noqa: S105
ENV_OIDC_CLIENT_ID = "MLFLOW_SECURE_OIDC_CLIENT_ID"
ENV_OIDC_CLIENT_SECRET = "MLFLOW_SECURE_OIDC_CLIENT_SECRET"  # noqa: S105
ENV_OIDC_CLIENT_SECRET_FILE = "MLFLOW_SECURE_OIDC_CLIENT_SECRET_FILE"  # noqa: S105
ENV_OIDC_SCOPE = "MLFLOW_SECURE_OIDC_SCOPE"
ENV_OIDC_AUDIENCE = "MLFLOW_SECURE_OIDC_AUDIENCE"

# RFC 6750 b64token: anything else could not travel in a header, and requests would echo the
# offending value in its own InvalidHeader message.
_BEARER_TOKEN_RE = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
# RFC 6749 error codes are short ASCII words; only such a value is safe to repeat to the user.
_OAUTH_ERROR_RE = re.compile(r"[a-z_]{1,64}")

TOKEN_ENDPOINT_TIMEOUT_SECONDS = 10.0
DEFAULT_TOKEN_LIFETIME_SECONDS = 300.0  # when the IdP omits expires_in (it is only RECOMMENDED)
MIN_REFRESH_MARGIN_SECONDS = 30.0
REFRESH_MARGIN_FRACTION = 0.1
REFRESH_RETRY_SECONDS = 5.0  # after a failed refresh while the old token is still valid
_MAX_CACHED_TOKEN_SOURCES = 8


# --- settings -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class OidcClientCredentials:
    """A service account's client-credentials grant. Hashable: it keys the token cache."""

    token_url: str
    client_id: str
    client_secret: str = field(repr=False)
    scope: str | None = None
    audience: str | None = None


def load_oidc_credentials(env: Mapping[str, str]) -> OidcClientCredentials | None:
    """The OIDC settings from ``env``, None when none is set, an error when only some are."""
    names = (
        ENV_OIDC_TOKEN_URL,
        ENV_OIDC_CLIENT_ID,
        ENV_OIDC_CLIENT_SECRET,
        ENV_OIDC_CLIENT_SECRET_FILE,
        ENV_OIDC_SCOPE,
        ENV_OIDC_AUDIENCE,
    )
    if not any(setting(env, name) for name in names):
        return None
    token_url = setting(env, ENV_OIDC_TOKEN_URL)
    client_id = setting(env, ENV_OIDC_CLIENT_ID)
    secret = setting(env, ENV_OIDC_CLIENT_SECRET)
    secret_file = setting(env, ENV_OIDC_CLIENT_SECRET_FILE)
    if token_url is None or client_id is None or (secret is None and secret_file is None):
        missing = [
            label
            for label, value in (
                (ENV_OIDC_TOKEN_URL, token_url),
                (ENV_OIDC_CLIENT_ID, client_id),
                (
                    f"{ENV_OIDC_CLIENT_SECRET} (or {ENV_OIDC_CLIENT_SECRET_FILE})",
                    secret or secret_file,
                ),
            )
            if value is None
        ]
        raise config_error(
            "OIDC client credentials are partly configured; also set " + ", ".join(missing) + "."
        )
    _check_token_url(token_url)
    if secret is None:
        secret = read_secret_file(str(secret_file), ENV_OIDC_CLIENT_SECRET_FILE)
    return OidcClientCredentials(
        token_url=token_url,
        client_id=client_id,
        client_secret=secret,
        scope=setting(env, ENV_OIDC_SCOPE),
        audience=setting(env, ENV_OIDC_AUDIENCE),
    )


def _check_token_url(url: str) -> None:
    """The client secret travels to this URL: require TLS except to this machine."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and is_loopback_host(parts.hostname):
        return
    raise config_error(
        f"{ENV_OIDC_TOKEN_URL}={display_url(url)!r} must be an https:// URL (http:// is "
        "accepted only for localhost), because the client secret is sent to it."
    )


# --- the token ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Token:
    value: str = field(repr=False)
    refresh_at: float
    expires_at: float


def _lifetime_seconds(expires_in: object) -> float:
    if isinstance(expires_in, int | float | str) and not isinstance(expires_in, bool):
        try:
            seconds = float(expires_in)
        except ValueError:
            seconds = math.nan
        if math.isfinite(seconds) and seconds > 0:
            return seconds
    return DEFAULT_TOKEN_LIFETIME_SECONDS


class OidcTokenSource:
    """Fetches and caches one service account's access token.

    MLflow logs from several threads (async logging, autolog), so refreshes are serialised by
    a lock: one thread talks to the IdP while the others keep using the still-valid token, or
    wait for the new one when there is none.
    """

    def __init__(
        self,
        credentials: OidcClientCredentials,
        *,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.monotonic,
        timeout: float = TOKEN_ENDPOINT_TIMEOUT_SECONDS,
    ) -> None:
        self._credentials = credentials
        self._session = session or requests.Session()
        self._clock = clock
        self._timeout = timeout
        self._token: _Token | None = None
        self._refresh_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"OidcTokenSource(token_url={display_url(self._credentials.token_url)!r})"

    def __call__(self) -> str:
        return self.token()

    def token(self) -> str:
        """The current access token (raises `ClientError` when none can be had)."""
        current = self._token
        now = self._clock()
        if current is not None and now < current.refresh_at:
            return current.value
        if current is not None and now < current.expires_at:
            if not self._refresh_lock.acquire(blocking=False):
                return current.value  # another thread is refreshing; this token still works
        else:
            self._refresh_lock.acquire()
        try:
            return self._refresh_locked()
        finally:
            self._refresh_lock.release()

    def _refresh_locked(self) -> str:
        current = self._token
        if current is not None and self._clock() < current.refresh_at:
            return current.value  # refreshed by the thread we waited for
        try:
            fresh = self._fetch()
        except ClientError as exc:
            now = self._clock()
            if current is None or now >= current.expires_at:
                raise
            # The IdP is down but our token is not expired yet: keep working, retry shortly.
            _logger.warning("Refreshing the OIDC access token failed; retrying soon. %s", exc)
            retry_at = min(now + REFRESH_RETRY_SECONDS, current.expires_at)
            self._token = _Token(current.value, retry_at, current.expires_at)
            return current.value
        self._token = fresh
        return fresh.value

    def _fetch(self) -> _Token:
        creds = self._credentials
        form = {"grant_type": "client_credentials"}
        if creds.scope:
            form["scope"] = creds.scope
        if creds.audience:
            form["audience"] = creds.audience
        # RFC 6749 section 2.3.1: client id and secret are form-encoded before HTTP Basic.
        basic = (quote_plus(creds.client_id), quote_plus(creds.client_secret))
        where = f"OIDC token endpoint {display_url(creds.token_url)}"
        started = self._clock()
        try:
            response = self._session.post(
                creds.token_url,
                data=form,
                auth=basic,
                headers={"Accept": "application/json"},
                timeout=self._timeout,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            # `from None`: the chained exception carries the prepared request, Basic header and all.
            raise ClientError(
                f"{where} could not be reached ({type(exc).__name__}).", TEMPORARILY_UNAVAILABLE
            ) from None
        if response.status_code != 200:
            raise _token_endpoint_error(where, creds.client_id, response)
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise ClientError(f"{where} did not answer with a JSON object.", INTERNAL_ERROR)
        token = body.get("access_token")
        if not isinstance(token, str) or not _BEARER_TOKEN_RE.fullmatch(token):
            raise ClientError(f"{where} did not return a usable access_token.", INTERNAL_ERROR)
        token_type = body.get("token_type", "Bearer")
        if not isinstance(token_type, str) or token_type.lower() != "bearer":
            raise ClientError(
                f"{where} returned a token that is not a Bearer token.", INTERNAL_ERROR
            )
        lifetime = _lifetime_seconds(body.get("expires_in"))
        # Counted from before the request, so network delay only makes us refresh earlier.
        expires_at = started + lifetime
        margin = max(MIN_REFRESH_MARGIN_SECONDS, REFRESH_MARGIN_FRACTION * lifetime)
        return _Token(token, expires_at - margin, expires_at)


def _token_endpoint_error(where: str, client_id: str, response: requests.Response) -> ClientError:
    """Describe a refused token request by status and RFC 6749 error code only: the IdP's free
    text (``error_description``) is not ours to vouch for, so it is not repeated."""
    code = ""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, str) and _OAUTH_ERROR_RE.fullmatch(error):
            code = f", error {error!r}"
    status = response.status_code
    if status in (400, 401, 403):
        return ClientError(
            f"{where} refused the client credentials for client id {client_id!r} "
            f"(HTTP {status}{code}). Check {ENV_OIDC_CLIENT_ID} and the client secret "
            f"({ENV_OIDC_CLIENT_SECRET} or {ENV_OIDC_CLIENT_SECRET_FILE}).",
            UNAUTHENTICATED,
        )
    return ClientError(f"{where} failed (HTTP {status}{code}).", TEMPORARILY_UNAVAILABLE)


_token_sources: dict[OidcClientCredentials, OidcTokenSource] = {}
_token_sources_lock = threading.Lock()


def token_source_for(credentials: OidcClientCredentials) -> OidcTokenSource:
    """The shared token source for ``credentials``.

    MLflow asks for a fresh auth object on every request, so the cache must outlive it. Keyed
    by the whole configuration, secret included, so a rotated secret gets a fresh token.
    """
    with _token_sources_lock:
        source = _token_sources.get(credentials)
        if source is None:
            while len(_token_sources) >= _MAX_CACHED_TOKEN_SOURCES:
                del _token_sources[next(iter(_token_sources))]  # oldest first
            source = _token_sources[credentials] = OidcTokenSource(credentials)
        return source
