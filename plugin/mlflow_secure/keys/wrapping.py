"""The master key that wraps project keys at rest, behind a two-method interface.

A project key never leaves the server unwrapped and is stored only as `wrap(key, aad)`
output; data keys are wrapped by project keys (`service`). The master key comes from
`MLFLOW_SECURE_MASTER_KEY` (base64 of 32 bytes; for secret stores that inject
environment variables) or `MLFLOW_SECURE_MASTER_KEY_FILE` (the same text in a 0600 file);
with neither, a file beside the identity database is created on first start (0600, never
overwritten). An external KMS fits the same `KeyWrapper` interface (docs/encryption.md
shows HashiCorp Vault's transit engine): `wrap` and `unwrap` with associated data, so a
wrapped key moved to another project or version does not unwrap.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import stat
import tempfile
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy.engine import make_url

MASTER_KEY_SIZE = 32
_BLOB_VERSION = b"\x01"


class MasterKeyError(Exception):
    """The master key cannot be had or used; the message says how to fix it."""


class KeyWrapper(Protocol):
    name: str

    def wrap(self, plaintext: bytes, aad: bytes) -> bytes: ...

    def unwrap(self, blob: bytes, aad: bytes) -> bytes: ...


class LocalMasterKey:
    """AES-256-GCM under a local 32-byte key; blob = 0x01 || nonce (12) || ciphertext."""

    name = "local"

    def __init__(self, key: bytes) -> None:
        if len(key) != MASTER_KEY_SIZE:
            raise MasterKeyError("the master key must be 32 bytes (base64 of 32 random bytes)")
        self._cipher = AESGCM(key)

    def __repr__(self) -> str:  # never the key
        return "LocalMasterKey(<hidden>)"

    def wrap(self, plaintext: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(12)
        return _BLOB_VERSION + nonce + self._cipher.encrypt(nonce, plaintext, aad)

    def unwrap(self, blob: bytes, aad: bytes) -> bytes:
        if len(blob) < 29 or blob[:1] != _BLOB_VERSION:
            raise MasterKeyError("a wrapped key is malformed")
        try:
            return self._cipher.decrypt(blob[1:13], blob[13:], aad)
        except InvalidTag:
            raise MasterKeyError(
                "a wrapped key does not open under this master key (another master key, or "
                "the stored key was altered)"
            ) from None


def _decode(text: str, where: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise MasterKeyError(f"{where} is not base64 (of 32 random bytes)") from None
    if len(key) != MASTER_KEY_SIZE:
        raise MasterKeyError(f"{where} decodes to {len(key)} bytes; a master key is 32")
    return key


def default_key_file(identity_uri: str) -> Path | None:
    """Beside the identity store when it is a SQLite file; None for a server database."""
    url = make_url(identity_uri)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    database = Path(url.database).resolve()
    return database.parent / f"{database.stem}-master.key"


def _read_private(path: Path) -> str:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise MasterKeyError(
            f"the master key file {path} is readable by other users (mode "
            f"{stat.S_IMODE(mode):o}); run: chmod 600 {path}"
        )
    return path.read_text()


def _create(path: Path) -> None:
    """Written whole to a private temporary file, then linked into place: several workers
    starting together agree on one key, and none reads a half-written file."""
    text = base64.b64encode(os.urandom(MASTER_KEY_SIZE)).decode() + "\n"
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w") as out:  # mkstemp makes it 0600
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        os.unlink(temporary)


def load_master_key(
    value: str | None, key_file: str | None, identity_uri: str
) -> LocalMasterKey | None:
    """The configured master key; None when none is configured and none can be made."""
    if value:
        return LocalMasterKey(_decode(value, "MLFLOW_SECURE_MASTER_KEY"))
    if key_file:
        path = Path(key_file)
        if not path.is_file():
            raise MasterKeyError(
                f"MLFLOW_SECURE_MASTER_KEY_FILE names {path}, which does not exist; create "
                f"it with: mlflow-secure keys generate-master-key > {path} && "
                f"chmod 600 {path}"
            )
        return LocalMasterKey(_decode(_read_private(path), str(path)))
    path = default_key_file(identity_uri)
    if path is None:
        return None
    if not path.exists():
        _create(path)
    return LocalMasterKey(_decode(_read_private(path), str(path)))
