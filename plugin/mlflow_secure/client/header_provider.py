"""Context headers the MLflow client sends to an mlflow-secure server.

They let the server (and its audit log) tell which client build made a request and what it can
do -- for example whether it encrypts artifacts before upload -- so policy can depend on it.
Only non-secret, client-describing values belong here: these headers go to every tracking server
the client talks to and are logged freely. Credentials are the auth provider's job.
"""

from __future__ import annotations

from mlflow.tracking.request_header.abstract_request_header_provider import (
    RequestHeaderProvider,
)

from mlflow_secure import __version__

CLIENT_HEADER = "X-MLflow-Secure-Client"
ENCRYPTION_HEADER = "X-MLflow-Secure-Encryption"


def encryption_capability() -> str:
    """What client-side artifact encryption this client performs.

    ``"none"`` until the encrypting artifact repository exists; a function rather than a
    constant so that it can later report what is actually configured.
    """
    return "none"


class SecureHeaderProvider(RequestHeaderProvider):
    """Adds the mlflow-secure client identity and capabilities to every MLflow request."""

    def in_context(self) -> bool:
        # Installed means in use: the headers are harmless to servers that ignore them.
        return True

    def request_headers(self) -> dict[str, str]:
        return {
            CLIENT_HEADER: f"mlflow-secure/{__version__}",
            ENCRYPTION_HEADER: encryption_capability(),
        }
