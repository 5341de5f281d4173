"""Which credential the client sends: the first configured source, as a callable.

1. ``MLFLOW_SECURE_API_KEY`` -- an API key (``mlsk_`` + 61 base62 characters).
2. ``MLFLOW_SECURE_API_KEY_FILE`` -- a file holding the key, readable by its owner only.
3. OIDC client credentials (service accounts, CI): see `mlflow_secure.client.oidc`.

Free of MLflow: the ``secure`` auth provider and the CLI both use it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from mlflow_secure.client.api_keys import validate_api_key
from mlflow_secure.client.errors import config_error, setting
from mlflow_secure.client.oidc import (
    ENV_OIDC_CLIENT_ID,
    ENV_OIDC_CLIENT_SECRET,
    ENV_OIDC_TOKEN_URL,
    load_oidc_credentials,
    token_source_for,
)
from mlflow_secure.client.secret_files import read_secret_file

PROVIDER_NAME = "secure"
ENV_API_KEY = "MLFLOW_SECURE_API_KEY"
ENV_API_KEY_FILE = "MLFLOW_SECURE_API_KEY_FILE"


@dataclass(frozen=True)
class StaticCredential:
    """An API key, behind the same call interface as a refreshing token source."""

    value: str = field(repr=False)

    def __call__(self) -> str:
        return self.value


def api_key_from_env(environ: Mapping[str, str] | None = None) -> str | None:
    """The API key of ``MLFLOW_SECURE_API_KEY`` or ``MLFLOW_SECURE_API_KEY_FILE``, if either is
    set (checked for shape; raises `ClientError`)."""
    env = os.environ if environ is None else environ
    if key := setting(env, ENV_API_KEY):
        return validate_api_key(key, ENV_API_KEY)
    if path := setting(env, ENV_API_KEY_FILE):
        contents = read_secret_file(path, ENV_API_KEY_FILE)
        return validate_api_key(contents, f"{ENV_API_KEY_FILE}={path!r}")
    return None


def resolve_credential(environ: Mapping[str, str] | None = None) -> Callable[[], str]:
    """The first configured credential source, or a `ClientError` saying how to configure one."""
    env = os.environ if environ is None else environ
    if key := api_key_from_env(env):
        return StaticCredential(key)
    if oidc := load_oidc_credentials(env):
        return token_source_for(oidc)
    raise config_error(
        f"MLFLOW_TRACKING_AUTH={PROVIDER_NAME} found no credential. Set {ENV_API_KEY} to your "
        f"API key, or {ENV_API_KEY_FILE} to a file holding it (mode 600), or, for a service "
        f"account, {ENV_OIDC_TOKEN_URL}, {ENV_OIDC_CLIENT_ID} and {ENV_OIDC_CLIENT_SECRET}."
    )
