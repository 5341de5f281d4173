"""``GET /api/2.0/mlflow-secure/audit/events``: auditors query the trail over HTTP.

Who may read the trail is the policy's decision (auditors and administrators), taken by the
front door before this handler runs; the handler only validates its query strictly (unknown
or repeated parameters are refused, so nothing it reads differs from what the policy saw) and
pages through the events in chain order. Events are returned exactly as stored, hashes
included, so a client can check them against an export.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from flask import Blueprint, Flask, Response, request
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from mlflow_secure.audit import store
from mlflow_secure.audit.events import DECISIONS, parse_time

API_PATH = "/api/2.0/mlflow-secure/audit/events"
DEFAULT_MAX_RESULTS = 100
MAX_FILTER_LENGTH = 256
PARAMETERS = ("subject", "resource", "decision", "since", "until", "max_results", "page_token")


class BadParameter(ValueError):
    """A query the handler refuses; the message names the parameter, never echoes a value."""


def _int(value: str, name: str, low: int, high: int) -> int:
    if (
        not (value.isascii() and value.isdigit())
        or len(value) > 19
        or not low <= int(value) <= high
    ):
        raise BadParameter(f"{name} must be a whole number between {low} and {high}")
    return int(value)


def parse_query(args: Mapping[str, list[str]]) -> dict[str, Any]:
    """Query parameters (name → every value given) as `store.query_events` arguments."""
    unknown = sorted(set(args) - set(PARAMETERS))
    if unknown:
        raise BadParameter(
            f"unknown query parameter(s) {unknown}; accepted: {', '.join(PARAMETERS)}"
        )
    given: dict[str, str] = {}
    for name, values in args.items():
        if len(values) != 1:
            raise BadParameter(f"query parameter {name!r} is repeated")
        given[name] = values[0]
    query: dict[str, Any] = {"max_results": DEFAULT_MAX_RESULTS}
    for name in ("subject", "resource"):
        if name in given:
            if not given[name] or len(given[name]) > MAX_FILTER_LENGTH:
                raise BadParameter(f"{name} must be 1 to {MAX_FILTER_LENGTH} characters")
            query[name] = given[name]
    if "decision" in given:
        if given["decision"] not in DECISIONS:
            raise BadParameter(f"decision must be one of {', '.join(DECISIONS)}")
        query["decision"] = given["decision"]
    for name in ("since", "until"):
        if name in given:
            try:
                query[name] = parse_time(given[name])
            except ValueError:
                raise BadParameter(
                    f"{name} must be an ISO-8601 date or time, like 2025-01-31T12:00:00Z"
                ) from None
    if "since" in query and "until" in query and query["since"] > query["until"]:
        raise BadParameter("since must not be later than until")
    if "max_results" in given:
        limit = store.MAX_RESULTS_LIMIT
        query["max_results"] = _int(given["max_results"], "max_results", 1, limit)
    if "page_token" in given:
        query["after_seq"] = _int(given["page_token"], "page_token", 0, 2**63 - 1)
    return query


def _json_response(status: int, payload: dict[str, Any]) -> Response:
    response = Response(json.dumps(payload), status=status, mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    return response


def _error(status: int, code: str, message: str) -> Response:
    return _json_response(status, {"error_code": code, "message": message})


def _events_view(sessions: sessionmaker[Session]) -> Callable[[], Response]:
    def audit_events() -> Response:
        try:
            query = parse_query({name: request.args.getlist(name) for name in request.args})
        except BadParameter as exc:
            return _error(400, "INVALID_PARAMETER_VALUE", str(exc))
        try:
            with sessions() as session:
                events, last_seq = store.query_events(session, **query)
        except SQLAlchemyError:
            return _error(503, "TEMPORARILY_UNAVAILABLE", "the audit store is unavailable")
        token = str(last_seq) if last_seq is not None else None
        return _json_response(200, {"events": events, "next_page_token": token})

    return audit_events


def register_audit_api(
    flask_app: Flask,
    sessions: sessionmaker[Session],
    url_prefix_fn: Callable[[str], str] = lambda path: path,
) -> None:
    """Mount the audit API on `flask_app`; `url_prefix_fn` is MLflow's `_add_static_prefix`.

    `sessions` must reach the database the audit writer appends to.
    """
    blueprint = Blueprint("mlflow_secure_audit", __name__)
    blueprint.add_url_rule(
        url_prefix_fn(API_PATH),
        endpoint="audit_events",
        view_func=_events_view(sessions),
        methods=["GET"],
    )
    flask_app.register_blueprint(blueprint)
