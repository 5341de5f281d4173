"""Put an encrypted artefact into a run over HTTP, as the client plugin would."""

from __future__ import annotations

import base64
import io

from mlflow_secure.crypto import artefact
from mlflow_secure.crypto.header import Context


def upload_encrypted(actor, experiment_id: str, run_id: str, path: str, data: bytes) -> dict:
    """Get a data key from the key service, encrypt `data`, PUT it through the proxy."""
    issued = actor.call(
        "POST",
        "/2.0/mlflow-secure/keys/data-keys/create",
        json={"run_id": run_id, "path": path, "always": True},
    )
    assert issued.status_code == 200, issued.text
    key = issued.json()
    sealed = io.BytesIO()
    artefact.encrypt_stream(
        io.BytesIO(data),
        sealed,
        base64.b64decode(key["data_key"]),
        key["key_id"],
        key["key_version"],
        Context(key["project"], key["artefact"]),
    )
    put = actor.call(
        "PUT",
        f"/2.0/mlflow-artifacts/artifacts/{experiment_id}/{run_id}/artifacts/{path}",
        content=sealed.getvalue(),
    )
    assert put.status_code == 200, put.text
    return key
