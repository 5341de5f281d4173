"""Listings narrowed to what the caller may read, with MLflow's pagination kept honest.

Each narrowed endpoint has one function here (see `core` for the three ways a listing is
narrowed and the one-filter-call rule). A listing endpoint missing from `NARROWERS` reaches
the policy with `"filtered": false`, which leaves it to administrators and auditors.
"""

from __future__ import annotations

from collections.abc import Callable

from mlflow_secure.request.listings import by_experiment, experiments, graphql, registry
from mlflow_secure.request.listings.core import (
    JsonReply,
    ListingError,
    ListingRequest,
    Rewrite,
    mlflow_error,
    uniform,
)

Narrower = Callable[[ListingRequest], "Rewrite | JsonReply | None"]


def _uniform(resource_type: str) -> Narrower:
    return lambda listing: uniform(listing, resource_type)


NARROWERS: dict[str, Narrower] = {
    "mlflow.experiments.search": experiments.search,
    "mlflow.runs.search": by_experiment.search_in_body,
    "mlflow.graphql.query": graphql.narrow,
    "mlflow.logged_models.search": by_experiment.search_in_body,
    # MLflow's refusals of no or too many ids come before (request/mlflow_refusals.py)
    "mlflow.experiments.search_datasets": by_experiment.search_in_body,
    "mlflow.traces.search_v2": by_experiment.search_in_query,
    "mlflow.traces.search": by_experiment.search_trace_locations,
    "mlflow.traces.batch_get": by_experiment.batch_get_traces,
    "mlflow.traces.batch_get_infos": by_experiment.batch_get_traces,
    "mlflow.datasets.search": by_experiment.search_datasets,
    # Items with no attributes of their own: one question for the whole page (proto JSON
    # answers, so an empty page is `{}`).
    "mlflow.webhooks.list": _uniform("webhook"),
    "mlflow.gateway.list_secrets": _uniform("gateway"),
    "mlflow.gateway.list_endpoints": _uniform("gateway"),
    "mlflow.gateway.list_model_definitions": _uniform("gateway"),
    "mlflow.gateway.list_guardrails": _uniform("gateway"),
    "mlflow.gateway.list_budgets": _uniform("gateway"),
    "mlflow.gateway.list_budget_windows": _uniform("gateway"),
    "mlflow.registered_models.search": registry.search_registered_models,
    "mlflow.model_versions.search": registry.search_model_versions,
}

__all__ = [
    "NARROWERS",
    "JsonReply",
    "ListingError",
    "ListingRequest",
    "Rewrite",
    "mlflow_error",
    "narrow",
    "narrows",
]


def narrows(endpoint: str) -> bool:
    return endpoint in NARROWERS


def narrow(endpoint: str, listing: ListingRequest) -> Rewrite | JsonReply | None:
    return NARROWERS[endpoint](listing)
