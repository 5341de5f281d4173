"""The Compose stack comes up and the secure app guards MLflow's API from the first request.

Skipped (see conftest.py) where no Docker engine answers.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest

STARTUP_TIMEOUT_S = 300.0


def _request(
    url: str, method: str = "GET", body: dict[str, Any] | None = None
) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.fixture(scope="session")
def mlflow_url(docker_ip: str, docker_services: Any) -> str:
    port = docker_services.port_for("mlflow", 5000)
    url = f"http://{docker_ip}:{port}"

    def healthy() -> bool:
        try:
            return _request(f"{url}/health")[0] == 200
        except OSError:
            return False

    docker_services.wait_until_responsive(check=healthy, timeout=STARTUP_TIMEOUT_S, pause=1.0)
    return url


def test_health_answers_200(mlflow_url: str) -> None:
    status, _ = _request(f"{mlflow_url}/health")
    assert status == 200


def test_api_without_credentials_is_unauthenticated(mlflow_url: str) -> None:
    status, body = _request(
        f"{mlflow_url}/api/2.0/mlflow/experiments/create",
        method="POST",
        body={"name": "must-not-be-created"},
    )
    assert status == 401, body
    payload = json.loads(body)
    assert payload["error_code"] == "UNAUTHENTICATED"
