"""Step 1 of the request path: the credential read strictly, throttled, and checked.

The parsing and the throttle check do no I/O; `finish_authentication` and `record_failure`
may touch the identity store (a worker thread under ASGI)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

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
from mlflow_secure.request.trail import RequestFacts

_logger = logging.getLogger(__name__)

IDENTITY_DOWN = unavailable("The identity store is unavailable; please retry shortly.")


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
