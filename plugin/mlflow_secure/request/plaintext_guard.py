"""Before forwarding: no plaintext file into an artefact that must be encrypted.

A client without the plugin would upload an encrypted project's files as they are; the
server refuses such an upload before MLflow stores a byte, naming the fix. For the routes
that carry the file (the proxied PUT, `upload-artifact`), the first bytes of the body must
be the encrypted format's header naming a data key that the key service issued for exactly
this artefact: a plaintext file, or a ciphertext copied from another artefact, is refused.
The bytes read to check are handed to MLflow unchanged, ahead of the rest of the stream.
Routes that move the file past the server (multipart uploads, presigned upload URLs) need the
client to declare the encrypting plugin (`X-MLflow-Secure-Encryption: mlse-v1`): the
server cannot see those bytes, so it refuses clients that would send plaintext.
"""

from __future__ import annotations

import io
import re
from typing import Any

from mlflow_secure.crypto import artefact
from mlflow_secure.crypto.header import MAX_HEADER_SIZE
from mlflow_secure.errors import ErrorResponse
from mlflow_secure.keys import service
from mlflow_secure.keys.requirement import encryption_required

CAPABILITY = "mlse-v1"
FIX = (
    "install mlflow-secure on the client (pip install mlflow-secure), which encrypts "
    "artefacts before upload, and upload again; nothing was stored"
)
# the routes that carry the file's bytes, and those that send them elsewhere
CARRIES_FILE = frozenset({"mlflow.artifacts.proxy_upload", "mlflow.artifacts.upload"})
BYPASSES_SERVER = frozenset(
    {
        "mlflow.artifacts.proxy_multipart_create",
        "mlflow.artifacts.proxy_multipart_complete",
        "mlflow.artifacts.presigned_upload_url",
    }
)
_OWNED = re.compile(
    r"(?:^|/)(?:(?P<run>[0-9a-f]{32})|models/(?P<model>m-[0-9a-f]{32})"
    r"|traces/(?P<trace>tr-[0-9a-f]{32}))/artifacts/(?P<path>.+)$"
)


def guarded(endpoint: str, resource: dict[str, Any], encrypt_from: str) -> bool:
    """Whether this request uploads into an artefact that must be encrypted."""
    if endpoint not in CARRIES_FILE and endpoint not in BYPASSES_SERVER:
        return False
    return encryption_required(resource.get("classification"), encrypt_from)


def identity_of(endpoint: str, resource: dict[str, Any], params: dict[str, Any]) -> str | None:
    """The key service's name of the file uploaded (None: not a file of a run or model)."""
    if endpoint == "mlflow.artifacts.upload":
        run, path = resource.get("id"), params.get("path")
        if isinstance(run, str) and isinstance(path, str) and path:
            return f"runs/{run}/artifacts/{path.strip('/')}"
        return None
    matched = _OWNED.search(str(resource.get("id") or ""))
    if matched is None:
        return None
    if matched["run"]:
        return f"runs/{matched['run']}/artifacts/{matched['path']}"
    if matched["trace"]:
        return f"traces/{matched['trace']}/artifacts/{matched['path']}"
    return f"models/{matched['model']}/artifacts/{matched['path']}"


def _refusal(what: str) -> ErrorResponse:
    return ErrorResponse(400, f"{what}: artefacts of this experiment must be encrypted; {FIX}")


def check_declared(capability: str | None) -> ErrorResponse | None:
    if capability == CAPABILITY:
        return None
    return _refusal("this client does not encrypt artefacts")


def check_prefix(
    prefix: bytes, identity: str | None, experiment_id: object, sessions: Any
) -> ErrorResponse | None:
    """None when `prefix` (the body's first bytes) is a ciphertext made for `identity`."""
    if identity is None:
        return _refusal("the upload is not a file of a run, logged model or trace")
    try:
        header, _ = artefact.read_header(io.BytesIO(prefix), identity)
    except artefact.DecryptionError:
        return _refusal(f"{identity!r} is not encrypted")
    with sessions() as session:
        try:
            service.find_for(session, header.key_id, identity, experiment_id)
        except service.KeyRefused:
            return _refusal(f"{identity!r} is not encrypted with a data key issued for it")
    return None


PREFIX_BYTES = MAX_HEADER_SIZE
