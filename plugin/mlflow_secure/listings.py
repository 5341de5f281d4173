"""Listings narrowed to what the caller may read, with MLflow's pagination kept honest.

Two listings are narrowed today, the ones the MLflow UI and client depend on:

* runs search names its experiments: the readable subset is pushed into the request itself
  (runs inherit their experiment's access), so MLflow's own paging is exact;
* experiments search is run here against MLflow's store, each store page narrowed by ONE
  batched `data.mlflow.authz.filter` call, until the page the client asked for is full. The
  page token names a position in the unfiltered order (the store's token plus an offset), so
  pages never skip or repeat an item, and no total count is revealed.

Every other listing stays with administrators and auditors (the policy sees
`"filtered": false`).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.protos.service_pb2 import SearchExperiments
from mlflow.utils.proto_json_utils import message_to_json, parse_dict

from mlflow_secure.resources import ResourceNotFound, ResourceResolver

FILTERED = {"mlflow.runs.search", "mlflow.experiments.search"}
STORE_PAGE = 1000
DEFAULT_MAX_RESULTS = 1000
MAX_RESULTS_LIMIT = 50_000

AllowedIds = Callable[[list[dict[str, Any]]], set[str]]


class ListingError(ValueError):
    """A malformed listing request: answered with 400."""


def narrows(endpoint: str) -> bool:
    return endpoint in FILTERED


# ------------------------------------------------------------------------- runs search


def readable_experiments(
    params: Mapping[str, Any], resolver: ResourceResolver, allowed: AllowedIds
) -> list[str] | None:
    """The requested experiment ids the caller may read, in request order (None: not a list)."""
    requested = params.get("experiment_ids", params.get("experimentIds"))
    if not isinstance(requested, list):
        return None
    resources = []
    for experiment_id in dict.fromkeys(str(i) for i in requested):
        try:
            resources.append(resolver.experiment(experiment_id))
        except ResourceNotFound:
            continue  # never readable; MLflow need not even look
    permitted = allowed(resources) if resources else set()
    return [r["id"] for r in resources if r["id"] in permitted]


def narrowed_runs_body(params: Mapping[str, Any], experiment_ids: list[str]) -> bytes:
    body = {k: v for k, v in params.items() if k not in {"experiment_ids", "experimentIds"}}
    body["experiment_ids"] = experiment_ids
    return json.dumps(body).encode()


# ------------------------------------------------------------------------- experiments search


def _encode_token(store_token: str | bytes | None, offset: int) -> str:
    if isinstance(store_token, bytes):  # MLflow's SQL store hands back base64 bytes
        store_token = store_token.decode("ascii")
    raw = json.dumps({"t": store_token, "o": offset}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode_token(token: str) -> tuple[str | None, int]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        store_token, offset = data["t"], int(data["o"])
    except (ValueError, KeyError, TypeError):
        raise ListingError("Invalid page token.") from None
    if (store_token is not None and not isinstance(store_token, str)) or offset < 0:
        raise ListingError("Invalid page token.")
    return store_token, offset


def _search_request(params: Mapping[str, Any]) -> Any:
    message = SearchExperiments()
    fields = {k: v for k, v in params.items() if k in _SEARCH_FIELDS}
    if isinstance(fields.get("order_by"), str):
        fields["order_by"] = [fields["order_by"]]
    try:
        parse_dict(fields, message)
    except Exception as exc:  # protobuf's ParseError and friends
        raise ListingError(f"Invalid experiments search request: {exc}") from None
    return message


_SEARCH_FIELDS = {"view_type", "max_results", "order_by", "filter", "page_token"}


def search_experiments(params: Mapping[str, Any], store: Any, allowed: AllowedIds) -> bytes:
    """The JSON MLflow's handler would return, holding only readable experiments."""
    request = _search_request(params)
    max_results = request.max_results or DEFAULT_MAX_RESULTS
    if not 0 < max_results <= MAX_RESULTS_LIMIT:
        raise ListingError(f"max_results must be between 1 and {MAX_RESULTS_LIMIT}.")
    store_token, offset = _decode_token(request.page_token) if request.page_token else (None, 0)
    found: list[Any] = []
    next_token = None
    while True:
        page = store.search_experiments(
            view_type=request.view_type,
            max_results=STORE_PAGE,
            order_by=list(request.order_by),
            filter_string=request.filter,
            page_token=store_token,
        )
        page_items = list(page)
        items = page_items[offset:]
        readable = allowed([_as_resource(e) for e in items]) if items else set()
        for index, experiment in enumerate(items):
            if experiment.experiment_id in readable:
                found.append(experiment)
                if len(found) == max_results:
                    more_here = offset + index + 1 < len(page_items)
                    if more_here:
                        next_token = _encode_token(store_token, offset + index + 1)
                    elif page.token:
                        next_token = _encode_token(page.token, 0)
                    break
        if next_token is not None or len(found) == max_results or not page.token:
            break
        store_token, offset = page.token, 0
    response = SearchExperiments.Response()
    response.experiments.extend(e.to_proto() for e in found)
    if next_token:
        response.next_page_token = next_token
    return message_to_json(response).encode()


def _as_resource(experiment: Any) -> dict[str, Any]:
    tags = experiment.tags or {}
    return {
        "type": "experiment",
        "id": experiment.experiment_id,
        "experiment_id": experiment.experiment_id,
        "project": tags.get("mlflow.secure.project") or None,
        "classification": tags.get("mlflow.secure.classification") or None,
        "owner": tags.get("mlflow.user") or None,
        "tags": {k: v for k, v in tags.items() if k.startswith("mlflow.secure.")},
    }


class JsonReply:
    """A response the front door sends itself (shaped like ErrorResponse for the senders)."""

    def __init__(self, status: int, payload: bytes) -> None:
        self.status = status
        self._payload = payload

    def body(self) -> bytes:
        return self._payload

    def header_list(self) -> list[tuple[str, str]]:
        return [
            ("content-type", "application/json"),
            ("content-length", str(len(self._payload))),
            ("cache-control", "no-store"),
            ("x-content-type-options", "nosniff"),
        ]


def mlflow_error(exc: MlflowException) -> JsonReply:
    return JsonReply(exc.get_http_status_code(), exc.serialize_as_json().encode())
