"""Request auth for the stock MLflow client: ``MLFLOW_TRACKING_AUTH=secure``.

MLflow calls ``get_auth()`` once per HTTP request and attaches the returned
``requests.auth.AuthBase``, which sets ``Authorization: Bearer <credential>``. The credential
comes from the first configured source (`mlflow_secure.client.credentials`):

1. ``MLFLOW_SECURE_API_KEY`` -- an API key (``mlsk_`` + 61 base62 characters).
2. ``MLFLOW_SECURE_API_KEY_FILE`` -- a file holding the key, readable by its owner only.
3. OIDC client credentials (service accounts, CI): ``MLFLOW_SECURE_OIDC_TOKEN_URL``,
   ``MLFLOW_SECURE_OIDC_CLIENT_ID``, ``MLFLOW_SECURE_OIDC_CLIENT_SECRET`` (or ``..._FILE``),
   optional ``MLFLOW_SECURE_OIDC_SCOPE`` / ``MLFLOW_SECURE_OIDC_AUDIENCE``. The access token is
   cached in memory and refreshed before it expires, one refresh at a time.

No credential, key file content or token ever appears in an exception message or a log line:
these messages end up in notebooks, CI logs and bug reports.

This module is the MLflow-facing edge: the helpers it re-exports are free of MLflow (so the
``mlflow-secure`` CLI starts without loading MLflow) and raise `ClientError`; here that
becomes `SecureClientError`, an ``MlflowException``.
"""

from __future__ import annotations

from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import ErrorCode
from mlflow.tracking.request_auth.abstract_request_auth_provider import RequestAuthProvider

from mlflow_secure.client.api_keys import API_KEY_LENGTH, API_KEY_PREFIX, validate_api_key
from mlflow_secure.client.bearer import BearerAuth
from mlflow_secure.client.credentials import (
    ENV_API_KEY,
    ENV_API_KEY_FILE,
    PROVIDER_NAME,
    StaticCredential,
    api_key_from_env,
    resolve_credential,
)
from mlflow_secure.client.errors import INTERNAL_ERROR, ClientError
from mlflow_secure.client.oidc import (
    DEFAULT_TOKEN_LIFETIME_SECONDS,
    ENV_OIDC_AUDIENCE,
    ENV_OIDC_CLIENT_ID,
    ENV_OIDC_CLIENT_SECRET,
    ENV_OIDC_CLIENT_SECRET_FILE,
    ENV_OIDC_SCOPE,
    ENV_OIDC_TOKEN_URL,
    OidcClientCredentials,
    OidcTokenSource,
    load_oidc_credentials,
    token_source_for,
)
from mlflow_secure.client.secret_files import MAX_SECRET_FILE_BYTES, read_secret_file

__all__ = [
    "API_KEY_LENGTH",
    "API_KEY_PREFIX",
    "DEFAULT_TOKEN_LIFETIME_SECONDS",
    "ENV_API_KEY",
    "ENV_API_KEY_FILE",
    "ENV_OIDC_AUDIENCE",
    "ENV_OIDC_CLIENT_ID",
    "ENV_OIDC_CLIENT_SECRET",
    "ENV_OIDC_CLIENT_SECRET_FILE",
    "ENV_OIDC_SCOPE",
    "ENV_OIDC_TOKEN_URL",
    "MAX_SECRET_FILE_BYTES",
    "PROVIDER_NAME",
    "BearerAuth",
    "ClientError",
    "OidcClientCredentials",
    "OidcTokenSource",
    "SecureAuthProvider",
    "SecureClientError",
    "StaticCredential",
    "api_key_from_env",
    "as_mlflow_error",
    "load_oidc_credentials",
    "read_secret_file",
    "resolve_credential",
    "token_source_for",
    "validate_api_key",
]


class SecureClientError(MlflowException, ClientError):
    """A client-side credential problem, phrased so it is safe to print anywhere."""


def as_mlflow_error(error: ClientError) -> SecureClientError:
    """``error`` as an ``MlflowException`` with the same message and error code."""
    if isinstance(error, SecureClientError):
        return error
    try:
        code = ErrorCode.Value(error.error_code)
    except ValueError:
        code = ErrorCode.Value(INTERNAL_ERROR)
    return SecureClientError(error.message, error_code=code)


class SecureAuthProvider(RequestAuthProvider):
    """``MLFLOW_TRACKING_AUTH=secure``: authenticate to an mlflow-secure tracking server."""

    def get_name(self) -> str:
        return PROVIDER_NAME

    def get_auth(self) -> BearerAuth:
        try:
            credential = resolve_credential()
            # Resolve now: configuration and IdP errors then reach the user as they are,
            # instead of wrapped in MLflow's "API request to ... failed" once under way.
            credential()
        except ClientError as exc:
            failure = exc
        else:
            return BearerAuth(credential)
        # Raised outside the handler, so nothing (a prepared request, say) is chained to it.
        raise as_mlflow_error(failure)
