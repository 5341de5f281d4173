"""Client-supplied URIs end to end: webhook URLs, model-version sources, artifact locations.

The server runs a copy of the bundled policies with an operator override that allows https
(webhooks need it): internal, loopback, link-local and metadata addresses stay refused in
every spelling, and a refused request changes nothing.
"""

import json
import shutil
from pathlib import Path

import pytest

from tests.support import servers

pytestmark = pytest.mark.e2e

REGO = Path(__file__).resolve().parents[2] / "rego"
EVENTS = [{"entity": "MODEL_VERSION", "action": "CREATED"}]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("uris")
    policies = root / "policies"
    shutil.copytree(REGO, policies)
    overrides = policies / "mlflow" / "authz" / "overrides"
    overrides.mkdir()
    (overrides / "data.json").write_text(
        json.dumps({"allowed_uri_schemes": ["mlflow-artifacts", "s3", "runs", "models", "https"]})
    )
    started = servers.start(root, env={"MLFLOW_SECURE_POLICY_DIR": str(policies)})
    yield started
    started.interrupt()


@pytest.mark.parametrize(
    "url",
    [
        "https://169.254.169.254/latest/meta-data/",
        "https://[::ffff:169.254.169.254]/",
        "https://10.1.2.3/hook",
        "https://localhost:8443/hook",
        "https://metadata.google.internal/",
        "https://2130706433/",
        "https://0x7f.1/",
        "https://intranet/hook",  # a single-label (internal) name
        "https://good@127.0.0.1/",
        "http://hooks.example.com/hook",  # http stays off
        "file:///etc/passwd",
    ],
)
def test_webhooks_to_internal_addresses_are_refused(server, url):
    admin = server.admin_key()
    response = server.api(
        "POST",
        "/api/2.0/mlflow/webhooks",
        admin,
        json={"name": "hook", "url": url, "events": EVENTS},
    )
    assert response.status_code == 403, (url, response.text)
    assert response.json()["reasons"], response.text
    listed = server.api("GET", "/api/2.0/mlflow/webhooks", admin).json()
    assert all(hook["url"] != url for hook in listed.get("webhooks", []))


def test_a_refused_webhook_update_changes_nothing(server):
    """MLflow itself resolves a webhook's host name before creating it, which this offline
    machine cannot do, so the update is tried on a webhook id that does not exist: the
    policy refuses the URL before MLflow is asked anything (no 404 leaks through)."""
    moved = server.api(
        "PATCH",
        "/api/2.0/mlflow/webhooks/does-not-exist",
        server.admin_key(),
        json={"url": "https://169.254.169.254/"},
    )
    assert moved.status_code == 403, moved.text
    assert "169.254.169.254" in moved.json()["reasons"][0]


@pytest.mark.parametrize(
    "source", ["file:///etc/passwd", "/etc/passwd", "s3://bucket/../../x", "dbfs:/mnt/x"]
)
def test_model_version_sources_are_constrained(server, source):
    admin = server.admin_key()
    server.api("POST", "/api/2.0/mlflow/registered-models/create", admin, json={"name": "m"})
    response = server.api(
        "POST", "/api/2.0/mlflow/model-versions/create", admin, json={"name": "m", "source": source}
    )
    assert response.status_code == 403, (source, response.text)
