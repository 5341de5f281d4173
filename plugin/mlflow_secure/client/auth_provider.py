"""Request auth for the stock MLflow client: ``MLFLOW_TRACKING_AUTH=secure``.

MLflow calls ``get_auth()`` once per HTTP request and attaches the returned
``requests.auth.AuthBase``, which sets ``Authorization: Bearer <credential>``. The credential
comes from the first configured source:

1. ``MLFLOW_SECURE_API_KEY`` -- an API key (``mlsk_`` + 61 base62 characters).
2. ``MLFLOW_SECURE_API_KEY_FILE`` -- a file holding the key, readable by its owner only.
3. OIDC client credentials (service accounts, CI): ``MLFLOW_SECURE_OIDC_TOKEN_URL``,
   ``MLFLOW_SECURE_OIDC_CLIENT_ID``, ``MLFLOW_SECURE_OIDC_CLIENT_SECRET`` (or ``..._FILE``),
   optional ``MLFLOW_SECURE_OIDC_SCOPE`` / ``MLFLOW_SECURE_OIDC_AUDIENCE``. The access token is
   cached in memory and refreshed before it expires, one refresh at a time.

No credential, key file content or token ever appears in an exception message or a log line:
these messages end up in notebooks, CI logs and bug reports.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import os
import re
import stat
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import SplitResult, quote_plus, urlsplit

import requests
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import (
    INVALID_PARAMETER_VALUE,
    TEMPORARILY_UNAVAILABLE,
    UNAUTHENTICATED,
)
from mlflow.tracking.request_auth.abstract_request_auth_provider import RequestAuthProvider

_logger = logging.getLogger(__name__)

PROVIDER_NAME = "secure"

# Names of environment variables, not secrets (hence the S105 waivers).
ENV_API_KEY = "MLFLOW_SECURE_API_KEY"
ENV_API_KEY_FILE = "MLFLOW_SECURE_API_KEY_FILE"
ENV_OIDC_TOKEN_URL = "MLFLOW_SECURE_OIDC_TOKEN_URL"  # noqa: S105
ENV_OIDC_CLIENT_ID = "MLFLOW_SECURE_OIDC_CLIENT_ID"
ENV_OIDC_CLIENT_SECRET = "MLFLOW_SECURE_OIDC_CLIENT_SECRET"  # noqa: S105
ENV_OIDC_CLIENT_SECRET_FILE = "MLFLOW_SECURE_OIDC_CLIENT_SECRET_FILE"  # noqa: S105
ENV_OIDC_SCOPE = "MLFLOW_SECURE_OIDC_SCOPE"
ENV_OIDC_AUDIENCE = "MLFLOW_SECURE_OIDC_AUDIENCE"

API_KEY_PREFIX = "mlsk_"
API_KEY_LENGTH = 66
_API_KEY_RE = re.compile(r"mlsk_[0-9A-Za-z]{61}")

# RFC 6750 b64token: anything else could not travel in a header, and requests would echo the
# offending value in its own InvalidHeader message.
_BEARER_TOKEN_RE = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
# RFC 6749 error codes are short ASCII words; only such a value is safe to repeat to the user.
_OAUTH_ERROR_RE = re.compile(r"[a-z_]{1,64}")

MAX_SECRET_FILE_BYTES = 64 * 1024
TOKEN_ENDPOINT_TIMEOUT_SECONDS = 10.0
DEFAULT_TOKEN_LIFETIME_SECONDS = 300.0  # when the IdP omits expires_in (it is only RECOMMENDED)
MIN_REFRESH_MARGIN_SECONDS = 30.0
REFRESH_MARGIN_FRACTION = 0.1
REFRESH_RETRY_SECONDS = 5.0  # after a failed refresh while the old token is still valid
_MAX_CACHED_TOKEN_SOURCES = 8

_LOOPBACK_NAMES = frozenset({"localhost"})


class SecureClientError(MlflowException):
    """A client-side credential problem, phrased so it is safe to print anywhere."""


def _config_error(message: str) -> SecureClientError:
    return SecureClientError(message, error_code=INVALID_PARAMETER_VALUE)


def _setting(env: Mapping[str, str], name: str) -> str | None:
    """An environment setting, with set-but-empty treated as unset (``export X=`` in a shell)."""
    value = env.get(name, "").strip()
    return value or None


def _is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _display_host(parts: SplitResult) -> str:
    """Host and port only: the user info of a URL may hold a password."""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{host}:{port}" if port else host


def _display_url(url: str) -> str:
    """``url`` fit for a message: user info and query dropped, as either may hold a secret."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{_display_host(parts)}{parts.path}"


# --- API keys -----------------------------------------------------------------------------------


def _api_key_shape_problem(key: str) -> str:
    """Why ``key`` is not a key, described without repeating any of its characters."""
    if key[:1] in {'"', "'"} or key[-1:] in {'"', "'"}:
        return "it is wrapped in quotes; remove them"
    if key.lower().startswith("bearer "):
        return "it starts with 'Bearer '; give the key alone"
    if any(ch.isspace() for ch in key):
        return "it contains whitespace"
    if not key.startswith(API_KEY_PREFIX):
        return f"it does not start with '{API_KEY_PREFIX}'"
    if len(key) != API_KEY_LENGTH:
        return f"it is {len(key)} characters long, an API key is {API_KEY_LENGTH}"
    return f"only letters and digits may follow '{API_KEY_PREFIX}'"


def validate_api_key(value: str, source: str) -> str:
    """Return the key from ``value`` if it has the API key shape; ``source`` names where it came
    from. A cheap local check turns a pasted-with-quotes key into a clear message instead of a
    bare 401 from the server."""
    key = value.strip()
    if _API_KEY_RE.fullmatch(key):
        return key
    raise _config_error(
        f"{source} does not hold a valid mlflow-secure API key: {_api_key_shape_problem(key)}. "
        f"An API key is '{API_KEY_PREFIX}' followed by 61 letters and digits."
    )


# --- secret files -------------------------------------------------------------------------------


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    remaining = limit
    while remaining > 0:
        chunk = os.read(fd, remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_secret_file(path: str, setting: str) -> str:
    """Read a secret from a file only its owner can read or write.

    The mode is checked on the opened descriptor (no check-then-open race). A file that others
    can read has already leaked the secret to them, and one they can write lets them substitute
    their own credential, so both are refused rather than warned about.
    """
    if os.name == "nt":
        raise _config_error(
            f"{setting} is not supported on Windows, where file modes do not express who may "
            "read the file; set the secret in the environment instead."
        )
    expanded = os.path.expanduser(path)
    # O_NONBLOCK: opening a FIFO must not hang the client before the type check refuses it.
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(expanded, flags)
    except OSError as exc:
        raise _config_error(
            f"{setting}={expanded!r} cannot be opened: {exc.strerror or type(exc).__name__}."
        ) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _config_error(f"{setting}={expanded!r} is not a regular file.")
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o066:
            raise _config_error(
                f"{setting}={expanded!r} is readable or writable by group or others "
                f"(mode {mode:04o}); restrict it to its owner with `chmod 600 {expanded}`."
            )
        data = _read_at_most(fd, MAX_SECRET_FILE_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_SECRET_FILE_BYTES:
        raise _config_error(f"{setting}={expanded!r} is too large to be a secret file.")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise _config_error(f"{setting}={expanded!r} is not UTF-8 text.") from None
    secret = text.strip()
    if not secret:
        raise _config_error(f"{setting}={expanded!r} is empty.")
    return secret


# --- OIDC client credentials --------------------------------------------------------------------


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
    if not any(_setting(env, name) for name in names):
        return None
    token_url = _setting(env, ENV_OIDC_TOKEN_URL)
    client_id = _setting(env, ENV_OIDC_CLIENT_ID)
    secret = _setting(env, ENV_OIDC_CLIENT_SECRET)
    secret_file = _setting(env, ENV_OIDC_CLIENT_SECRET_FILE)
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
        raise _config_error(
            "OIDC client credentials are partly configured; also set " + ", ".join(missing) + "."
        )
    _check_token_url(token_url)
    if secret is None:
        secret = read_secret_file(str(secret_file), ENV_OIDC_CLIENT_SECRET_FILE)
    return OidcClientCredentials(
        token_url=token_url,
        client_id=client_id,
        client_secret=secret,
        scope=_setting(env, ENV_OIDC_SCOPE),
        audience=_setting(env, ENV_OIDC_AUDIENCE),
    )


def _check_token_url(url: str) -> None:
    """The client secret travels to this URL: require TLS except to this machine."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and _is_loopback_host(parts.hostname):
        return
    raise _config_error(
        f"{ENV_OIDC_TOKEN_URL}={_display_url(url)!r} must be an https:// URL (http:// is "
        "accepted only for localhost), because the client secret is sent to it."
    )


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
        return f"OidcTokenSource(token_url={_display_url(self._credentials.token_url)!r})"

    def __call__(self) -> str:
        return self.token()

    def token(self) -> str:
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
        except SecureClientError as exc:
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
        where = f"OIDC token endpoint {_display_url(creds.token_url)}"
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
            raise SecureClientError(
                f"{where} could not be reached ({type(exc).__name__}).",
                error_code=TEMPORARILY_UNAVAILABLE,
            ) from None
        if response.status_code != 200:
            raise _token_endpoint_error(where, creds.client_id, response)
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise SecureClientError(f"{where} did not answer with a JSON object.")
        token = body.get("access_token")
        if not isinstance(token, str) or not _BEARER_TOKEN_RE.fullmatch(token):
            raise SecureClientError(f"{where} did not return a usable access_token.")
        token_type = body.get("token_type", "Bearer")
        if not isinstance(token_type, str) or token_type.lower() != "bearer":
            raise SecureClientError(f"{where} returned a token that is not a Bearer token.")
        lifetime = _lifetime_seconds(body.get("expires_in"))
        # Counted from before the request, so network delay only makes us refresh earlier.
        expires_at = started + lifetime
        margin = max(MIN_REFRESH_MARGIN_SECONDS, REFRESH_MARGIN_FRACTION * lifetime)
        return _Token(token, expires_at - margin, expires_at)


def _token_endpoint_error(
    where: str, client_id: str, response: requests.Response
) -> SecureClientError:
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
        return SecureClientError(
            f"{where} refused the client credentials for client id {client_id!r} "
            f"(HTTP {status}{code}). Check {ENV_OIDC_CLIENT_ID} and the client secret "
            f"({ENV_OIDC_CLIENT_SECRET} or {ENV_OIDC_CLIENT_SECRET_FILE}).",
            error_code=UNAUTHENTICATED,
        )
    return SecureClientError(
        f"{where} failed (HTTP {status}{code}).", error_code=TEMPORARILY_UNAVAILABLE
    )


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


# --- the provider -------------------------------------------------------------------------------


@dataclass(frozen=True)
class StaticCredential:
    """An API key, behind the same call interface as a refreshing token source."""

    value: str = field(repr=False)

    def __call__(self) -> str:
        return self.value


def resolve_credential(environ: Mapping[str, str] | None = None) -> Callable[[], str]:
    """The first configured credential source, or an error saying how to configure one."""
    env = os.environ if environ is None else environ
    if key := _setting(env, ENV_API_KEY):
        return StaticCredential(validate_api_key(key, ENV_API_KEY))
    if path := _setting(env, ENV_API_KEY_FILE):
        contents = read_secret_file(path, ENV_API_KEY_FILE)
        return StaticCredential(validate_api_key(contents, f"{ENV_API_KEY_FILE}={path!r}"))
    if oidc := load_oidc_credentials(env):
        return token_source_for(oidc)
    raise _config_error(
        f"MLFLOW_TRACKING_AUTH={PROVIDER_NAME} found no credential. Set {ENV_API_KEY} to your "
        f"API key, or {ENV_API_KEY_FILE} to a file holding it (mode 600), or, for a service "
        f"account, {ENV_OIDC_TOKEN_URL}, {ENV_OIDC_CLIENT_ID} and {ENV_OIDC_CLIENT_SECRET}."
    )


_warned_cleartext_hosts: set[str] = set()
_warned_lock = threading.Lock()


def _warn_if_cleartext(url: str | None) -> None:
    """A bearer credential over plain HTTP can be read off the wire; say so once per host."""
    parts = urlsplit(url or "")
    if parts.scheme != "http" or _is_loopback_host(parts.hostname):
        return
    host = _display_host(parts)
    with _warned_lock:
        if host in _warned_cleartext_hosts:
            return
        _warned_cleartext_hosts.add(host)
    _logger.warning(
        "Sending an mlflow-secure credential to http://%s without TLS; use an https:// "
        "tracking URI.",
        host,
    )


class BearerAuth(requests.auth.AuthBase):
    """Sets ``Authorization: Bearer <credential>``, asking the source on every request so a
    refreshed token is picked up even across MLflow's retries."""

    def __init__(self, credential: Callable[[], str]) -> None:
        self._credential = credential

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        _warn_if_cleartext(request.url)
        request.headers["Authorization"] = f"Bearer {self._credential()}"
        return request

    def __repr__(self) -> str:
        return "BearerAuth(<credential redacted>)"


class SecureAuthProvider(RequestAuthProvider):
    """``MLFLOW_TRACKING_AUTH=secure``: authenticate to an mlflow-secure tracking server."""

    def get_name(self) -> str:
        return PROVIDER_NAME

    def get_auth(self) -> BearerAuth:
        credential = resolve_credential()
        # Resolve now: configuration and IdP errors then reach the user as they are, instead of
        # wrapped in MLflow's "API request to ... failed" once the request is under way.
        credential()
        return BearerAuth(credential)
