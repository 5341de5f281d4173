"""The client side's own error type, free of MLflow so the CLI can use it without loading MLflow.

Inside MLflow the plugins raise `SecureClientError` (an ``MlflowException`` and a
`ClientError` at once, see ``auth_provider``); the helpers underneath raise a plain
`ClientError`, and the plugins convert at their boundary.
"""

from __future__ import annotations

from collections.abc import Mapping

# MLflow's error code names (``mlflow.protos.databricks_pb2``), as strings.
INTERNAL_ERROR = "INTERNAL_ERROR"
INVALID_PARAMETER_VALUE = "INVALID_PARAMETER_VALUE"
TEMPORARILY_UNAVAILABLE = "TEMPORARILY_UNAVAILABLE"
UNAUTHENTICATED = "UNAUTHENTICATED"


class ClientError(Exception):
    """A client-side configuration or credential problem, phrased so it is safe to print
    anywhere: no credential, key file content or token ever appears in its message."""

    error_code: str = INVALID_PARAMETER_VALUE

    def __init__(self, message: str, error_code: str | None = None) -> None:
        # Cooperative: `SecureClientError` reaches this through ``MlflowException.__init__``,
        # which has already set its own `error_code`.
        super().__init__(message)
        self.message = message
        if error_code is not None:
            self.error_code = error_code


def config_error(message: str) -> ClientError:
    return ClientError(message, INVALID_PARAMETER_VALUE)


def setting(env: Mapping[str, str], name: str) -> str | None:
    """An environment setting, with set-but-empty treated as unset (``export X=`` in a shell)."""
    value = env.get(name, "").strip()
    return value or None
