"""Foreign `Host` and `Origin` headers, refused at the front door before anything else runs.

MLflow has the same checks (DNS rebinding, cross-origin writes) as middleware inside its own
app, which this layer wraps: a request they refuse would already have been authenticated,
decided and counted as allowed. So they are made here first, with MLflow's own functions and
settings (`mlflow server --allowed-hosts` / `MLFLOW_SERVER_ALLOWED_HOSTS`,
`--cors-allowed-origins` / `MLFLOW_SERVER_CORS_ALLOWED_ORIGINS`), so one configuration
means the same thing in both places and the refusal is in the audit trail.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlflow.server import security_utils

from mlflow_secure.errors import ErrorResponse

FOREIGN_HOST = ErrorResponse(403, security_utils.INVALID_HOST_MSG)
FOREIGN_ORIGIN = ErrorResponse(403, security_utils.CORS_BLOCKED_MSG)


@dataclass(frozen=True)
class OriginPolicy:
    allowed_hosts: tuple[str, ...] | None  # None: any Host (MLflow's "*")
    allowed_origins: tuple[str, ...]

    @classmethod
    def from_environment(cls) -> OriginPolicy:
        hosts = (
            security_utils.get_allowed_hosts_from_env()
            or security_utils.get_default_allowed_hosts()
        )
        origins = security_utils.get_allowed_origins_from_env() or []
        return cls(None if "*" in hosts else tuple(hosts), tuple(origins))

    def refusal(
        self, method: str, host: str | None, origin: str | None, health_probe: bool
    ) -> tuple[ErrorResponse, str] | None:
        """The response and audit reason for a foreign Host or Origin, or None."""
        if (
            self.allowed_hosts is not None
            and not health_probe
            and not security_utils.is_allowed_host_header(list(self.allowed_hosts), host or "")
        ):
            return FOREIGN_HOST, "Host header not allowed (possible DNS rebinding)"
        if security_utils.should_block_cors_request(
            origin or "", method, list(self.allowed_origins)
        ):
            return FOREIGN_ORIGIN, "cross-origin state-changing request from a foreign Origin"
        return None
