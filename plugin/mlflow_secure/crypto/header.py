"""The artefact header: which data key opens the file, and the commitment to that key.

Tink's stream format (`segments`) is not key-committing: with AES-GCM an attacker who picks
two keys can build one ciphertext that authenticates under both ("invisible salamanders";
the S3 Encryption Client added its committing suite for this). So each artefact file starts
with this header, ahead of Tink's own:

    offset  size  field
    0       4     magic "MLSE"
    4       1     format version (1)
    5       1     suite (1: AES-256-GCM-HKDF-SHA256 streaming segments, Tink's wire format)
    6       4     ciphertext segment size (uint32, big-endian; 4 KiB to 16 MiB)
    10      2     length n of the data key id (uint16, big-endian; 1 to 255)
    12      n     data key id (ASCII; issued by the key service, names the wrapped data key)
    12+n    4     key version (uint32, big-endian; the project key version it was made under)
    16+n    32    key commitment = HKDF-SHA256(ikm=data key, info="mlflow-secure/v1/commit")

The stream key handed to Tink's format is HKDF-SHA256(ikm=data key,
info="mlflow-secure/v1/stream"), so the commitment reveals nothing of it. A reader compares
the commitment (in constant time) before decrypting anything: a ciphertext opens under one
data key only. The whole header is part of the associated data, with the project and the
artefact's identity (what the server calls it, never a client path), so any edit to the
header (a downgraded version, another key id, another segment size) or a file copied to
another artefact or project fails to authenticate. The wrapped data key itself lives in the
key service, not here, so rotating a project key re-wraps data keys without rewriting a byte
of the artefacts (object stores cannot rewrite a header in place).
"""

from __future__ import annotations

import hmac
import struct
from dataclasses import dataclass
from typing import BinaryIO

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from mlflow_secure.crypto.segments import read_exact

MAGIC = b"MLSE"
VERSION = 1
SUPPORTED_VERSIONS = frozenset({1})
SUITE = 1
DATA_KEY_SIZE = 32
COMMITMENT_SIZE = 32
MIN_SEGMENT_SIZE = 4096
MAX_SEGMENT_SIZE = 16 * 1024 * 1024
DEFAULT_SEGMENT_SIZE = 1024 * 1024
MAX_KEY_ID = 255

_FIXED = struct.Struct(">4sBBIH")  # magic, version, suite, segment size, key id length
MAX_HEADER_SIZE = _FIXED.size + MAX_KEY_ID + 4 + COMMITMENT_SIZE
_COMMIT_INFO = b"mlflow-secure/v1/commit"
_STREAM_INFO = b"mlflow-secure/v1/stream"
_AAD_LABEL = b"mlflow-secure/v1/artefact"


class HeaderError(Exception):
    """Not a header this reader can use; `problem` says why in words a person can act on."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


@dataclass(frozen=True)
class Context:
    """What the artefact is, as the server names it: bound into every segment's key.

    `artefact` is the file's identity as the key service names it ("runs/<run id>/artifacts/
    <path>", "models/<logged model id>/artifacts/<path>"), not where a client keeps it, so a
    download to any directory opens it and a copy to any other artefact does not.
    """

    project: str
    artefact: str


@dataclass(frozen=True)
class Header:
    key_id: str
    key_version: int
    commitment: bytes
    segment_size: int = DEFAULT_SEGMENT_SIZE
    version: int = VERSION
    suite: int = SUITE

    def encode(self) -> bytes:
        key_id = self.key_id.encode("ascii")
        return (
            _FIXED.pack(MAGIC, self.version, self.suite, self.segment_size, len(key_id))
            + key_id
            + struct.pack(">I", self.key_version)
            + self.commitment
        )


def _hkdf(data_key: bytes, info: bytes) -> bytes:
    if len(data_key) != DATA_KEY_SIZE:
        raise ValueError("a data key is 32 bytes")
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(data_key)


def commitment(data_key: bytes) -> bytes:
    return _hkdf(data_key, _COMMIT_INFO)


def stream_key(data_key: bytes) -> bytes:
    return _hkdf(data_key, _STREAM_INFO)


def new_header(
    data_key: bytes, key_id: str, key_version: int, segment_size: int = DEFAULT_SEGMENT_SIZE
) -> Header:
    header = Header(key_id, key_version, commitment(data_key), segment_size)
    check(header)
    return header


def check(header: Header) -> None:
    """Refuse what this version does not write: unknown versions, suites, sizes, ids."""
    if header.version not in SUPPORTED_VERSIONS:
        raise HeaderError(
            f"format version {header.version} is not one this client reads "
            f"({', '.join(map(str, sorted(SUPPORTED_VERSIONS)))}); upgrade mlflow-secure"
        )
    if header.suite != SUITE:
        raise HeaderError(f"cipher suite {header.suite} is unknown (this client reads {SUITE})")
    if not MIN_SEGMENT_SIZE <= header.segment_size <= MAX_SEGMENT_SIZE:
        raise HeaderError(f"segment size {header.segment_size} is outside 4 KiB to 16 MiB")
    if not 0 < len(header.key_id) <= MAX_KEY_ID or not header.key_id.isascii():
        raise HeaderError("the data key id is empty, too long or not ASCII")
    if not 0 <= header.key_version < 2**32:
        raise HeaderError("the key version is not a uint32")
    if len(header.commitment) != COMMITMENT_SIZE:
        raise HeaderError("the key commitment is not 32 bytes")


def read_header(source: BinaryIO) -> tuple[Header, bytes]:
    """Parse the header at the start of `source`; (header, its exact bytes)."""
    fixed = read_exact(source, _FIXED.size)
    if len(fixed) < len(MAGIC) or fixed[: len(MAGIC)] != MAGIC:
        raise HeaderError("not an mlflow-secure encrypted artefact (no MLSE header)")
    if len(fixed) < _FIXED.size:
        raise HeaderError("truncated: the header is incomplete")
    _, version, suite, segment_size, id_length = _FIXED.unpack(fixed)
    rest = read_exact(source, id_length + 4 + COMMITMENT_SIZE)
    if len(rest) < id_length + 4 + COMMITMENT_SIZE:
        raise HeaderError("truncated: the header is incomplete")
    try:
        key_id = rest[:id_length].decode("ascii")
    except UnicodeDecodeError:
        raise HeaderError("the data key id is not ASCII") from None
    (key_version,) = struct.unpack(">I", rest[id_length : id_length + 4])
    header = Header(key_id, key_version, rest[id_length + 4 :], segment_size, version, suite)
    check(header)
    return header, fixed + rest


def verify_commitment(header: Header, data_key: bytes) -> None:
    if not hmac.compare_digest(header.commitment, commitment(data_key)):
        raise HeaderError(
            f"the data key is not the one this file was encrypted with (key id {header.key_id})"
        )


def associated_data(header_bytes: bytes, context: Context) -> bytes:
    """Tink's associated data: the header and the context, each length-prefixed."""
    parts = (_AAD_LABEL, header_bytes, context.project.encode(), context.artefact.encode())
    return b"".join(struct.pack(">I", len(part)) + part for part in parts)
