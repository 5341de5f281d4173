"""The route census against the installed MLflow: complete, well formed, and loud when not.

Run with `-s` to see the counts; they are also in the completeness assertion's message.
"""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

import pytest
from werkzeug.routing import Rule

from mlflow_secure.request.census import (
    ACCESS_LEVELS,
    ALIASES,
    COMPOSITE_IDS,
    PARSE_MODES,
    PUBLIC_ROUTES,
    RESOURCE_TYPES,
    ROUTES,
    Census,
    RouteSpec,
    UnmappedRoutes,
    live_methods,
    lookup,
    require_complete,
    route_key,
    take_census,
)

_PATH_VARS = re.compile(r"<(?:\w+:)?(\w+)>|\{(\w+)(?::\w+)?\}")
_ENDPOINT = re.compile(r"^mlflow\.[a-z_]+\.[a-z0-9_]+$")


@pytest.fixture(scope="module")
def flask_app() -> Any:
    from mlflow.server import app

    return app


@pytest.fixture(scope="module")
def fastapi_app(flask_app: Any) -> Any:
    from mlflow.server.fastapi_app import create_fastapi_app

    return create_fastapi_app(flask_app)


@pytest.fixture(scope="module")
def census(flask_app: Any, fastapi_app: Any) -> Census:
    return take_census(flask_app, fastapi_app, static_prefix="")


def _stand_in(rules: list[Rule]) -> Any:
    """Just enough of a Flask app for the census: a url_map to iterate."""
    return SimpleNamespace(url_map=SimpleNamespace(iter_rules=lambda: iter(rules)))


def _path_vars(rule: str) -> list[str]:
    return [a or b for a, b in _PATH_VARS.findall(rule)]


# ---------------------------------------------------------------- completeness


def test_census_is_complete_for_the_pinned_mlflow(census: Census) -> None:
    summary = census.summary()
    print(f"\nroute census: {summary}")
    assert census.unmapped == [], summary
    assert census.stale == [], summary
    assert census.flask_rules > 0, summary
    assert census.fastapi_routes > 0, summary
    require_complete(census)


def test_every_flask_pair_is_in_the_census(census: Census, flask_app: Any) -> None:
    pairs = {
        (rule.rule, method)
        for rule in flask_app.url_map.iter_rules()
        for method in live_methods(rule.methods, rule.provide_automatic_options)
    }
    assert pairs <= set(census.mapped)
    assert "HEAD" not in {method for _, method in census.mapped}


def test_ajax_twins_share_their_api_spec(census: Census) -> None:
    twins = 0
    for (rule, method), spec in census.mapped.items():
        if rule.startswith("/ajax-api/"):
            api = "/api/" + rule[len("/ajax-api/") :]
            if (api, method) in census.mapped:
                twins += 1
                assert census.mapped[(api, method)] is spec, (rule, method)
    assert twins > 100


# ---------------------------------------------------------------- the table is well formed


@pytest.mark.parametrize(("key", "spec"), sorted(ROUTES.items()), ids=lambda v: str(v))
def test_spec_fields_are_valid(key: tuple[str, str], spec: RouteSpec) -> None:
    rule, method = key
    assert route_key(rule, method) == key, "keys are stored folded"
    assert method in {"GET", "POST", "PUT", "PATCH", "DELETE"}
    assert _ENDPOINT.match(spec.endpoint), spec.endpoint
    assert spec.access in ACCESS_LEVELS
    assert spec.resource in RESOURCE_TYPES
    assert spec.parse in PARSE_MODES
    for name in spec.ids:
        assert name
        assert name == name.strip()
        assert not name.startswith("path:"), "path variables are named bare"
        assert not name.startswith("header:") or spec.parse == "fastapi"
    if spec.resource in COMPOSITE_IDS and spec.ids:
        assert spec.ids == COMPOSITE_IDS[spec.resource]
    elif len(spec.ids) > 1:
        aliases = {ALIASES.get(name, name) for name in spec.ids}
        either = "either" in spec.note or "exactly one" in spec.note
        assert len(aliases) == 1 or either, "several names, one value"
    for alias, canonical in ALIASES.items():
        if alias in spec.ids and canonical in spec.ids:
            assert spec.ids.index(canonical) < spec.ids.index(alias), "canonical name first"
    if spec.endpoint.split(".")[-1].startswith("search"):
        assert spec.listing, "searches filter their results"


def test_a_resource_named_in_the_path_is_always_in_ids() -> None:
    """The outermost path variable names what the request touches: never leave it unresolved."""
    for (rule, method), spec in ROUTES.items():
        variables = _path_vars(rule)
        if variables and spec.access != "public":
            assert variables[0] in spec.ids, (rule, method)


def test_public_is_only_health_and_ui_assets() -> None:
    expected = {
        ("/health", "GET"),
        ("/", "GET"),
        ("/static-files/<path:path>", "GET"),
        ("/build/<path:filename>", "GET"),
    }
    assert expected == PUBLIC_ROUTES


def test_one_endpoint_name_means_one_access_and_resource() -> None:
    seen: dict[str, tuple[str, str]] = {}
    for key, spec in ROUTES.items():
        previous = seen.setdefault(spec.endpoint, (spec.access, spec.resource))
        assert previous == (spec.access, spec.resource), (key, spec.endpoint)


def test_proto_ids_are_fields_of_the_request_message(flask_app: Any) -> None:
    """A misspelt id would make the resolver look at a parameter MLflow never reads."""
    from mlflow.protos.service_pb2 import GetMetricHistoryBulkInterval, SearchDatasets
    from mlflow.server.handlers import HANDLERS

    messages: dict[str, list[Any]] = {
        "serve_search_datasets": [SearchDatasets],
        "serve_get_metric_history_bulk_interval": [GetMetricHistoryBulkInterval],
    }
    for message, handler in HANDLERS.items():
        messages.setdefault(handler.__name__, []).append(message)
    checked = 0
    for rule in flask_app.url_map.iter_rules():
        view = flask_app.view_functions[rule.endpoint].__name__
        for method in live_methods(rule.methods, rule.provide_automatic_options):
            spec = ROUTES[route_key(rule.rule, method)]
            if spec.parse != "proto":
                continue
            assert view in messages, f"{method} {rule.rule} is proto-parsed but {view} is not"
            fields = {f.name for m in messages[view] for f in m.DESCRIPTOR.fields}
            for name in spec.ids:
                if name not in rule.arguments:
                    assert re.split(r"[.\[]", name)[0] in fields, (rule.rule, method, name)
                    checked += 1
    assert checked > 100


# ---------------------------------------------------------------- loud when incomplete


def test_a_made_up_flask_route_stops_start_up(flask_app: Any) -> None:
    extra = [
        Rule("/ajax-api/2.0/mlflow/runs/made-up", methods=["POST"]),
        Rule("/api/2.0/mlflow/runs/get", methods=["DELETE"]),
    ]
    census = take_census(_stand_in([*flask_app.url_map.iter_rules(), *extra]))
    assert census.unmapped == [
        ("/ajax-api/2.0/mlflow/runs/made-up", "POST"),
        ("/api/2.0/mlflow/runs/get", "DELETE"),
    ]
    with pytest.raises(UnmappedRoutes) as raised:
        require_complete(census)
    message = str(raised.value)
    assert "POST /ajax-api/2.0/mlflow/runs/made-up" in message
    assert "DELETE /api/2.0/mlflow/runs/get" in message
    assert message.index("made-up") < message.index("runs/get")  # sorted


def test_a_made_up_native_route_or_foreign_mount_is_unmapped(flask_app: Any) -> None:
    from mlflow.server.fastapi_app import create_fastapi_app
    from starlette.responses import PlainTextResponse

    app = create_fastapi_app(flask_app)
    app.add_api_route("/v1/made-up", lambda: "x", methods=["GET"])
    app.mount("/elsewhere", PlainTextResponse("x"))
    census = take_census(flask_app, app, static_prefix="")
    assert census.unmapped == [("/elsewhere", "MOUNT"), ("/v1/made-up", "GET")]
    with pytest.raises(UnmappedRoutes, match="/v1/made-up"):
        require_complete(census)


def test_the_plugin_api_is_reported_apart(flask_app: Any) -> None:
    own = Rule("/api/2.0/mlflow-secure/whoami", methods=["GET"])
    census = take_census(_stand_in([*flask_app.url_map.iter_rules(), own]))
    assert census.plugin == [("/api/2.0/mlflow-secure/whoami", "GET")]
    assert census.unmapped == []


def test_a_static_prefix_is_folded_away(flask_app: Any) -> None:
    """What `--static-prefix /mlflow` registers: every rule prefixed but Flask's own static."""
    prefixed = []
    for rule in flask_app.url_map.iter_rules():
        path = rule.rule if rule.endpoint == "static" else "/mlflow" + rule.rule
        copy = Rule(path, methods=rule.methods)
        copy.provide_automatic_options = rule.provide_automatic_options
        prefixed.append(copy)
    census = take_census(_stand_in(prefixed), static_prefix="/mlflow/")
    assert census.unmapped == []
    assert census.mapped[("/mlflow/", "GET")].access == "public"
    assert census.mapped[("/build/<path:filename>", "GET")].access == "public"


# ---------------------------------------------------------------- keys and lookups


def test_route_key_folds_twins_prefix_and_case() -> None:
    assert route_key("/ajax-api/2.0/mlflow/runs/get", "get") == ("/api/2.0/mlflow/runs/get", "GET")
    assert route_key("/p/ajax-api/3.0/x", "POST", "/p") == ("/api/3.0/x", "POST")
    assert route_key("/p/", "GET", "/p") == ("/", "GET")
    assert route_key("/p", "GET", "/p") == ("/", "GET")
    assert route_key("/prefixed/api/x", "GET", "/p") == ("/prefixed/api/x", "GET")
    assert route_key("/build/<path:filename>", "GET", "/p") == ("/build/<path:filename>", "GET")


def test_lookup_answers_head_with_get_and_denies_the_unknown() -> None:
    assert (
        lookup("/ajax-api/2.0/mlflow/runs/get", "HEAD")
        is ROUTES[("/api/2.0/mlflow/runs/get", "GET")]
    )
    assert lookup("/api/2.0/mlflow/runs/get", "OPTIONS") is None
    assert lookup("/api/2.0/mlflow/runs/nope", "GET") is None


def test_live_methods_drops_only_implied_head_and_automatic_options() -> None:
    assert live_methods({"GET", "HEAD", "OPTIONS"}, automatic_options=True) == {"GET"}
    assert live_methods({"POST", "OPTIONS"}, automatic_options=True) == {"POST"}
    assert live_methods({"HEAD"}) == {"HEAD"}
    assert live_methods({"OPTIONS"}, automatic_options=False) == {"OPTIONS"}


# ---------------------------------------------------------------- spot checks


def _spec(rule: str, method: str) -> RouteSpec:
    return ROUTES[(rule, method)]


def test_spot_checks_of_the_tracking_api() -> None:
    get_run = _spec("/api/2.0/mlflow/runs/get", "GET")
    assert (get_run.endpoint, get_run.access, get_run.resource) == (
        "mlflow.runs.get",
        "read",
        "run",
    )
    assert get_run.ids == ("run_id", "run_uuid")
    assert _spec("/api/2.0/mlflow/runs/delete", "POST").access == "delete"
    assert _spec("/api/2.0/mlflow/experiments/restore", "POST").access == "delete"
    search = _spec("/api/2.0/mlflow/experiments/search", "POST")
    assert (search.access, search.listing) == ("read", True)
    assert _spec("/api/2.0/mlflow/runs/search", "POST").ids == ("experiment_ids",)
    assert _spec("/api/2.0/mlflow/runs/set-tag", "POST").access == "write"
    finalize = _spec("/api/2.0/mlflow/logged-models/<model_id>", "PATCH")
    assert finalize.ids == ("model_id",), "the handler reads the body, not the path"
    assert "BODY" in finalize.note
    assert _spec("/api/2.0/mlflow/logged-models/<model_id>", "GET").ids == ("model_id",)


def test_spot_checks_of_artifacts_and_registry() -> None:
    mv_artifact = _spec("/model-versions/get-artifact", "GET")
    assert (mv_artifact.access, mv_artifact.resource) == ("read", "model_version")
    assert mv_artifact.ids == ("name", "version")
    assert mv_artifact.parse == "query"
    run_artifact = _spec("/get-artifact", "GET")
    assert (run_artifact.resource, run_artifact.ids) == ("run", ("run_id", "run_uuid"))
    upload = _spec("/api/2.0/mlflow/upload-artifact", "POST")
    assert (upload.access, upload.ids) == ("write", ("run_uuid",))
    for rule in (
        "/api/2.0/mlflow-artifacts/artifacts/<path:artifact_path>",
        "/api/2.0/mlflow-artifacts/artifacts/{artifact_path:path}",
    ):
        assert _spec(rule, "GET").ids == ("artifact_path",)
        assert _spec(rule, "PUT").access == "write"
    assert _spec("/api/2.0/mlflow-artifacts/artifacts", "GET").ids == ("path",)
    assert _spec("/api/2.0/mlflow/model-versions/transition-stage", "POST").access == "manage"


def test_spot_checks_of_native_and_server_routes() -> None:
    otlp = _spec("/v1/traces", "POST")
    assert (otlp.access, otlp.resource) == ("write", "experiment")
    assert otlp.ids == ("header:x-mlflow-experiment-id",)
    graphql = _spec("/graphql", "POST")
    assert (graphql.access, graphql.resource, graphql.listing) == ("read", "server", True)
    assert _spec("/version", "GET").access == "read"
    assert _spec("/api/3.0/mlflow/server-info", "GET").access == "read"
    assert _spec("/api/3.0/jobs/", "POST").access == "admin"
    assert _spec("/api/3.0/mlflow/assistant/message", "POST").access == "admin"
    assert _spec("/api/2.0/mlflow/webhooks", "POST").access == "admin"
    assert _spec("/api/3.0/mlflow/workspaces", "POST").access == "admin"
    assert _spec("/api/3.0/mlflow/gateway/secrets/create", "POST").access == "admin"
    assert _spec("/gateway/proxy/{endpoint_name}/{path:path}", "POST").ids == ("endpoint_name",)
    assert _spec("/api/2.0/mlflow/unified-traces", "GET").access == "admin"
