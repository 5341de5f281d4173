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
from urllib.parse import urlencode

from mlflow_secure.request.listings.core import JsonReply, ListingRequest, Rewrite
from mlflow_secure.request.lookups import ResourceNotFound

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
    # ids the front door set itself (`header:...`) are not the client's to send on
    body = {k: v for k, v in params.items() if k not in names and ":" not in k}
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


def search_in_query(listing: ListingRequest) -> Rewrite | JsonReply | None:
    """`experiment_ids` repeated in the query string: v2 trace search (GET)."""
    requested = listing.params.get("experiment_ids")
    readable = readable_experiments(listing, requested)
    if readable is None:
        return None  # MLflow's handler rejects a search without experiments
    if not readable:
        return EMPTY_PAGE
    return Rewrite(query=_query_with(listing.params, "experiment_ids", readable))


def _query_with(params: Mapping[str, Any], name: str, values: list[str]) -> bytes:
    rebuilt = {k: v for k, v in params.items() if k != name and ":" not in k}
    rebuilt[name] = values
    return urlencode(rebuilt, doseq=True).encode("latin-1")


def search_trace_locations(listing: ListingRequest) -> Rewrite | JsonReply | None:
    """v3 trace search names `locations`: only readable experiment locations are kept (other
    location kinds name no experiment this server governs, so they are dropped)."""
    locations = listing.params.get("locations")
    if not isinstance(locations, list):
        return None  # required by MLflow's handler
    ids = [
        location["mlflow_experiment"].get("experiment_id")
        if isinstance(location, dict) and isinstance(location.get("mlflow_experiment"), dict)
        else None
        for location in locations
    ]
    readable = set(readable_experiments(listing, [i for i in ids if i not in (None, "")]) or ())
    kept = [
        loc for loc, i in zip(locations, ids, strict=True) if i is not None and str(i) in readable
    ]
    if not kept:
        return EMPTY_PAGE
    body = {k: v for k, v in listing.params.items() if k != "locations" and ":" not in k}
    body["locations"] = kept
    return Rewrite(body=json.dumps(body).encode())


def search_datasets(listing: ListingRequest) -> Rewrite | JsonReply | None:
    """Evaluation datasets: `experiment_ids` is optional, and without it MLflow searches every
    dataset, so the readable experiments are always put in (a dataset is listed when one of
    the experiments it is linked to is readable)."""
    names = ("experiment_ids", "experimentIds")
    requested = next((listing.params[n] for n in names if n in listing.params), None)
    if requested is None or requested == []:
        readable = all_readable_experiments(listing)
    else:
        readable = readable_experiments(listing, requested)
        if readable is None:
            return None
    if not readable:
        return EMPTY_PAGE
    if listing.method == "GET":
        return Rewrite(query=_query_with(listing.params, "experiment_ids", readable))
    return Rewrite(body=_json_body_with(listing.params, names, readable))


def all_readable_experiments(listing: ListingRequest) -> list[str]:
    from mlflow_secure.request.listings.experiments import readable_ids

    return readable_ids(listing)


def batch_get_traces(listing: ListingRequest) -> Rewrite | JsonReply | None:
    """A batch of trace ids: unreadable and missing traces are dropped alike, so the answer
    is the one MLflow gives for ids that do not exist."""
    names = ("trace_ids", "traceIds")
    requested = next((listing.params[n] for n in names if n in listing.params), None)
    if not isinstance(requested, list):
        return None  # required by MLflow's handler
    resources = []
    for trace_id in dict.fromkeys(str(i) for i in requested):
        try:
            resources.append(listing.resolver.trace(trace_id))
        except ResourceNotFound:
            continue
    permitted = listing.allowed(resources)
    readable = [r["id"] for r in resources if r["id"] in permitted]
    if not readable:
        return EMPTY_PAGE
    if listing.method == "GET":
        return Rewrite(query=_query_with(listing.params, "trace_ids", readable))
    return Rewrite(body=_json_body_with(listing.params, names, readable))
