"""The artefact format against Tink (the oracle) and against its published test vectors.

Tink's own streaming AEAD decrypts the stream part of what `mlflow_secure.crypto` writes, and
what Tink encrypts opens under the artefact format once our header is put in front; the test
vectors in docs/encryption-vectors.json are reproduced byte for byte (regenerate them with
`python -m tests.unit.test_crypto_tink_oracle` only when the format version changes).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
from pathlib import Path

import pytest
import tink
from tink import cleartext_keyset_handle, streaming_aead
from tink.proto import aes_gcm_hkdf_streaming_pb2, common_pb2, tink_pb2

from mlflow_secure.crypto import artefact, segments
from mlflow_secure.crypto import header as header_format
from mlflow_secure.crypto.header import Context

VECTORS = Path(__file__).resolve().parents[2] / "docs" / "encryption-vectors.json"
SEGMENT = 4096
LAYOUT = segments.Layout(SEGMENT)
SIZES = [
    0,
    1,
    LAYOUT.first_plaintext,
    LAYOUT.first_plaintext + 1,
    LAYOUT.first_plaintext + LAYOUT.plaintext + 1,
]

streaming_aead.register()


def tink_primitive(key_value: bytes, segment_size: int) -> streaming_aead.StreamingAead:
    """Tink's AesGcmHkdfStreaming primitive (HKDF-SHA256, 32-byte keys) for a known key."""
    key = aes_gcm_hkdf_streaming_pb2.AesGcmHkdfStreamingKey(
        version=0,
        key_value=key_value,
        params=aes_gcm_hkdf_streaming_pb2.AesGcmHkdfStreamingParams(
            ciphertext_segment_size=segment_size,
            derived_key_size=32,
            hkdf_hash_type=common_pb2.SHA256,
        ),
    )
    keyset = tink_pb2.Keyset(
        primary_key_id=1,
        key=[
            tink_pb2.Keyset.Key(
                key_data=tink_pb2.KeyData(
                    type_url="type.googleapis.com/google.crypto.tink.AesGcmHkdfStreamingKey",
                    value=key.SerializeToString(),
                    key_material_type=tink_pb2.KeyData.SYMMETRIC,
                ),
                status=tink_pb2.ENABLED,
                key_id=1,
                output_prefix_type=tink_pb2.RAW,
            )
        ],
    )
    handle = cleartext_keyset_handle.from_keyset(keyset)
    return handle.primitive(streaming_aead.StreamingAead)


class _Kept(io.BytesIO):
    """A destination Tink may close: what was written stays readable."""

    kept = b""

    def close(self) -> None:
        self.kept = self.getvalue()
        super().close()


def tink_encrypt(key_value: bytes, aad: bytes, plaintext: bytes, segment_size: int) -> bytes:
    sink = _Kept()
    with tink_primitive(key_value, segment_size).new_encrypting_stream(sink, aad) as stream:
        stream.write(plaintext)
    return sink.kept


def tink_decrypt(key_value: bytes, aad: bytes, ciphertext: bytes, segment_size: int) -> bytes:
    primitive = tink_primitive(key_value, segment_size)
    with primitive.new_decrypting_stream(io.BytesIO(ciphertext), aad) as stream:
        return stream.read()


CONTEXT = Context("fraud", "runs/0a1b2c/artifacts/model/model.pkl")


@pytest.mark.parametrize("segment_size", [SEGMENT, header_format.DEFAULT_SEGMENT_SIZE])
@pytest.mark.parametrize("size", [*SIZES, 3 * 1024 * 1024 + 11])
def test_tink_reads_what_we_write_and_we_read_what_tink_writes(
    segment_size: int, size: int
) -> None:
    data_key, plaintext = os.urandom(32), os.urandom(size)
    sink = io.BytesIO()
    artefact.encrypt_stream(io.BytesIO(plaintext), sink, data_key, "dk-1", 1, CONTEXT, segment_size)
    ours = sink.getvalue()
    _, header_bytes = header_format.read_header(io.BytesIO(ours))
    key_value = header_format.stream_key(data_key)
    aad = header_format.associated_data(header_bytes, CONTEXT)
    assert tink_decrypt(key_value, aad, ours[len(header_bytes) :], segment_size) == plaintext

    theirs = header_bytes + tink_encrypt(key_value, aad, plaintext, segment_size)
    assert len(theirs) == len(ours)
    out = bytearray()
    artefact.decrypt_stream(io.BytesIO(theirs), out.extend, lambda _h: data_key, CONTEXT)
    assert bytes(out) == plaintext


def test_tink_refuses_our_stream_under_another_context() -> None:
    data_key = os.urandom(32)
    sink = io.BytesIO()
    artefact.encrypt_stream(io.BytesIO(b"weights"), sink, data_key, "dk-1", 1, CONTEXT, SEGMENT)
    _, header_bytes = header_format.read_header(io.BytesIO(sink.getvalue()))
    moved = header_format.associated_data(header_bytes, Context("marketing", CONTEXT.artefact))
    with pytest.raises(tink.TinkError, match="No matching key"):
        tink_decrypt(
            header_format.stream_key(data_key),
            moved,
            sink.getvalue()[len(header_bytes) :],
            SEGMENT,
        )


def pattern(size: int) -> bytes:
    """The vectors' plaintext: byte i is i mod 251 (a prime, so segments differ)."""
    return bytes(index % 251 for index in range(size))


def build_vectors() -> dict[str, object]:
    """Deterministic encryptions: every random input (keys, salt, nonce prefix) is fixed."""
    data_key = bytes(range(32))
    salt, prefix = bytes(range(100, 132)), bytes(range(200, 207))
    cases = []
    for size in SIZES:
        header_bytes = header_format.new_header(data_key, "dk-0001", 3, SEGMENT).encode()
        aad = header_format.associated_data(header_bytes, CONTEXT)
        out = io.BytesIO()
        out.write(header_bytes)
        segments.encrypt(
            io.BytesIO(pattern(size)),
            out.write,
            header_format.stream_key(data_key),
            aad,
            LAYOUT,
            header=segments.new_header(salt, prefix),
        )
        ciphertext = out.getvalue()
        cases.append(
            {
                "plaintext_length": size,
                "plaintext_sha256": hashlib.sha256(pattern(size)).hexdigest(),
                "associated_data": aad.hex(),
                "ciphertext_length": len(ciphertext),
                "ciphertext_sha256": hashlib.sha256(ciphertext).hexdigest(),
                "ciphertext": ciphertext.hex(),
            }
        )
    return {
        "format": "mlflow-secure artefact v1 (docs/encryption-format.md)",
        "data_key": data_key.hex(),
        "key_id": "dk-0001",
        "key_version": 3,
        "project": CONTEXT.project,
        "artefact": CONTEXT.artefact,
        "segment_size": SEGMENT,
        "stream_salt": salt.hex(),
        "stream_nonce_prefix": prefix.hex(),
        "stream_key": header_format.stream_key(data_key).hex(),
        "commitment": header_format.commitment(data_key).hex(),
        "plaintext": "byte i of the plaintext is i mod 251",
        "cases": cases,
    }


def test_the_published_vectors_are_reproduced_and_open() -> None:
    published = json.loads(VECTORS.read_text())
    assert published == build_vectors()
    data_key = bytes.fromhex(published["data_key"])
    for case in published["cases"]:
        ciphertext = bytes.fromhex(case["ciphertext"])
        out = bytearray()
        artefact.decrypt_stream(io.BytesIO(ciphertext), out.extend, lambda _h: data_key, CONTEXT)
        assert bytes(out) == pattern(case["plaintext_length"])
        _, header_bytes = header_format.read_header(io.BytesIO(ciphertext))
        tail = ciphertext[len(header_bytes) :]
        aad = bytes.fromhex(case["associated_data"])
        key_value = bytes.fromhex(published["stream_key"])
        assert tink_decrypt(key_value, aad, tail, SEGMENT) == bytes(out)


if __name__ == "__main__":
    VECTORS.write_text(json.dumps(build_vectors(), indent=1) + "\n")
    print(f"wrote {VECTORS}", file=sys.stderr)
