"""Context headers the MLflow client sends to an mlflow-secure server.

They let the server (and its audit log) tell which client build made a request and what it can
do -- for example whether it encrypts artifacts before upload -- so policy can depend on it,
and, with ``MLFLOW_SECURE_PROJECT``, which project new experiments and models go into. Only
non-secret, client-describing values belong here: these headers go to every tracking server
the client talks to and are logged freely. Credentials are the auth provider's job. The
headers themselves are computed in `mlflow_secure.client.context`.
"""

from __future__ import annotations

from mlflow.tracking.request_header.abstract_request_header_provider import (
    RequestHeaderProvider,
)

from mlflow_secure.client.context import (
    CLIENT_HEADER,
    ENCRYPTION_HEADER,
    ENV_PROJECT,
    PROJECT_HEADER,
    context_headers,
)

__all__ = [
    "CLIENT_HEADER",
    "ENCRYPTION_HEADER",
    "ENV_PROJECT",
    "PROJECT_HEADER",
    "SecureHeaderProvider",
    "encryption_capability",
]


def encryption_capability() -> str:
    """What artefact encryption this MLflow client performs: ``"mlse-v1"`` (the format of
    docs/encryption-format.md) when MLflow uses this package's encrypting repository for
    `mlflow-artifacts:`, else ``"none"`` (another plugin took the scheme)."""
    from mlflow.store.artifact.artifact_repository_registry import (
        _artifact_repository_registry,
    )

    from mlflow_secure.client.artifacts import EncryptingArtifactsRepository

    registered = _artifact_repository_registry.get_registered_artifact_repositories()
    if registered.get("mlflow-artifacts") is EncryptingArtifactsRepository:
        return "mlse-v1"
    return "none"


class SecureHeaderProvider(RequestHeaderProvider):
    """Adds the mlflow-secure client identity and capabilities to every MLflow request."""

    def in_context(self) -> bool:
        # Installed means in use: the headers are harmless to servers that ignore them.
        return True

    def request_headers(self) -> dict[str, str]:
        """The context headers; an invalid ``MLFLOW_SECURE_PROJECT`` is left out with a
        warning (see `mlflow_secure.client.context`)."""
        return context_headers(encryption=encryption_capability())
