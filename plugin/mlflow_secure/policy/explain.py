"""`mlflow-secure policy explain`: what the policy decides for a subject, endpoint and resource.

Policy authors see exactly the decision and reasons the server would get, without a running
server: the subject is read from the identity store as the server reads it, the access level
comes from the route census, and the policies are evaluated with `opa eval` on the same
directory the server loads.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from mlflow_secure.identity import store
from mlflow_secure.identity.subject import ALL_SCOPES, Subject
from mlflow_secure.request.census import ROUTES


class ExplainError(ValueError):
    pass


def access_for(endpoint: str) -> str:
    """The census's access level for an MLflow endpoint name (plugin endpoints: give --access)."""
    levels = {spec.access for spec in ROUTES.values() if spec.endpoint == endpoint}
    if not levels:
        raise ExplainError(f"no route in the census is named {endpoint!r}; give --access")
    if len(levels) > 1:
        raise ExplainError(
            f"{endpoint!r} has several access levels {sorted(levels)}; give --access"
        )
    return levels.pop()


def subject_input(database_uri: str, name: str, scopes: tuple[str, ...]) -> dict[str, Any]:
    engine = store.open_engine(database_uri)
    try:
        with store.session_factory(engine)() as session:
            try:
                principal = store.get_principal(session, name)
            except store.NotFound as exc:
                raise ExplainError(str(exc)) from None
            identity = store.load_identity(session, principal.id)
    finally:
        engine.dispose()
    return Subject(identity, "api_key", scopes=scopes or ALL_SCOPES).policy_input()


def evaluate(opa_binary: Path, policy_dir: Path, policy_input: dict[str, Any]) -> dict[str, Any]:
    result = subprocess.run(
        [
            str(opa_binary),
            "eval",
            "--format",
            "json",
            "--stdin-input",
            "--ignore",
            "*_test.rego",
            "--data",
            str(policy_dir),
            "data.mlflow.authz.decision",
        ],
        input=json.dumps(policy_input),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise ExplainError(f"opa eval failed:\n{(result.stderr or result.stdout).strip()}")
    outcome = json.loads(result.stdout).get("result") or []
    if not outcome:
        return {"allow": False, "reasons": ["the policy defines no decision for this input"]}
    return outcome[0]["expressions"][0]["value"]
