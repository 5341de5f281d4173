"""What one request is and what it went through: the facts read off the wire, and the trail
that becomes its audit event (filled in step by step, whatever the outcome)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mlflow_secure.audit.events import AuditEvent
from mlflow_secure.errors import ErrorResponse
from mlflow_secure.identity.subject import Subject
from mlflow_secure.request.actions import Action
from mlflow_secure.request.canonical import CanonicalRequest

# Non-secret request headers the front door reads (lower-case): the client build and the
# project a client asks new work to go into.
CLIENT_HEADER = "x-mlflow-secure-client"
PROJECT_HEADER = "x-mlflow-secure-project"
ENCRYPTION_HEADER = "x-mlflow-secure-encryption"


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
    client: str | None = None  # X-MLflow-Secure-Client
    project: str | None = None  # X-MLflow-Secure-Project
    encryption: str | None = None  # X-MLflow-Secure-Encryption (what the client encrypts)

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
    # The one reading of an MLflow request (canonical.py) that every later step uses.
    canonical: CanonicalRequest | None = None
    resource: dict[str, Any] | None = None
    asked: str | None = None  # the resource's key as the request spelt it (a name, an id)
    decision: str = "allow"
    reasons: tuple[str, ...] = ()
    decision_id: str | None = None
    # What the policy was asked, and the revision of the policies that answered (the
    # engine's cached revision when the decision arrived; None if no policy decided).
    policy_input: dict[str, Any] | None = None
    # Further resources the request names, each with the access it needs (None: the
    # route's): each must be allowed too.
    also: list[tuple[dict[str, Any], str | None]] = field(default_factory=list)
    # Alternatives: the request is allowed if the resource or any one of these is.
    any_of: list[dict[str, Any]] = field(default_factory=list)
    policy_revision: str | None = None
    status: int | None = None

    @property
    def params(self) -> dict[str, Any] | None:
        return self.canonical.params if self.canonical is not None else None

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
            client=self.facts.client,
        )
