"""Listings that name the experiments to search: only the readable ones are left in the request.

Runs (and what else lives in an experiment) inherit their experiment's access, so narrowing
the experiment list before MLflow runs the query keeps MLflow's own paging exact. An
experiment that does not exist is dropped like an unreadable one, so the answer never tells
the two apart; if nothing readable is left, the front door answers an empty page itself.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from mlflow_secure.listings.core import JsonReply, ListingRequest, Rewrite
from mlflow_secure.resources import ResourceNotFound

EMPTY_PAGE = JsonReply(200, b"{}")


def readable_experiments(listing: ListingRequest, requested: Any) -> list[str] | None:
    """The requested experiment ids the caller may read, in request order (None: not a list)."""
    if not isinstance(requested, list):
        return None
    resources = []
    for experiment_id in dict.fromkeys(str(i) for i in requested):
        try:
            resources.append(listing.resolver.experiment(experiment_id))
        except ResourceNotFound:
            continue  # never readable; MLflow need not even look
    permitted = listing.allowed(resources)
    return [r["id"] for r in resources if r["id"] in permitted]


def _json_body_with(params: Mapping[str, Any], names: tuple[str, ...], ids: list[str]) -> bytes:
    body = {k: v for k, v in params.items() if k not in names}
    body[names[0]] = ids
    return json.dumps(body).encode()


def search_in_body(listing: ListingRequest) -> Rewrite | JsonReply | None:
    """`experiment_ids` (or `experimentIds`) in a JSON body: runs and logged-model search."""
    names = ("experiment_ids", "experimentIds")
    requested = next((listing.params[n] for n in names if n in listing.params), None)
    readable = readable_experiments(listing, requested)
    if readable is None:
        return None  # no experiment list: MLflow's handler rejects the request
    if not readable:
        return EMPTY_PAGE
    return Rewrite(body=_json_body_with(listing.params, names, readable))
