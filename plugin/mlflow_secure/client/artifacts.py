"""The encrypting artefact repository: MLflow's `mlflow-artifacts:` repository, with every
file of an encrypted artefact encrypted before it leaves the client and decrypted after it
arrives. Installed with the package (entry point `mlflow.artifact_repository`), so
`mlflow.log_artifact(s)`, `log_model` for any flavour, `load_model` (runs:/, models:/ and
registry URIs resolve to a run's or logged model's `mlflow-artifacts:` location) and
`mlflow.artifacts.download_artifacts` and traces' data need no change in the user's code.

For each file uploaded the key service is asked for a data key for that run's or logged
model's artefact (`keys/data-keys/create`): it answers whether the experiment's
classification requires encryption and, if so, issues the key. The file is then encrypted
as the PUT body is sent (its length known in advance), or, for a multipart upload, into a
temporary copy first, so that the parts are ciphertext. Any failure to get a key raises: a
file the server says must be encrypted is never uploaded in plaintext. A downloaded file
that starts with the format's header is decrypted as it streams in, into a temporary file
renamed into place at the end (never partial plaintext); its data key is unwrapped by the
key service for the caller (the policy decides), cached in memory for a minute and never
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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from mlflow.exceptions import MlflowException
from mlflow.store.artifact.artifact_repo import verify_artifact_path
from mlflow.store.artifact.mlflow_artifacts_repo import MlflowArtifactsRepository
from mlflow.store.artifact.s3_artifact_repo import S3ArtifactRepository
from mlflow.tracking._tracking_service.utils import get_tracking_uri
from mlflow.utils.mime_type_utils import _guess_mime_type
from mlflow.utils.rest_utils import augmented_raise_for_status, http_request

from mlflow_secure.admin.client import SecureAdminClient
from mlflow_secure.crypto import artefact, segments
from mlflow_secure.crypto.header import MAGIC, Context, Header
from mlflow_secure.prefixed import Prefixed
from mlflow_secure.ttl_cache import TtlCache

KEY_CACHE_SECONDS = 60.0
_keys = TtlCache(KEY_CACHE_SECONDS, 1024)  # (tracking URI, key id, artefact) -> data key

# Where a run's and a logged model's artefacts live under any artefact root (MLflow's
# layout): .../<run id>/artifacts[/...] and .../models/<model id>/artifacts[/...].
_OWNED = re.compile(
    r"/(?:(?P<run>[0-9a-f]{32})|models/(?P<model>m-[0-9a-f]{32})|traces/(?P<trace>tr-[0-9a-f]{32}))"
    r"/artifacts(?P<sub>/.*)?$"
)


@dataclass(frozen=True)
class Owner:
    """The run or logged model a repository's files belong to, and the repository's root
    inside its artefacts."""

    run_id: str | None
    logged_model_id: str | None
    root: str
    trace_id: str | None = None

    def path(self, relative: str) -> str:
        return posixpath.normpath(posixpath.join(self.root, relative)).lstrip("/")

    def named(self) -> dict[str, str]:
        if self.run_id:
            return {"run_id": self.run_id}
        if self.trace_id:
            return {"trace_id": self.trace_id}
        return {"logged_model_id": self.logged_model_id or ""}


def owner_of(artifact_uri: str) -> Owner | None:
    """None for a repository that is not inside a run's or logged model's artefacts."""
    matched = _OWNED.search(urlsplit(artifact_uri).path.rstrip("/"))
    if matched is None:
        return None
    root = (matched["sub"] or "").strip("/")
    return Owner(matched["run"], matched["model"], root, matched["trace"])


def is_encrypted(path: str) -> bool:
    with open(path, "rb") as handle:
        return handle.read(len(MAGIC)) == MAGIC


class _Encrypting:
    """What both encrypting repositories do: ask the key service, encrypt, decrypt."""

    _owner: Owner | None
    _keys: SecureAdminClient

    def _start_encrypting(self, artifact_uri: str, tracking_uri: str | None) -> None:
        """Encrypt only where a key service can be asked: a client of an http(s) tracking
        server. Inside the server itself (its tracking URI is a database) the repository is
        MLflow's own, and the front door decrypts what the UI is shown (decrypting.py)."""
        tracking_uri = tracking_uri or get_tracking_uri()
        self._owner = None
        if urlsplit(tracking_uri).scheme in ("http", "https"):
            self._owner = owner_of(artifact_uri)
            self._keys = SecureAdminClient(tracking_uri)

    def _upload_key(self, path: str) -> tuple[bytes, str, int, Context] | None:
        """The data key to encrypt artefact `path` with; None where none is required."""
        assert self._owner is not None
        try:
            answer = self._keys.create_data_key(path, **self._owner.named())
        except MlflowException as exc:
            raise MlflowException(
                f"mlflow-secure: no data key for artefact {path!r}, so it was not uploaded: "
                f"{exc.message}",
                error_code=exc.error_code,
            ) from None
        if not answer.get("required"):
            return None
        return (
            base64.b64decode(answer["data_key"]),
            answer["key_id"],
            answer["key_version"],
            Context(answer["project"], answer["artefact"]),
        )

    def _upload_sealed(self, local_file: str, path: str, upload: Callable[[str], None]) -> None:
        """Upload `local_file` (through `upload(file)`) encrypted when it must be."""
        key = self._upload_key(path)
        if key is None:
            upload(local_file)
            return
        with tempfile.TemporaryDirectory(prefix="mlflow-secure-") as scratch:
            sealed = os.path.join(scratch, os.path.basename(local_file))
            artefact.encrypt_file(local_file, sealed, *key)
            upload(sealed)

    def _fetch_then_open(self, fetch: Callable[[str], None], path: str, local_path: str) -> None:
        """Fetch the stored file whole (through `fetch(file)`), then decrypt it into place."""
        directory = os.path.dirname(os.path.abspath(local_path))
        handle, fetched = tempfile.mkstemp(dir=directory, prefix=".mlflow-secure-")
        os.close(handle)
        try:
            fetch(fetched)
            if not is_encrypted(fetched):
                shutil.move(fetched, local_path)
                return
            with open(fetched, "rb") as sealed:
                self._open_into(sealed, path, local_path)
        finally:
            if os.path.exists(fetched):
                os.unlink(fetched)

    def _open_into(self, source: Any, path: str, local_path: str) -> None:
        owner = self._owner
        assert owner is not None  # only repositories of a run or logged model decrypt

        def opener(header: Header) -> tuple[bytes, Context]:
            answer = self._unwrapped(owner, path, header)
            # the project and identity the key service issued the key for
            context = Context(answer["project"], answer["artefact"])
            return base64.b64decode(answer["data_key"]), context

        try:
            artefact.decrypt_into_file(source, local_path, opener, path)
        except artefact.DecryptionError as exc:
            raise MlflowException(f"mlflow-secure: {exc}") from None

    def _unwrapped(self, owner: Owner, path: str, header: Header) -> dict:
        cache_key = (self._keys.tracking_uri, header.key_id, path)
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


class EncryptingArtifactsRepository(_Encrypting, MlflowArtifactsRepository):
    """`mlflow-artifacts:` (the server's proxied store) with client-side encryption."""

    def __init__(self, artifact_uri: str, tracking_uri=None, registry_uri=None) -> None:
        super().__init__(artifact_uri, tracking_uri=tracking_uri, registry_uri=registry_uri)
        self._start_encrypting(self.artifact_uri, self.tracking_uri)

    def log_artifact(self, local_file, artifact_path=None) -> None:
        if self._owner is None:
            return super().log_artifact(local_file, artifact_path)
        verify_artifact_path(artifact_path)
        name = os.path.basename(local_file)
        path = self._owner.path(posixpath.join(artifact_path or "", name))
        if self._should_multipart_upload(local_file):
            # the parts go to the object store: encrypt the whole file first, then chunk it
            parent = super().log_artifact
            return self._upload_sealed(local_file, path, lambda f: parent(f, artifact_path))
        key = self._upload_key(path)
        if key is None:
            return super().log_artifact(local_file, artifact_path)
        # one PUT whose body is encrypted as it is sent (as MLflow's own log_artifact, with
        # the ciphertext's length known in advance): no ciphertext copy on disk
        paths = (artifact_path, name) if artifact_path else (name,)
        with artefact.encrypting_reader(local_file, *key) as body:
            response = http_request(
                self._host_creds,
                posixpath.join("/", *paths),
                "PUT",
                data=body,
                extra_headers={"Content-Type": _guess_mime_type(name)},
            )
        augmented_raise_for_status(response)
        return None

    def _download_file(self, remote_file_path, local_path) -> None:
        if self._owner is None:
            return super()._download_file(remote_file_path, local_path)
        path = self._owner.path(remote_file_path)
        if self._is_multipart_download_enabled():  # MLflow fetches it in ranges
            parent = super()._download_file
            return self._fetch_then_open(lambda f: parent(remote_file_path, f), path, local_path)
        response = http_request(
            self._host_creds, posixpath.join("/", remote_file_path), "GET", stream=True
        )
        augmented_raise_for_status(response)
        response.raw.decode_content = True
        with response:
            first = segments.read_exact(response.raw, len(MAGIC))
            if first != MAGIC:
                with open(local_path, "wb") as out:
                    out.write(first)
                    shutil.copyfileobj(response.raw, out, 1024 * 1024)
                return None
            self._open_into(Prefixed(first, response.raw), path, local_path)
        return None


class EncryptingS3ArtifactRepository(_Encrypting, S3ArtifactRepository):
    """`s3:` (a bucket the client writes to directly) with client-side encryption: every
    object of an encrypted artefact is encrypted before boto3 uploads it (so multipart
    uploads chunk ciphertext), and decrypted after it is downloaded."""

    def __init__(self, artifact_uri: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(artifact_uri, *args, **kwargs)
        self._start_encrypting(artifact_uri, kwargs.get("tracking_uri"))

    def _relative(self, key: str) -> str:
        _, root = self.parse_s3_compliant_uri(self.artifact_uri)
        return key[len(root) :].lstrip("/") if root else key

    def _upload_file(self, s3_client, local_file, bucket, key) -> None:
        if self._owner is None:
            return super()._upload_file(s3_client, local_file, bucket, key)
        parent = super()._upload_file
        path = self._owner.path(self._relative(key))
        return self._upload_sealed(local_file, path, lambda f: parent(s3_client, f, bucket, key))

    def _download_file(self, remote_file_path, local_path) -> None:
        if self._owner is None:
            return super()._download_file(remote_file_path, local_path)
        parent = super()._download_file
        path = self._owner.path(remote_file_path)
        return self._fetch_then_open(lambda f: parent(remote_file_path, f), path, local_path)
