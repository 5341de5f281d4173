"""Which live route a request will reach, matched exactly as the servers will match it.

FastAPI-native routes are tried first (they are included before the catch-all Flask mount,
so they win there too), then Werkzeug's own matcher over Flask's url_map. Matching with the
frameworks' own code, rather than re-parsing paths, is what keeps a crafted path from being
classified as one route here and served by another.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from starlette.routing import Mount, compile_path
from werkzeug.exceptions import HTTPException


@dataclass(frozen=True)
class MatchedRoute:
    rule: str  # the rule as the framework spells it, e.g. "/api/2.0/mlflow/runs/get"
    method: str
    path_params: dict[str, Any] = field(default_factory=dict)
    path: str = ""  # the path MLflow is handed: the rule with its variables filled in


_VARIABLE = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>|\{([^{}:]+)(?::[^{}]+)?\}")


def canonical_path(rule: str, path: str, params: dict[str, Any]) -> str:
    """The one spelling of the path the router matched. Werkzeug merges repeated slashes when
    it matches (`//api/...` reaches `/api/...`); MLflow is handed the merged spelling, so
    every step keyed on the path (authorship, the audit trail) sees what was routed."""
    if "//" not in path:
        return path
    return _VARIABLE.sub(lambda m: str(params[m.group(1) or m.group(2)]), rule)


def _native_routes(fastapi_app: Any) -> list[tuple[str, Any, frozenset[str]]]:
    """(path, compiled regex, methods) of every native route, in routing order.

    FastAPI >= 0.165 keeps included routers lazy (their `matches` reveals no route), so the
    routes are flattened the way FastAPI itself walks them, and matched with Starlette's own
    path compiler.
    """
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # older FastAPI: routers are flattened already
        contexts = fastapi_app.routes
    else:
        contexts = iter_route_contexts(fastapi_app.routes)
    routes = []
    for context in contexts:
        original = getattr(context, "original_route", context)
        if isinstance(original, Mount) or not getattr(context, "methods", None):
            continue  # the Flask catch-all (its routes are matched through url_map)
        regex, _, convertors = compile_path(context.path)
        routes.append((context.path, (regex, convertors), frozenset(context.methods)))
    return routes


class RouteMatcher:
    def __init__(self, flask_app: Any, fastapi_app: Any | None = None) -> None:
        self._adapter = flask_app.url_map.bind("localhost")
        self._native = _native_routes(fastapi_app) if fastapi_app is not None else []

    def match(self, method: str, path: str) -> MatchedRoute | None:
        """None: no route serves this method and path (MLflow would answer 404/405)."""
        for rule, (regex, convertors), methods in self._native:
            found = regex.match(path)
            if found and (method in methods or (method == "HEAD" and "GET" in methods)):
                params = {
                    name: convertors[name].convert(value)
                    for name, value in found.groupdict().items()
                }
                return MatchedRoute(rule, method, params, canonical_path(rule, path, params))
        # HEAD and OPTIONS are answered by Flask for every GET rule; classify them as the GET.
        lookup = "GET" if method in {"HEAD", "OPTIONS"} else method
        try:
            rule, params = self._adapter.match(path, method=lookup, return_rule=True)
        except HTTPException:
            return None
        params = dict(params)
        return MatchedRoute(rule.rule, method, params, canonical_path(rule.rule, path, params))
