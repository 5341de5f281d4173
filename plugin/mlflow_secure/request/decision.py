"""Step 5 of the request path: ask the policy, and turn a refusal into the answer a client
understands.

A refusal of a resource the caller may not even read, and a request for one that does not
exist, get the same answer, MLflow's own 404 RESOURCE_DOES_NOT_EXIST: clients build on it
(`mlflow.set_experiment("new")` looks the name up and creates the experiment on a 404), and an
unreadable resource must not be told apart from a missing one. A caller who may read the
resource but not do this to it gets 403 with the policy's reasons, which say how to fix it.
The reasons always go to the audit trail.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from mlflow_secure.errors import ErrorResponse, unavailable
from mlflow_secure.identity.subject import Subject
from mlflow_secure.policy.client import Decision, PolicyUnavailable
from mlflow_secure.policy.decision_cache import DECISION, FILTER
from mlflow_secure.request.actions import Action
from mlflow_secure.request.trail import RequestFacts

_logger = logging.getLogger("mlflow_secure.request.front_door")

POLICY_DOWN = unavailable(
    "The policy engine is unavailable; requests are refused until it answers."
)
DEFAULT_EXPERIMENT_ID = "0"
_NOUNS = {
    "experiment": "Experiment",
    "run": "Run",
    "logged_model": "Logged model",
    "trace": "Trace",
    "dataset": "Dataset",
    "registered_model": "Registered model",
    "prompt": "Prompt",
    "model_version": "Model version",
    "artifact": "Artifact",
    "scorer": "Scorer",
}


def _model_version_missing(key: str) -> str:
    name, _, version = key.rpartition("/")
    return f"Model Version (name={name}, version={version}) not found"


# MLflow's own words for a missing resource (its SQL stores' RESOURCE_DOES_NOT_EXIST
# messages), which clients and MLflow's own tests match on; other kinds use our wording.
_MLFLOW_MISSING = {
    "experiment": lambda key: f"No Experiment with id={key} exists",
    "run": lambda key: f"Run with id={key} not found",
    "logged_model": lambda key: f"Logged model with ID '{key}' not found.",
    "trace": lambda key: f"Trace with ID '{key}' not found.",
    "dataset": lambda key: f"Dataset '{key}' not found",
    "registered_model": lambda key: f"Registered Model with name={key} not found",
    "prompt": lambda key: f"Registered Model with name={key} not found",
    "model_version": _model_version_missing,
}


def policy_input(
    subject: Subject,
    action: Action,
    resource: dict[str, Any],
    facts: RequestFacts,
    access: str | None = None,
) -> dict[str, Any]:
    return {
        "subject": subject.policy_input(),
        "action": {
            "endpoint": action.endpoint,
            "access": access or action.access,
            "method": facts.method,
        },
        "resource": resource,
        "request": facts.policy_input(),
    }


def new_decision_id() -> str:
    return uuid.uuid4().hex


def hides(resource: dict[str, Any]) -> bool:
    """Whether a refusal of this resource must look like a missing one (it names one)."""
    return (
        resource.get("type") in _NOUNS
        and bool(resource.get("id"))
        and not resource.get("creating")
        and not resource.get("listing")
    )


def in_default_experiment(resource: dict[str, Any]) -> bool:
    return str(resource.get("experiment_id", "")) == DEFAULT_EXPERIMENT_ID


def not_found(
    resource: dict[str, Any], decision_id: str, asked: str | None = None
) -> ErrorResponse:
    """Worded from what the request said (`asked`: a name it looked up), never from what the
    server found: an unreadable resource must read exactly like a missing one."""
    kind = str(resource.get("type"))
    named = str(asked or resource.get("id"))
    if kind == "experiment" and asked:
        message = f"Could not find experiment with name '{asked}'"
    elif kind in _MLFLOW_MISSING:
        message = _MLFLOW_MISSING[kind](named)
    else:
        message = f"{_NOUNS.get(kind, 'Resource')} '{named}' does not exist."
    return ErrorResponse(
        404,
        message,
        error_code="RESOURCE_DOES_NOT_EXIST",
        extra={"decision_id": decision_id},
    )


def default_experiment_refusal(decision_id: str, reasons: list[str]) -> ErrorResponse:
    return ErrorResponse(
        403,
        "The Default experiment (id 0) belongs to no project, so only administrators may use "
        "it. Choose an experiment of your project before logging: "
        'mlflow.set_experiment("my-experiment").',
        extra={"decision_id": decision_id, "reasons": reasons},
    )


def log_denial(decision_id: str | None, subject: Subject, action: Action, answer: Any) -> None:
    _logger.info(
        "denied decision_id=%s subject=%s endpoint=%s reasons=%s",
        decision_id,
        subject.name,
        action.endpoint,
        list(answer.reasons),
    )


def denial(decision: Decision, subject: Subject, action: Action, decision_id: str) -> ErrorResponse:
    reasons = list(decision.reasons) or ["no policy rule allows this request"]
    return ErrorResponse(
        403,
        "Permission denied: " + "; ".join(reasons),
        extra={"decision_id": decision_id, "reasons": reasons},
    )


def _cached(config: Any, kind: str, policy_input: dict[str, Any]) -> tuple[str | None, Any]:
    """The cache key of an answer (None: not reused) and the answer cached under it."""
    cache = config.decisions
    if cache is None:
        return None, None
    key = cache.key(policy_input, config.engine.reusable, kind)
    found = cache.get(key)
    if found is not None and not config.engine.still_running():
        return None, None  # OPA is down: ask it, and refuse
    return key, found


def _keep(config: Any, key: str | None, answer: Any) -> None:
    if config.decisions is not None:
        config.decisions.put(key, answer)


async def decide(config: Any, policy_input: dict[str, Any]) -> Any:
    """The decision, or the PolicyUnavailable that refuses the request (never cached)."""
    key, decision = _cached(config, DECISION, policy_input)
    if decision is None:
        try:
            decision = await config.engine.client.decide(policy_input)
        except PolicyUnavailable as exc:
            return exc
        _keep(config, key, decision)
    return decision


def decide_sync(config: Any, policy_input: dict[str, Any]) -> Any:
    key, decision = _cached(config, DECISION, policy_input)
    if decision is None:
        try:
            decision = config.engine.client.decide_sync(policy_input)
        except PolicyUnavailable as exc:
            return exc
        _keep(config, key, decision)
    return decision


async def decide_each(config: Any, inputs: list[dict[str, Any]]) -> list[Any]:
    return list(await asyncio.gather(*(decide(config, i) for i in inputs)))


def decide_each_sync(config: Any, inputs: list[dict[str, Any]]) -> list[Any]:
    return [decide_sync(config, i) for i in inputs]


async def readable(config: Any, filter_input: dict[str, Any]) -> frozenset[str]:
    """The ids among a listing's resources the subject may read (OPA's filter; raises
    PolicyUnavailable)."""
    key, ids = _cached(config, FILTER, filter_input)
    if ids is None:
        ids = frozenset(await config.engine.client.filter(filter_input))
        _keep(config, key, ids)
    return ids


def readable_sync(config: Any, filter_input: dict[str, Any]) -> frozenset[str]:
    key, ids = _cached(config, FILTER, filter_input)
    if ids is None:
        ids = frozenset(config.engine.client.filter_sync(filter_input))
        _keep(config, key, ids)
    return ids
