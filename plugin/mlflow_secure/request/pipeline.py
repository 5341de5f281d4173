"""The decisions every request goes through, shared by the ASGI and WSGI front doors.

`Pipeline` holds the steps that do not depend on the server interface (route, credential,
stamp, resolve, decide, narrow); the front doors (front_door.py) do the I/O around them.
Steps that may touch a database run on the event loop only when the caches can answer
(`cache_only`), in a worker thread otherwise.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import anyio
from mlflow.exceptions import MlflowException

from mlflow_secure.audit.log import AuditLog
from mlflow_secure.errors import ErrorResponse
from mlflow_secure.identity.authenticator import Authenticator, AuthError
from mlflow_secure.policy.client import PolicyUnavailable
from mlflow_secure.policy.decision_cache import DecisionCache
from mlflow_secure.policy.engine import PolicyEngine
from mlflow_secure.policy.shadow import ShadowEvaluator
from mlflow_secure.request import authorship, gate, listings
from mlflow_secure.request.actions import Action, classify
from mlflow_secure.request.lookups import NeedsStore, ResourceResolver, cache_only
from mlflow_secure.request.matcher import RouteMatcher
from mlflow_secure.request.origin import OriginPolicy
from mlflow_secure.request.resolution import AmbiguousRequest

_logger = logging.getLogger("mlflow_secure.request.front_door")


@dataclass
class FrontDoorConfig:
    engine: PolicyEngine
    authenticator: Authenticator
    sessions: Any  # sessionmaker of the identity store
    health_paths: frozenset[str]
    matcher: RouteMatcher  # every MLflow request is classified through the route census
    resolver: ResourceResolver
    static_prefix: str = ""
    audit: AuditLog | None = None
    trusted_proxies: tuple = ()
    origins: OriginPolicy = field(default_factory=OriginPolicy.from_environment)
    shadow: ShadowEvaluator | None = None  # shadow mode: candidate policies compared
    decisions: DecisionCache | None = None  # MLFLOW_SECURE_DECISION_CACHE_TTL > 0


def is_health_probe(method: str, path: str, health_paths: frozenset[str]) -> bool:
    # Exact paths only: a prefix match would make `/health/../api/...` style tricks public.
    return method in {"GET", "HEAD"} and path in health_paths


def log_problem(problem: str) -> None:
    _logger.warning("refusing requests: %s", problem)


def record(config: FrontDoorConfig, trail: gate.Trail) -> None:
    if config.audit is not None:
        config.audit.record(trail.event())


class Pipeline:
    """The decisions shared by both front doors; I/O steps are passed in as callables."""

    def __init__(self, config: FrontDoorConfig) -> None:
        self.config = config

    def route(self, trail: gate.Trail) -> Action | ErrorResponse:
        facts = trail.facts
        action = classify(facts.method, facts.path, self.config.static_prefix, self.config.matcher)
        if action is None:
            return trail.refuse(gate.NO_SUCH_ROUTE, "deny", "no such endpoint")
        foreign = self.config.origins.refusal(facts.method, facts.host, facts.origin, False)
        if foreign is not None:
            return trail.refuse(foreign[0], "deny", foreign[1])
        trail.action = action
        return action

    def body_on_read(self, trail: gate.Trail) -> ErrorResponse | None:
        """After authentication (an anonymous caller learns nothing but 401)."""
        facts = trail.facts
        if facts.has_body and facts.method in {"GET", "HEAD"}:
            return trail.refuse(gate.BODY_ON_READ, "deny", "a GET or HEAD request with a body")
        return None

    def credential(self, trail: gate.Trail, authorization: list[bytes]) -> Any:
        throttle = self.config.authenticator.throttle
        credential = gate.read_credential(throttle, trail.facts, authorization)  # AuthError
        if isinstance(credential, ErrorResponse):
            return trail.refuse(credential, "unauthenticated")
        return credential

    def failed(self, trail: gate.Trail, exc: AuthError) -> ErrorResponse:
        response = gate.record_failure(self.config.authenticator.throttle, exc, trail.facts)
        return trail.refuse(response, "unauthenticated", str(exc))

    def stamp(self, trail: gate.Trail, body: bytes) -> bytes | ErrorResponse:
        try:
            return gate.stamp(trail.facts, body, trail.subject, self.config.static_prefix)
        except authorship.AuthorshipViolation as exc:
            return trail.refuse(ErrorResponse(400, str(exc)), "deny", str(exc))

    def resource(self, trail: gate.Trail, body: bytes) -> dict[str, Any] | ErrorResponse:
        config, action = self.config, trail.action
        if action.plugin_path is None:
            try:
                trail.params = gate.request_parameters(action, trail.facts, body)
            except AmbiguousRequest as exc:
                refusal = gate.ambiguous(exc)
                return trail.refuse(refusal, "deny", refusal.message)
        resource = gate.resource_for(
            action, trail.subject, trail.facts, body, config.sessions, config.resolver, trail.params
        )
        if isinstance(resource, ErrorResponse):
            return trail.refuse(resource, "deny", resource.message)
        trail.also = resource.pop("also", [])
        trail.any_of = resource.pop("any_of", [])
        trail.resource = resource
        return resource

    def other_inputs(self, trail: gate.Trail, others: list[dict[str, Any]]) -> list[dict]:
        """The policy inputs for the further resources a request names, one each."""
        return [
            gate.policy_input(trail.subject, trail.action, other, trail.facts) for other in others
        ]

    def wants_alternatives(self, trail: gate.Trail, decision: Any) -> bool:
        return (
            bool(trail.any_of)
            and not isinstance(decision, PolicyUnavailable)
            and not (decision.allow)
        )

    def first_allowed(self, trail: gate.Trail, decision: Any, alternatives: list[Any]) -> Any:
        """The first alternative the policy allows becomes the resource; else the refusal of
        the first resource stands."""
        for other, answer in zip(trail.any_of, alternatives, strict=True):
            if not isinstance(answer, PolicyUnavailable) and answer.allow:
                # the decision that stands is this one: the audit event and the shadow
                # comparison must see the input it answered
                trail.resource = other
                trail.policy_input = gate.policy_input(
                    trail.subject, trail.action, other, trail.facts
                )
                return answer
        return decision

    def others_verdict(self, trail: gate.Trail, decisions: list[Any]) -> ErrorResponse | None:
        """Every further resource must be allowed as the first was; the first refusal wins."""
        for other, decision in zip(trail.also, decisions, strict=True):
            if isinstance(decision, PolicyUnavailable):
                log_problem(str(decision))
                return trail.refuse(gate.POLICY_DOWN, "unavailable", "policy engine unavailable")
            if not decision.allow:
                trail.decision, trail.reasons = "deny", decision.reasons
                trail.resource = {**other, "named_with": trail.resource.get("id")}
                return gate.denial(decision, trail.subject, trail.action, trail.decision_id)
        return None

    def policy_input(self, trail: gate.Trail) -> dict[str, Any]:
        trail.decision_id = gate.new_decision_id()
        trail.policy_input = gate.policy_input(
            trail.subject, trail.action, trail.resource, trail.facts
        )
        return trail.policy_input

    def filter_input(self, trail: gate.Trail, resources: list[dict[str, Any]]) -> dict[str, Any]:
        action, facts = trail.action, trail.facts
        who = {"endpoint": action.endpoint, "access": "read", "method": facts.method}
        return {"subject": trail.subject.policy_input(), "action": who, "resources": resources}

    def listing(self, trail: gate.Trail, filter_call: Any = None) -> Any:
        """For an allowed, narrowed listing: a reply to send, a Rewrite, or None.

        `filter_call` answers the one filter question; by default a synchronous OPA call."""
        action, facts, config = trail.action, trail.facts, self.config

        def ask_opa(resources: list[dict[str, Any]]) -> set[str]:
            return config.engine.client.filter_sync(self.filter_input(trail, resources))

        filter_call = filter_call or ask_opa
        try:
            listing = listings.ListingRequest(
                trail.params, facts.method, config.resolver, filter_call
            )
            narrowed = listings.narrow(action.endpoint, listing)
        except (listings.ListingError, AmbiguousRequest) as exc:
            return trail.refuse(ErrorResponse(400, str(exc)), "deny", str(exc))
        except MlflowException as exc:
            return listings.mlflow_error(exc)
        except PolicyUnavailable as exc:
            log_problem(str(exc))
            return trail.refuse(gate.POLICY_DOWN, "unavailable", "policy engine unavailable")
        if isinstance(narrowed, listings.JsonReply) and narrowed.status == 403:
            # a narrower that refuses part of the request (GraphQL) is a denial in the trail
            trail.decision, trail.reasons = "deny", (narrowed.reason(),)
        return narrowed

    def verdict(self, trail: gate.Trail, decision: Any) -> ErrorResponse | None:
        if isinstance(decision, PolicyUnavailable):
            log_problem(str(decision))
            return trail.refuse(gate.POLICY_DOWN, "unavailable", "policy engine unavailable")
        trail.policy_revision = self.config.engine.revision
        if self.config.shadow is not None:  # off the request path; never raises
            self.config.shadow.compare(
                trail.policy_input, decision, trail.decision_id, trail.policy_revision
            )
        if not decision.allow:
            trail.decision, trail.reasons = "deny", decision.reasons
            return gate.denial(decision, trail.subject, trail.action, trail.decision_id)
        gate.after_allowed_change(trail.action, trail.resource, self.config.resolver)
        return None


async def resolve_on_loop(pipeline: Pipeline, trail: gate.Trail, body: bytes) -> Any:
    """Resolve on the event loop when the caches can answer; a worker thread otherwise."""
    if trail.action.plugin_path is None:  # the plugin's own routes read the identity store
        try:
            with cache_only():
                return pipeline.resource(trail, body)
        except NeedsStore:
            pass
    return await anyio.to_thread.run_sync(pipeline.resource, trail, body)


class _FilterNeeded(BaseException):
    def __init__(self, resources: list[dict[str, Any]]) -> None:
        self.resources = resources


def _defer(resources: list[dict[str, Any]]) -> set[str]:
    raise _FilterNeeded(resources)


async def narrow_on_loop(config: FrontDoorConfig, pipeline: Pipeline, trail: gate.Trail) -> Any:
    """Narrow on the event loop when the caches can describe the items: a first pass finds
    the filter question, it is asked asynchronously, a second pass applies the answer. When
    the database is needed, the whole narrowing moves to a worker thread."""
    try:
        with cache_only():
            return pipeline.listing(trail, _defer)
    except NeedsStore:
        return await anyio.to_thread.run_sync(pipeline.listing, trail)
    except _FilterNeeded as needed:
        question = needed.resources
    try:
        answer = await config.engine.client.filter(pipeline.filter_input(trail, question))
    except PolicyUnavailable as exc:
        log_problem(str(exc))
        return trail.refuse(gate.POLICY_DOWN, "unavailable", "policy engine unavailable")

    def answered(resources: list[dict[str, Any]]) -> set[str]:
        if resources != question:  # the caches moved between the passes: start over
            raise NeedsStore
        return answer

    try:
        with cache_only():
            return pipeline.listing(trail, answered)
    except NeedsStore:
        return await anyio.to_thread.run_sync(pipeline.listing, trail)


def _cached(config: FrontDoorConfig, policy_input: dict[str, Any]) -> tuple[str | None, Any]:
    """The cache key of a decision (None: not cached) and the decision cached under it."""
    cache = config.decisions
    key = cache.key(policy_input, config.engine.revision) if cache is not None else None
    return key, (cache.get(key) if key is not None else None)


async def decide(config: FrontDoorConfig, policy_input: dict[str, Any]) -> Any:
    """The decision, or the PolicyUnavailable that refuses the request (never cached)."""
    key, decision = _cached(config, policy_input)
    if decision is None:
        try:
            decision = await config.engine.client.decide(policy_input)
        except PolicyUnavailable as exc:
            return exc
        if key is not None:
            config.decisions.put(key, decision)
    return decision


def decide_sync(config: FrontDoorConfig, policy_input: dict[str, Any]) -> Any:
    key, decision = _cached(config, policy_input)
    if decision is None:
        try:
            decision = config.engine.client.decide_sync(policy_input)
        except PolicyUnavailable as exc:
            return exc
        if key is not None:
            config.decisions.put(key, decision)
    return decision


async def decide_each(config: FrontDoorConfig, inputs: list[dict[str, Any]]) -> list[Any]:
    return list(await asyncio.gather(*(decide(config, i) for i in inputs)))


def decide_each_sync(config: FrontDoorConfig, inputs: list[dict[str, Any]]) -> list[Any]:
    return [decide_sync(config, i) for i in inputs]
