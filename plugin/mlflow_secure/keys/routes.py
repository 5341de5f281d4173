"""The key service's routes (under /api/2.0/mlflow-secure/) and the fields each accepts.

One table serves the handlers (api.py) and the front door's description of a request for
the policy (resources.py), so both read a request with the same strict parser.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlflow_secure.admin.parsing import FLAG, NAME, Field

ARTEFACT = {
    "run_id": Field(max_length=64),
    "logged_model_id": Field(max_length=64),
    "trace_id": Field(max_length=64),
    "path": Field(required=True, max_length=1000),
}
PROJECT = {"project": Field(required=True, max_length=256)}


@dataclass(frozen=True)
class KeyRoute:
    path: str  # relative to the API root
    method: str
    endpoint: str  # the policy's name for it, under "mlflow-secure."
    access: str
    fields: dict[str, Field]


ROUTES: tuple[KeyRoute, ...] = (
    # always: a data key even where the classification does not require encryption
    KeyRoute(
        "keys/data-keys/create",
        "POST",
        "artifact_keys.create",
        "write",
        {**ARTEFACT, "always": FLAG},
    ),
    KeyRoute(
        "keys/data-keys/unwrap",
        "POST",
        "artifact_keys.unwrap",
        "read",
        {"key_id": NAME, **ARTEFACT},
    ),
    KeyRoute("keys/projects/get", "GET", "project_keys.get", "read", PROJECT),
    KeyRoute("keys/projects/rotate", "POST", "project_keys.rotate", "manage", PROJECT),
    KeyRoute(
        "keys/projects/retire",
        "POST",
        "project_keys.retire",
        "manage",
        {**PROJECT, "version": Field(kind="int", required=True, minimum=1, maximum=2**31 - 1)},
    ),
    KeyRoute(
        "keys/projects/destroy",
        "POST",
        "project_keys.destroy",
        "admin",
        {**PROJECT, "confirm": Field(required=True, max_length=256)},
    ),
)

BY_PATH = {(route.method, route.path): route for route in ROUTES}
