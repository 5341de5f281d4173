"""The steps every request goes through, shared by the ASGI and WSGI front doors.

authenticate → route → resolve → decide → enforce. Each step returns either what the next
step needs or an ErrorResponse that ends the request; nothing here allows by default.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mlflow_secure.audit.events import AuditEvent
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
from mlflow_secure.policy.client import Decision
from mlflow_secure.request import authorship, listings
from mlflow_secure.request.actions import Action, logical_path, resolve_resource
from mlflow_secure.request.lookups import ResourceResolver
from mlflow_secure.request.resolution import (
    AmbiguousRequest,
    BadRequest,
    list_params,
    request_params,
    resolve,
)

_logger = logging.getLogger(__name__)

MAX_BUFFERED_BODY = 16 * 1024 * 1024
IDENTITY_DOWN = unavailable("The identity store is unavailable; please retry shortly.")
POLICY_DOWN = unavailable(
    "The policy engine is unavailable; requests are refused until it answers."
)
BODY_TOO_LARGE = ErrorResponse(400, "The request body is too large for this endpoint.")
NO_SUCH_ROUTE = ErrorResponse(404, "No such endpoint.")
# MLflow's handlers read the JSON body of a GET that has no query string; this layer reads
# GET parameters from the query only, so such a request could name one resource to the
# policy and another to MLflow. No MLflow client sends one.
BODY_ON_READ = ErrorResponse(400, "A GET or HEAD request must not carry a body.")
_JSON_PARSING = {"proto", "json", "query_or_json"}
_READ_METHODS = {"GET", "HEAD", "OPTIONS"}


def needs_body(action: Action, facts: RequestFacts) -> bool:
    """Buffer the body only where it names the resource: JSON requests, never artefact bytes."""
    if action.plugin_path is not None:
        return action.needs_body
    if action.spec is None or facts.method in _READ_METHODS:
        return False
    if action.spec.parse in _JSON_PARSING:
        return True
    return (facts.content_type or "").startswith("application/json")


def request_parameters(action: Action, facts: RequestFacts, body: bytes) -> dict[str, Any]:
    """The parameters of an MLflow request, read as its handler reads them (AmbiguousRequest
    when they conflict). Parsed once per request: resolution and listings share them."""
    lists = list_params(action.spec)
    return request_params(facts.method, facts.query, body, action.path_params, lists)


def resource_for(
    action: Action,
    subject: Subject,
    facts: RequestFacts,
    body: bytes,
    sessions: Any,
    resolver: ResourceResolver,
    params: dict[str, Any] | None,
) -> dict[str, Any] | ErrorResponse:
    """The policy's resource, read from the stores (database I/O: a worker thread in ASGI).
    `params`: `request_parameters` of an MLflow request (None for the plugin's own API)."""
    if action.plugin_path is not None or params is None:
        return resolve_resource(action, subject, facts.query, body, sessions)
    # Header ids come from the headers alone: a parameter spelt like one is not a header.
    named = {k: v for k, v in params.items() if not k.startswith("header:")}
    try:
        for name, value in facts.id_headers:
            key = f"header:{name}"
            if key in named and named[key] != value:
                raise AmbiguousRequest(f"header {name!r} is given more than once")
            named[key] = value
        resource = resolve(action.spec, named, resolver, subject.name)
    except AmbiguousRequest as exc:
        return ambiguous(exc)
    except BadRequest as exc:
        return ErrorResponse(400, f"{exc}.")
    if action.spec.listing:
        # Whether the results will be narrowed per item (listings.py): the policy must know.
        resource["filtered"] = listings.narrows(action.endpoint)
    return resource


def ambiguous(exc: AmbiguousRequest) -> ErrorResponse:
    return ErrorResponse(400, f"Ambiguous request: {exc}.")


def after_allowed_change(action: Action, resource: dict[str, Any], resolver: Any) -> None:
    """This worker forgets cached attributes a request it let through may change."""
    if action.access == "read" or not resource.get("id"):
        return
    if resource.get("type") == "experiment":
        resolver.forget_experiment(resource["id"])
    elif resource.get("type") in {"registered_model", "prompt"}:
        resolver.forget_registered_model(resource["id"])


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
    has_body: bool = False  # a Content-Length above 0 or a Transfer-Encoding
    host: str | None = None
    origin: str | None = None
    # The request headers that name resources (route census ids `header:<name>`), in order.
    id_headers: tuple[tuple[str, str], ...] = ()

    def policy_input(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "client_ip": self.client_ip,
            "tls": self.tls,
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
        }


@dataclass
class Trail:
    """What one request went through, for its audit event (filled in as it goes)."""

    facts: RequestFacts
    user_agent: str | None = None
    started: float = field(default_factory=time.time)
    clock: float = field(default_factory=time.perf_counter)
    subject: Subject | None = None
    action: Action | None = None
    resource: dict[str, Any] | None = None
    decision: str = "allow"
    reasons: tuple[str, ...] = ()
    decision_id: str | None = None
    # What the policy was asked, and the revision of the policies that answered (the
    # engine's cached revision when the decision arrived; None if no policy decided).
    policy_input: dict[str, Any] | None = None
    # Further resources the request names (a list of runs...): each must be allowed too.
    also: list[dict[str, Any]] = field(default_factory=list)
    # An MLflow request's parameters, parsed once (gate.request_parameters).
    params: dict[str, Any] | None = None
    # Alternatives: the request is allowed if the resource or any one of these is.
    any_of: list[dict[str, Any]] = field(default_factory=list)
    policy_revision: str | None = None
    status: int | None = None

    def refuse(
        self, response: ErrorResponse, decision: str, reason: str | None = None
    ) -> ErrorResponse:
        self.decision = decision
        if reason:
            self.reasons = (reason,)
        return response

    def event(self) -> AuditEvent:
        subject = self.subject
        return AuditEvent.for_request(
            method=self.facts.method,
            path=self.facts.path,
            query=self.facts.query,
            decision=self.decision,
            status=self.status,
            client_ip=self.facts.client_ip,
            user_agent=self.user_agent,
            subject=subject.name if subject else None,
            subject_kind=subject.identity.kind if subject else None,
            auth=subject.auth if subject else None,
            key_id=subject.key_id if subject else None,
            endpoint=self.action.endpoint if self.action else None,
            resource=self.resource,
            reasons=self.reasons,
            decision_id=self.decision_id,
            policy_revision=self.policy_revision,
            started=self.started,
            latency_ms=(time.perf_counter() - self.clock) * 1000,
        )


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


def new_decision_id() -> str:
    return uuid.uuid4().hex


def denial(decision: Decision, subject: Subject, action: Action, decision_id: str) -> ErrorResponse:
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
