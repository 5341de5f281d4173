"""The one authorisation sequence every request goes through, for ASGI and WSGI alike.

route → authenticate → read (canonical) → resolve → decide (every named resource) → enforce.

It is written once, as a generator that yields the steps needing I/O as effects; each front
door (front_door.py) carries them out its own way: the ASGI door awaits, runs database work
on the event loop when the caches can answer and in a worker thread otherwise; the WSGI door
just calls. The generator returns a `Forward` (the rebuilt request MLflow receives), `PASS`
(a public route, untouched), or the reply that ends the request.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

from mlflow_secure.errors import ErrorResponse
from mlflow_secure.identity.authenticator import AuthError
from mlflow_secure.policy.client import PolicyUnavailable
from mlflow_secure.request import listings, mlflow_refusals, ui
from mlflow_secure.request.pipeline import BODY_TOO_LARGE, Pipeline, policy_down
from mlflow_secure.request.trail import Trail

# ---------------------------------------------------------------------------- effects


@dataclass(frozen=True)
class ReadBody:
    """The whole request body (None: larger than the front door buffers)."""


@dataclass(frozen=True)
class Blocking:
    """A call that may touch a database. `cached`: worth trying on the event loop first,
    inside `cache_only()` (it raises NeedsStore when it would need the database)."""

    call: Callable[..., Any]
    args: tuple[Any, ...]
    cached: bool = False


@dataclass(frozen=True)
class Decide:
    """Policy decisions for these inputs, in order (a PolicyUnavailable for an outage)."""

    inputs: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class Narrow:
    """Narrow an allowed listing (a reply, a Rewrite, or None)."""


@dataclass(frozen=True)
class Forward:
    """Hand the rebuilt request to MLflow."""

    path: str
    query: bytes
    body: bytes | None  # None: the original body, unread, streams through
    username: str | None


PASS = Forward("", b"", None, None)  # a public route: the request goes on untouched
Outcome = Forward | ErrorResponse | listings.JsonReply
Sequence = Generator[Any, Any, Outcome]


def authorise(pipeline: Pipeline, trail: Trail, authorization: list[bytes]) -> Sequence:
    action = pipeline.route(trail)
    if isinstance(action, ErrorResponse):
        return action
    if action.public:  # the UI's static assets: no data, no credentials needed
        return PASS
    try:
        credential = pipeline.credential(trail, authorization)
        if isinstance(credential, ErrorResponse):
            return credential
        # malformed, revoked and expired keys are known without I/O: a failed attempt
        subject = pipeline.config.authenticator.cached(credential)
    except AuthError as exc:
        return (yield Blocking(pipeline.failed, (trail, exc)))
    if subject is None:
        subject = yield Blocking(pipeline.authenticate, (trail, credential))
    if isinstance(subject, ErrorResponse):
        if trail.decision == "allow":  # the identity store is down (not a failed attempt)
            trail.refuse(subject, "unavailable", "identity store unavailable")
        return subject
    trail.subject = subject
    refused = pipeline.body_on_read(trail)
    if refused is not None:
        return refused
    if action.answer is not None:  # the UI asking who is signed in: decided, then answered
        trail.resource = {"type": "principal", "id": subject.name}
        refused = yield from _decide(pipeline, trail)
        return refused if refused is not None else action.answer(subject)

    body: bytes | None = None
    if pipeline.buffers_body(trail):
        body = yield ReadBody()
        if body is None:
            return trail.refuse(BODY_TOO_LARGE, "deny", "request body too large")
    request = None
    if action.plugin_path is None:
        request = pipeline.read(trail, body)
        if isinstance(request, ErrorResponse):
            return request
        invalid = mlflow_refusals.refused(action.endpoint, request)
        if invalid is not None:  # MLflow's own 400, in its words, before any id is read
            trail.decision, trail.reasons = "deny", (invalid[1],)
            return invalid[0]
    resource = yield Blocking(pipeline.resource, (trail, body or b""), action.plugin_path is None)
    if isinstance(resource, ErrorResponse):
        return resource

    refused = yield from _decide(pipeline, trail)
    if refused is not None:
        return _instead_of_refusal(trail, refused)
    pipeline.after_allowed(trail)
    if request is None:  # the plugin's own API reads the original request
        return Forward(trail.facts.path, trail.facts.query, body, subject.name)
    query, payload = request.query, request.body if request.body is not None else body
    if listings.narrows(action.endpoint):
        narrowed = yield Narrow()
        if isinstance(narrowed, listings.Rewrite):
            query = narrowed.query if narrowed.query is not None else query
            payload = narrowed.body if narrowed.body is not None else payload
        elif narrowed is not None:
            return narrowed
    return Forward(action.path or trail.facts.path, query, payload, subject.name)


def _instead_of_refusal(trail: Trail, refused: ErrorResponse) -> Outcome:
    """A policy's refusal of a UI call that has a clean answer (ui.WHEN_REFUSED): the refusal
    stays in the audit trail (decision, reasons, decision id); the UI gets the answer."""
    answer = ui.answer_when_refused(trail.action.key) if trail.decision == "deny" else None
    return refused if answer is None else answer(trail.subject)


def _decide(pipeline: Pipeline, trail: Trail) -> Generator[Any, Any, ErrorResponse | None]:
    """Every resource the request names must be allowed; the first refusal answers."""
    (answer,) = yield Decide((pipeline.policy_input(trail),))
    if pipeline.alternatives_wanted(trail, answer):
        inputs = tuple(pipeline.input_for(trail, other, None) for other in trail.any_of)
        answer = pipeline.first_allowed(trail, answer, (yield Decide(inputs)))
    if isinstance(answer, PolicyUnavailable):
        return policy_down(trail, answer)
    pipeline.note(trail, answer)
    if not answer.allow:
        return (yield from _refusal(pipeline, trail, trail.resource, None, answer))
    if not trail.also:
        return None
    allowed = trail.resource
    inputs = tuple(pipeline.input_for(trail, other, access) for other, access in trail.also)
    refused = pipeline.first_refused_other(trail, (yield Decide(inputs)))
    if refused is None or isinstance(refused, ErrorResponse):
        return refused
    other, access, answer = refused
    if _same(other, allowed):  # the caller sees it (a dataset shared with another team)
        return pipeline.refusal(trail, other, access, answer, None, visible=True)
    return (yield from _refusal(pipeline, trail, other, access, answer))


def _same(one: dict[str, Any], other: dict[str, Any]) -> bool:
    return (one.get("type"), one.get("id")) == (other.get("type"), other.get("id"))


def _refusal(
    pipeline: Pipeline, trail: Trail, resource: dict[str, Any], access: str | None, answer: Any
) -> Generator[Any, Any, ErrorResponse]:
    """A denial answered 404 when the caller may not even read the resource (one more
    question to the policy, asked only on refusals of a change), else 403 with reasons."""
    checks = pipeline.read_check(resource, access, trail)
    readable = None
    if checks is not None:
        readable = yield Decide(tuple(checks))
    return pipeline.refusal(trail, resource, access, answer, readable)
