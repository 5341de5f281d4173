"""Error responses in MLflow's JSON shape, shared by the ASGI and WSGI front doors.

Clients (the MLflow Python client, the UI) already understand ``{"error_code", "message"}``;
denials add ``decision_id`` and ``reasons`` so a user can tell an administrator exactly which
decision to look up. Messages are fixed strings chosen here: nothing from the request (and so
no credential) is ever echoed back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

# MLflow's error codes (databricks_pb2.ErrorCode names) for the statuses we produce.
ERROR_CODES = {
    400: "INVALID_PARAMETER_VALUE",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "ENDPOINT_NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    503: "TEMPORARILY_UNAVAILABLE",
}

# Two challenges: API clients use Bearer; a browser shows its login prompt for Basic.
WWW_AUTHENTICATE = (
    ("www-authenticate", 'Bearer realm="mlflow-secure"'),
    ("www-authenticate", 'Basic realm="mlflow-secure", charset="UTF-8"'),
)


@dataclass(frozen=True)
class ErrorResponse:
    status: int
    message: str
    extra: dict[str, object] = field(default_factory=dict)
    headers: tuple[tuple[str, str], ...] = ()
    error_code: str | None = None  # MLflow's code when it is not the status's usual one

    def body(self) -> bytes:
        code = self.error_code or ERROR_CODES[self.status]
        payload = {"error_code": code, "message": self.message, **self.extra}
        return json.dumps(payload).encode()

    def header_list(self) -> list[tuple[str, str]]:
        body_length = str(len(self.body()))
        return [
            ("content-type", "application/json"),
            ("content-length", body_length),
            ("cache-control", "no-store"),
            ("x-content-type-options", "nosniff"),
            *self.headers,
        ]


def unauthenticated(message: str = "Authentication required.") -> ErrorResponse:
    return ErrorResponse(401, message, headers=WWW_AUTHENTICATE)


def unavailable(message: str) -> ErrorResponse:
    # Retry-After lets well-behaved clients back off while OPA restarts.
    return ErrorResponse(503, message, headers=(("retry-after", "1"),))
