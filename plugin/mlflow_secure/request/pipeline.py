"""The steps of the request path that do not depend on the server interface.

Each step takes the request's Trail and returns what the next step needs, or the
ErrorResponse that ends the request (recorded in the trail); nothing here allows by default.
The order is sequence.py's; the I/O around it is front_door.py's.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from mlflow.exceptions import MlflowException

from mlflow_secure.audit.log import AuditLog
from mlflow_secure.errors import ErrorResponse
from mlflow_secure.identity.authenticator import Authenticator, AuthError
from mlflow_secure.policy.client import PolicyUnavailable
from mlflow_secure.policy.decision_cache import DecisionCache
from mlflow_secure.policy.engine import PolicyEngine
from mlflow_secure.policy.shadow import ShadowEvaluator
from mlflow_secure.request import authentication, authorship, canonical, decision, listings, otlp
from mlflow_secure.request.actions import Action, classify, logical_path, resolve_resource
from mlflow_secure.request.canonical import AmbiguousRequest, BadRequest, CanonicalRequest
from mlflow_secure.request.decision import POLICY_DOWN
from mlflow_secure.request.decrypting import ServerDecryption
from mlflow_secure.request.lookups import PROJECT_TAG, ResourceResolver
from mlflow_secure.request.matcher import RouteMatcher
from mlflow_secure.request.origin import OriginPolicy
from mlflow_secure.request.resolution import resolve
from mlflow_secure.request.trail import Trail

_logger = logging.getLogger("mlflow_secure.request.front_door")

MAX_BUFFERED_BODY = 16 * 1024 * 1024
BODY_TOO_LARGE = ErrorResponse(400, "The request body is too large for this endpoint.")
NO_SUCH_ROUTE = ErrorResponse(404, "No such endpoint.")
# MLflow's handlers read the JSON body of a GET that has no query string; no MLflow client
# sends one, and refusing it keeps "query or body" a choice the method makes.
BODY_ON_READ = ErrorResponse(400, "A GET or HEAD request must not carry a body.")
HEAD_REFUSED = ErrorResponse(400, "HEAD is not supported on this endpoint; send a GET.")
_GET_ONLY_MODES = frozenset({"proto", "query_or_json"})
# Creates that take the creator's default project when they name none.
_PLACED_CREATES = frozenset({"mlflow.experiments.create", "mlflow.registered_models.create"})
_PROJECT_NAME_MAX = 128
_REQUESTED = frozenset({"uri", "new_tags"})  # what a request asks to write, not what is


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
    decisions: DecisionCache | None = None  # None: MLFLOW_SECURE_DECISION_CACHE_TTL=0
    decryption: ServerDecryption | None = None  # the UI's encrypted downloads (decrypting.py)
    # MLFLOW_SECURE_ENCRYPT_FROM: uploads of plaintext refused at and above (plaintext_guard)
    encrypt_from: str = "never"


def is_health_probe(method: str, path: str, health_paths: frozenset[str]) -> bool:
    # Exact paths only: a prefix match would make `/health/../api/...` style tricks public.
    return method in {"GET", "HEAD"} and path in health_paths


def log_problem(problem: str) -> None:
    _logger.warning("refusing requests: %s", problem)


def record(config: FrontDoorConfig, trail: Trail) -> None:
    if config.audit is not None:
        config.audit.record(trail.event())


def policy_down(trail: Trail, problem: Any) -> ErrorResponse:
    log_problem(str(problem))
    return trail.refuse(POLICY_DOWN, "unavailable", "policy engine unavailable")


class Pipeline:
    """The steps shared by both front doors."""

    def __init__(self, config: FrontDoorConfig) -> None:
        self.config = config

    # ------------------------------------------------------------------ route, authenticate

    def route(self, trail: Trail) -> Action | ErrorResponse:
        facts = trail.facts
        action = classify(facts.method, facts.path, self.config.static_prefix, self.config.matcher)
        if action is None:
            return trail.refuse(NO_SUCH_ROUTE, "deny", "no such endpoint")
        foreign = self.config.origins.refusal(facts.method, facts.host, facts.origin, False)
        if foreign is not None:
            return trail.refuse(foreign[0], "deny", foreign[1])
        trail.action = action
        return action

    def credential(self, trail: Trail, authorization: list[bytes]) -> Any:
        throttle = self.config.authenticator.throttle
        credential = authentication.read_credential(throttle, trail.facts, authorization)
        if isinstance(credential, ErrorResponse):
            return trail.refuse(credential, "unauthenticated")
        return credential

    def authenticate(self, trail: Trail, credential: Any) -> Any:
        """The slow path of authentication (a worker thread under ASGI)."""
        try:
            return authentication.finish_authentication(
                self.config.authenticator, credential, trail.facts
            )
        except AuthError as exc:
            return self.failed(trail, exc)

    def failed(self, trail: Trail, exc: AuthError) -> ErrorResponse:
        response = authentication.record_failure(
            self.config.authenticator.throttle, exc, trail.facts
        )
        return trail.refuse(response, "unauthenticated", str(exc))

    def body_on_read(self, trail: Trail) -> ErrorResponse | None:
        """After authentication (an anonymous caller learns nothing but 401)."""
        facts, spec = trail.facts, trail.action.spec
        if facts.has_body and facts.method in {"GET", "HEAD"}:
            return trail.refuse(BODY_ON_READ, "deny", "a GET or HEAD request with a body")
        if facts.method == "HEAD" and spec is not None and spec.parse in _GET_ONLY_MODES:
            # Flask runs the GET view, but MLflow's parsers read the query only for GET
            return trail.refuse(HEAD_REFUSED, "deny", "HEAD on an endpoint read as GET")
        return None

    # ------------------------------------------------------------------ read

    def stamps(self, trail: Trail) -> bool:
        action = trail.action
        if action.plugin_path is not None:
            return False
        path = logical_path(action.path or trail.facts.path, self.config.static_prefix)
        method = trail.facts.method
        return authorship.find_endpoint(path, method) is not None or _is_otlp(path, method)

    def reads_json(self, trail: Trail) -> bool:
        action, facts = trail.action, trail.facts
        if action.plugin_path is not None:
            return False
        return canonical.reads_body(action.spec, facts.method, facts.content_type)

    def buffers_body(self, trail: Trail) -> bool:
        """Buffer the body only where it is read here: JSON requests, OTLP exports and the
        plugin's key routes; never artefact bytes."""
        if trail.action.plugin_path is not None:
            return trail.action.needs_body
        return self.reads_json(trail) or self.stamps(trail)

    def read(self, trail: Trail, body: bytes | None) -> CanonicalRequest | ErrorResponse:
        """The one reading of the request; the author stamped and the project placed in it."""
        action, facts = trail.action, trail.facts
        try:
            request = canonical.read(
                action.spec,
                action.key,
                facts.method,
                facts.query,
                body if self.reads_json(trail) else None,
                action.path_params,
                facts.content_encoding,
            )
            request = self._placed(trail, request)
            # Names the front door sets itself: a client key spelt like one is not one.
            params = {k: v for k, v in request.params.items() if ":" not in str(k)}
            names = [name for name, _ in facts.id_headers]
            if len(names) != len(set(names)):
                # MLflow reads the first, a list reader the last: one value or none
                raise AmbiguousRequest("a header naming a resource is given more than once")
            params.update({f"header:{name}": value for name, value in facts.id_headers})
            request.params = params
            if self.stamps(trail) and body is not None:
                request = self._stamped(trail, request, body)
        except (AmbiguousRequest, BadRequest, authorship.AuthorshipViolation) as exc:
            message = (
                f"Ambiguous request: {exc}." if isinstance(exc, AmbiguousRequest) else str(exc)
            )
            code, reason = getattr(exc, "error_code", None), getattr(exc, "reason", message)
            refused = ErrorResponse(400, message, error_code=code, extra=getattr(exc, "extra", {}))
            return trail.refuse(refused, "deny", reason)
        trail.canonical = request
        return request

    def _placed(self, trail: Trail, request: CanonicalRequest) -> CanonicalRequest:
        """An experiment or registered model created without a project goes into the project
        the client asked for (X-MLflow-Secure-Project) or the creator's default project."""
        if trail.action.endpoint not in _PLACED_CREATES or request.payload is None:
            return request
        tags = request.payload.get("tags") or []
        if not isinstance(tags, list) or any(
            isinstance(t, dict) and str(t.get("key", "")).lower() == PROJECT_TAG for t in tags
        ):
            return request
        project = trail.facts.project or getattr(trail.subject, "default_project", None)
        if not project:
            return request
        if len(project) > _PROJECT_NAME_MAX or not project.isprintable():
            raise BadRequest("X-MLflow-Secure-Project is not a project name.")
        tags = [*tags, {"key": PROJECT_TAG, "value": project}]
        return request.with_payload({**request.payload, "tags": tags})

    def _stamped(self, trail: Trail, request: CanonicalRequest, raw: bytes) -> CanonicalRequest:
        path = logical_path(trail.action.path or trail.facts.path, self.config.static_prefix)
        facts = trail.facts
        if _is_otlp(path, facts.method):
            # Protobuf spans cannot be rewritten faithfully: an author attribute is refused,
            # and every trace the export names is decided (resolution: otlp:trace_ids).
            try:
                export = otlp.decode_export(raw, facts.content_type, facts.content_encoding)
                ids = otlp.trace_ids(export)
            except otlp.OtlpError as exc:
                raise BadRequest(f"The OTLP export cannot be read ({exc}).") from None
            authorship.refuse_otlp_authorship(raw, facts.content_type, facts.content_encoding)
            request.params[otlp.TRACE_IDS_PARAM] = ids
            return request
        body = request.body if request.body is not None else raw
        stamped = authorship.stamp_authorship(path, facts.method, body, trail.subject.name)
        if stamped is None or stamped == body:
            return request
        return request.with_payload(json.loads(stamped))

    # ------------------------------------------------------------------ resolve

    def resource(self, trail: Trail, raw_body: bytes) -> dict[str, Any] | ErrorResponse:
        """The resources the policy decides on, read from the stores (database I/O)."""
        config, action = self.config, trail.action
        if action.plugin_path is not None:
            try:
                resource = resolve_resource(
                    action,
                    trail.subject,
                    trail.facts.query,
                    raw_body,
                    config.sessions,
                    config.resolver,
                )
            except BadRequest as exc:  # unreadable: answered before any policy is asked
                refusal = ErrorResponse(400, str(exc))
                return trail.refuse(refusal, "deny", refusal.message)
            trail.resource = resource
            return resource
        try:
            resolved = resolve(action.spec, trail.params, config.resolver, trail.subject.name)
        except AmbiguousRequest as exc:
            refusal = ErrorResponse(400, f"Ambiguous request: {exc}.")
            return trail.refuse(refusal, "deny", refusal.message)
        except BadRequest as exc:
            refusal = ErrorResponse(400, f"{exc}.")
            return trail.refuse(refusal, "deny", refusal.message)
        resource = resolved.resource
        trail.asked = resolved.asked
        if action.spec.listing:
            # Whether the results will be narrowed per item (listings/): the policy must know.
            resource["filtered"] = listings.narrows(action.endpoint)
        trail.resource, trail.also, trail.any_of = resource, resolved.also, resolved.any_of
        return resource

    # ------------------------------------------------------------------ decide

    def policy_input(self, trail: Trail) -> dict[str, Any]:
        trail.decision_id = decision.new_decision_id()
        trail.policy_input = decision.policy_input(
            trail.subject, trail.action, trail.resource, trail.facts
        )
        return trail.policy_input

    def input_for(self, trail: Trail, resource: dict[str, Any], access: str | None) -> dict:
        return decision.policy_input(trail.subject, trail.action, resource, trail.facts, access)

    def alternatives_wanted(self, trail: Trail, answer: Any) -> bool:
        return bool(trail.any_of) and not isinstance(answer, PolicyUnavailable) and not answer.allow

    def first_allowed(self, trail: Trail, answer: Any, alternatives: list[Any]) -> Any:
        """The first alternative the policy allows becomes the resource; else the refusal of
        the first resource stands."""
        for other, candidate in zip(trail.any_of, alternatives, strict=True):
            if not isinstance(candidate, PolicyUnavailable) and candidate.allow:
                # the decision that stands is this one: the audit event and the shadow
                # comparison must see the input it answered
                trail.resource = other
                trail.policy_input = self.input_for(trail, other, None)
                return candidate
        return answer

    def note(self, trail: Trail, answer: Any) -> None:
        """Record a decision that arrived (its revision, the shadow comparison, a denial)."""
        trail.policy_revision = self.config.engine.revision
        if self.config.shadow is not None:  # off the request path; never raises
            self.config.shadow.compare(
                trail.policy_input, answer, trail.decision_id, trail.policy_revision
            )
        if not answer.allow:
            trail.decision, trail.reasons = "deny", tuple(answer.reasons)
            decision.log_denial(trail.decision_id, trail.subject, trail.action, answer)

    def first_refused_other(self, trail: Trail, answers: list[Any]) -> Any:
        """The first further resource refused as (resource, access, answer), an outage's
        refusal, or None when every one is allowed."""
        for (other, access), answer in zip(trail.also, answers, strict=True):
            if isinstance(answer, PolicyUnavailable):
                return policy_down(trail, answer)
            if not answer.allow:
                trail.decision, trail.reasons = "deny", tuple(answer.reasons)
                trail.resource = {**other, "named_with": trail.resource.get("id")}
                decision.log_denial(trail.decision_id, trail.subject, trail.action, answer)
                return other, access, answer
        return None

    def read_check(self, resource: dict[str, Any], access: str | None, trail: Trail) -> Any:
        """The input asking whether the caller may at least read a refused resource, or None
        when the refusal already answers that (a read, a missing or unnamed resource)."""
        access = access or trail.action.access
        if access == "read" or resource.get("missing") or not decision.hides(resource):
            return None
        # the resource as it is, without what this request asks to write (a URI, tags), and
        # every other view of it (a dataset seen through each experiment it is linked to)
        key = (resource.get("type"), resource.get("id"))
        views = [trail.resource, *(other for other, _ in trail.also), *trail.any_of]
        views = [resource, *(v for v in views if v is not resource and _key(v) == key)]
        stored = [{k: v for k, v in view.items() if k not in _REQUESTED} for view in views]
        return [self.input_for(trail, view, "read") for view in stored]

    def refusal(
        self,
        trail: Trail,
        resource: dict[str, Any],
        access: str | None,
        answer: Any,
        readable: Any,
        visible: bool = False,
    ) -> ErrorResponse:
        """The answer to a denial: 404 when the resource does not exist or the caller may not
        read it, 403 with the policy's reasons when they may read it. `readable` holds the
        answers to `read_check` (None when it was not asked): any allowed view makes it
        readable; `visible`: the caller is known to see it."""
        if isinstance(readable, list):
            down = next((r for r in readable if isinstance(r, PolicyUnavailable)), None)
            if down is not None:
                return policy_down(trail, down)
            visible = visible or any(r.allow for r in readable)
            readable = readable[0] if readable else None
        decision_id = trail.decision_id
        if decision.hides(resource) and not visible:
            asked = trail.asked if resource is trail.resource else None
            if resource.get("missing"):
                return decision.not_found(resource, decision_id, asked)
            if decision.in_default_experiment(resource):
                return decision.default_experiment_refusal(decision_id, list(answer.reasons))
            refused_read = (access or trail.action.access) == "read"
            if refused_read or (readable is not None and not readable.allow):
                return decision.not_found(resource, decision_id, asked)
        return decision.denial(answer, trail.subject, trail.action, decision_id)

    def after_allowed(self, trail: Trail) -> None:
        """This worker forgets cached attributes a request it let through may change."""
        action, resource, resolver = trail.action, trail.resource, self.config.resolver
        if action.access == "read" or not resource.get("id"):
            return
        if resource.get("type") == "experiment":
            resolver.forget_experiment(resource["id"])
        elif resource.get("type") in {"registered_model", "prompt"}:
            resolver.forget_registered_model(resource["id"])

    # ------------------------------------------------------------------ enforce

    def filter_input(self, trail: Trail, resources: list[dict[str, Any]]) -> dict[str, Any]:
        return {**self.reader_input(trail), "resources": resources}

    def reader_input(self, trail: Trail) -> dict[str, Any]:
        """The subject and the read action a listing's items are decided for."""
        action, facts = trail.action, trail.facts
        who = {"endpoint": action.endpoint, "access": "read", "method": facts.method}
        return {"subject": trail.subject.policy_input(), "action": who}

    def listing(self, trail: Trail, filter_call: Any = None) -> Any:
        """For an allowed, narrowed listing: a reply to send, a Rewrite, or None.

        `filter_call` answers the one filter question; by default a synchronous OPA call."""
        action, facts, config = trail.action, trail.facts, self.config

        def ask_opa(resources: list[dict[str, Any]]) -> frozenset[str]:
            return decision.readable_sync(config, self.filter_input(trail, resources))

        filter_call = filter_call or ask_opa
        try:
            listing = listings.ListingRequest(
                trail.params,
                facts.method,
                config.resolver,
                filter_call,
                compile_call=config.engine.client.compile_sync,
                subject_and_action=self.reader_input(trail),
                # a residual is an answer reused: not without decision reuse
                revision=config.engine.reusable if config.decisions is not None else None,
            )
            narrowed = listings.narrow(action.endpoint, listing)
        except (listings.ListingError, AmbiguousRequest) as exc:
            return trail.refuse(ErrorResponse(400, str(exc)), "deny", str(exc))
        except MlflowException as exc:
            return listings.mlflow_error(exc)
        except PolicyUnavailable as exc:
            return policy_down(trail, exc)
        if isinstance(narrowed, listings.JsonReply) and narrowed.status == 403:
            # a narrower that refuses part of the request (GraphQL) is a denial in the trail
            trail.decision, trail.reasons = "deny", (narrowed.reason(),)
        return narrowed


def _key(resource: dict[str, Any] | None) -> tuple[Any, Any]:
    return (resource or {}).get("type"), (resource or {}).get("id")


def _is_otlp(path: str, method: str) -> bool:
    return method == "POST" and path == otlp.OTLP_TRACES_PATH
