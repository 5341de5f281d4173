"""The encrypting artefact repository: MLflow's `mlflow-artifacts:` repository, with every
file of an encrypted artefact encrypted before it leaves the client and decrypted after it
arrives. Installed with the package (entry point `mlflow.artifact_repository`), so
`mlflow.log_artifact(s)`, `log_model` for any flavour, `load_model` (runs:/, models:/ and
registry URIs resolve to a run's or logged model's `mlflow-artifacts:` location) and
`mlflow.artifacts.download_artifacts` need no change in the user's code.

For each file uploaded the key service is asked for a data key for that run's or logged
model's artefact (`keys/data-keys/create`): it answers whether the experiment's
classification requires encryption and, if so, issues the key; the file is encrypted to a
temporary copy (so multipart uploads chunk ciphertext) and the copy is uploaded. Any
failure to get a key raises: a file the server says must be encrypted is never uploaded
in plaintext. A downloaded file that starts with the format's header is decrypted into
place through a temporary file (never partial plaintext), its data key unwrapped by the key
service for the caller (the policy decides), cached in memory for a minute and never
written to disk. Files uploaded in plaintext (below the classification, or before the
plugin) download unchanged.
"""

from __future__ import annotations

import base64
import os
import posixpath
import re
import shutil
import tempfile
from dataclasses import dataclass
from urllib.parse import urlsplit

from mlflow.exceptions import MlflowException
from mlflow.store.artifact.mlflow_artifacts_repo import MlflowArtifactsRepository

from mlflow_secure.admin.client import SecureAdminClient
from mlflow_secure.crypto import artefact
from mlflow_secure.crypto.header import MAGIC, Context, Header
from mlflow_secure.ttl_cache import TtlCache

KEY_CACHE_SECONDS = 60.0
_keys = TtlCache(KEY_CACHE_SECONDS, 1024)  # (tracking URI, key id, artefact) -> data key

# Where a run's and a logged model's artefacts live under any artefact root (MLflow's
# layout): .../<run id>/artifacts[/...] and .../models/<model id>/artifacts[/...].
_OWNED = re.compile(
    r"/(?:(?P<run>[0-9a-f]{32})|models/(?P<model>m-[0-9a-f]{32}))/artifacts(?P<sub>/.*)?$"
)


@dataclass(frozen=True)
class Owner:
    """The run or logged model a repository's files belong to, and the repository's root
    inside its artefacts."""

    run_id: str | None
    logged_model_id: str | None
    root: str

    def path(self, relative: str) -> str:
        return posixpath.normpath(posixpath.join(self.root, relative)).lstrip("/")

    def named(self) -> dict[str, str]:
        if self.run_id:
            return {"run_id": self.run_id}
        return {"logged_model_id": self.logged_model_id or ""}


def owner_of(artifact_uri: str) -> Owner | None:
    """None for a repository that is not inside a run's or logged model's artefacts."""
    matched = _OWNED.search(urlsplit(artifact_uri).path.rstrip("/"))
    if matched is None:
        return None
    return Owner(matched["run"], matched["model"], (matched["sub"] or "").strip("/"))


def is_encrypted(path: str) -> bool:
    with open(path, "rb") as handle:
        return handle.read(len(MAGIC)) == MAGIC


class EncryptingArtifactsRepository(MlflowArtifactsRepository):
    """`mlflow-artifacts:` with client-side encryption (module docstring)."""

    def __init__(self, artifact_uri: str, tracking_uri=None, registry_uri=None) -> None:
        super().__init__(artifact_uri, tracking_uri=tracking_uri, registry_uri=registry_uri)
        self._owner = owner_of(self.artifact_uri)
        self._keys = SecureAdminClient(self.tracking_uri)

    # ------------------------------------------------------------------ upload

    def log_artifact(self, local_file, artifact_path=None) -> None:
        if self._owner is None:
            return super().log_artifact(local_file, artifact_path)
        name = os.path.basename(local_file)
        path = self._owner.path(posixpath.join(artifact_path or "", name))
        try:
            answer = self._keys.create_data_key(path, **self._owner.named())
        except MlflowException as exc:
            raise MlflowException(
                f"mlflow-secure: no data key for artefact {path!r}, so it was not uploaded: "
                f"{exc.message}",
                error_code=exc.error_code,
            ) from None
        if not answer.get("required"):
            return super().log_artifact(local_file, artifact_path)
        context = Context(answer["project"], answer["artefact"])
        with tempfile.TemporaryDirectory(prefix="mlflow-secure-") as scratch:
            sealed = os.path.join(scratch, name)
            artefact.encrypt_file(
                local_file,
                sealed,
                base64.b64decode(answer["data_key"]),
                answer["key_id"],
                answer["key_version"],
                context,
            )
            return super().log_artifact(sealed, artifact_path)

    # ------------------------------------------------------------------ download

    def _download_file(self, remote_file_path, local_path) -> None:
        if self._owner is None:
            return super()._download_file(remote_file_path, local_path)
        directory = os.path.dirname(os.path.abspath(local_path))
        handle, fetched = tempfile.mkstemp(dir=directory, prefix=".mlflow-secure-")
        os.close(handle)
        try:
            super()._download_file(remote_file_path, fetched)
            if not is_encrypted(fetched):
                shutil.move(fetched, local_path)
                return None
            path = self._owner.path(remote_file_path)
            answer = self._unwrapped(self._owner, path, artefact.read_header_of(fetched, path))
            data_key = base64.b64decode(answer["data_key"])
            # the project and identity the key service issued the key for
            context = Context(answer["project"], answer["artefact"])
            artefact.decrypt_file(fetched, local_path, lambda _h: data_key, context)
        except artefact.DecryptionError as exc:
            raise MlflowException(f"mlflow-secure: {exc}") from None
        finally:
            if os.path.exists(fetched):
                os.unlink(fetched)
        return None

    def _unwrapped(self, owner: Owner, path: str, header: Header) -> dict:
        cache_key = (self.tracking_uri, header.key_id, path)
        cached = _keys.get(cache_key)
        if cached is not None:
            return cached
        try:
            answer = self._keys.unwrap_data_key(header.key_id, path, **owner.named())
        except MlflowException as exc:
            raise MlflowException(
                f"mlflow-secure: artefact {path!r} is encrypted and its key was refused: "
                f"{exc.message}",
                error_code=exc.error_code,
            ) from None
        _keys.put(cache_key, answer)
        return answer
