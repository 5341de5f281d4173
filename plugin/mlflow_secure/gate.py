"""The steps every request goes through, shared by the ASGI and WSGI front doors.

authenticate → route → resolve → decide → enforce. Each step returns either what the next
step needs or an ErrorResponse that ends the request; nothing here allows by default.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mlflow_secure import authorship
from mlflow_secure.decision_client import Decision
from mlflow_secure.errors import ErrorResponse, unauthenticated, unavailable
from mlflow_secure.identity.authenticator import Authenticator, AuthError, AuthUnavailable
from mlflow_secure.identity.credentials import (
    Credential,
    CredentialError,
    check_query_string,
    parse_authorization,
)
from mlflow_secure.identity.subject import Subject
from mlflow_secure.identity.throttle import Throttle, client_key
from mlflow_secure.routes import Action, logical_path

_logger = logging.getLogger(__name__)

MAX_BUFFERED_BODY = 16 * 1024 * 1024
IDENTITY_DOWN = unavailable("The identity store is unavailable; please retry shortly.")
POLICY_DOWN = unavailable(
    "The policy engine is unavailable; requests are refused until it answers."
)
BODY_TOO_LARGE = ErrorResponse(400, "The request body is too large for this endpoint.")


def too_many_attempts(retry_after: int) -> ErrorResponse:
    return ErrorResponse(
        429,
        "Too many failed authentication attempts; retry later.",
        headers=(("retry-after", str(retry_after)),),
    )


def auth_failure(exc: AuthError | CredentialError) -> ErrorResponse:
    if exc.status == 401:
        return unauthenticated(str(exc))
    return ErrorResponse(exc.status, str(exc))


@dataclass(frozen=True)
class RequestFacts:
    method: str
    path: str
    query: bytes
    client_ip: str
    tls: bool
    content_type: str | None = None
    content_encoding: str | None = None

    def policy_input(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "client_ip": self.client_ip,
            "tls": self.tls,
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
        }


def read_credential(
    throttle: Throttle, facts: RequestFacts, authorization: Sequence[bytes]
) -> Credential | ErrorResponse:
    """Throttle check and strict parsing; no I/O. Failures here are counted by the caller."""
    retry_after = throttle.retry_after([client_key(facts.client_ip)])
    if retry_after:
        return too_many_attempts(retry_after)
    try:
        check_query_string(facts.query)
        credential = parse_authorization(authorization)
    except CredentialError as exc:
        raise AuthError(str(exc), exc.status) from None
    if credential is None:
        return unauthenticated()
    return credential


def finish_authentication(
    authenticator: Authenticator, credential: Credential, facts: RequestFacts
) -> Subject | ErrorResponse:
    """The slow path (database, KDF, JWKS): run it in a worker thread under ASGI."""
    try:
        return authenticator.authenticate(credential)
    except AuthUnavailable:
        return IDENTITY_DOWN


def record_failure(throttle: Throttle, exc: AuthError, facts: RequestFacts) -> ErrorResponse:
    """Count a failed attempt (database write: a worker thread under ASGI)."""
    keys = [client_key(facts.client_ip)]
    if exc.throttle_account:
        keys.append(exc.throttle_account)
    if exc.counts:
        throttle.record_failure(keys)
    retry_after = throttle.retry_after(keys)
    _logger.info("authentication failed from %s: %s", facts.client_ip or "unknown client", str(exc))
    return too_many_attempts(retry_after) if retry_after else auth_failure(exc)


def _is_otlp_export(path: str, method: str) -> bool:
    return method == "POST" and path == authorship.OTLP_TRACES_PATH


def records_authorship(action: Action, facts: RequestFacts, static_prefix: str) -> bool:
    if action.plugin_path is not None:
        return False
    path = logical_path(facts.path, static_prefix)
    return authorship.find_endpoint(path, facts.method) is not None or _is_otlp_export(
        path, facts.method
    )


def stamp(facts: RequestFacts, body: bytes, subject: Subject, static_prefix: str) -> bytes:
    """The body MLflow will see: authorship fields forced to the authenticated principal.

    Raises authorship.AuthorshipViolation for a forging attempt (answered with 400).
    """
    path = logical_path(facts.path, static_prefix)
    if _is_otlp_export(path, facts.method):
        # Protobuf spans cannot be rewritten faithfully: an author attribute is refused.
        authorship.refuse_otlp_authorship(body, facts.content_type, facts.content_encoding)
        return body
    stamped = authorship.stamp_authorship(path, facts.method, body, subject.name)
    return body if stamped is None else stamped


def policy_input(
    subject: Subject, action: Action, resource: dict[str, Any], facts: RequestFacts
) -> dict[str, Any]:
    return {
        "subject": subject.policy_input(),
        "action": {"endpoint": action.endpoint, "access": action.access, "method": facts.method},
        "resource": resource,
        "request": facts.policy_input(),
    }


def denial(decision: Decision, subject: Subject, action: Action) -> ErrorResponse:
    decision_id = uuid.uuid4().hex
    reasons = list(decision.reasons) or ["no policy rule allows this request"]
    _logger.info(
        "denied decision_id=%s subject=%s endpoint=%s reasons=%s",
        decision_id,
        subject.name,
        action.endpoint,
        reasons,
    )
    return ErrorResponse(
        403,
        "Permission denied: " + "; ".join(reasons),
        extra={"decision_id": decision_id, "reasons": reasons},
    )
