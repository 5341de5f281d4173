"""The artefact format: round trips at every segment boundary, and the tamper suite case by case.

Each tamper case names the attack the issue lists and shows that decryption refuses it with
a `DecryptionError` naming the artefact, and that `decrypt_file` leaves no plaintext behind.
"""

from __future__ import annotations

import io
import os
import struct
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from mlflow_secure.crypto import artefact, segments
from mlflow_secure.crypto import header as header_format
from mlflow_secure.crypto.artefact import DecryptionError
from mlflow_secure.crypto.header import Context

SEGMENT = 4096  # the smallest segment size the format allows: many segments in small files
LAYOUT = segments.Layout(SEGMENT)
CONTEXT = Context("fraud", "runs/0a1b2c/artifacts/model/model.pkl")
KEY = bytes(range(32))


def seal(plaintext: bytes, key: bytes = KEY, context: Context = CONTEXT) -> bytes:
    sink = io.BytesIO()
    artefact.encrypt_stream(io.BytesIO(plaintext), sink, key, "dk-7", 2, context, SEGMENT)
    return sink.getvalue()


def unseal(ciphertext: bytes, key: bytes = KEY, context: Context = CONTEXT) -> bytes:
    out = bytearray()
    artefact.decrypt_stream(io.BytesIO(ciphertext), out.extend, lambda _header: key, context)
    return bytes(out)


def header_length(ciphertext: bytes) -> int:
    return len(header_format.read_header(io.BytesIO(ciphertext))[1])


def segment_bounds(ciphertext: bytes) -> list[tuple[int, int]]:
    """(start, end) of every segment in the whole file."""
    base = header_length(ciphertext)
    count = LAYOUT.segment_count(len(ciphertext) - base)
    bounds = []
    for index in range(count):
        start, size = LAYOUT.segment_span(index)
        bounds.append((base + start, base + min(start + size, len(ciphertext) - base)))
    return bounds


BOUNDARY_SIZES = sorted(
    {
        0,
        1,
        LAYOUT.first_plaintext - 1,
        LAYOUT.first_plaintext,
        LAYOUT.first_plaintext + 1,
        LAYOUT.first_plaintext + LAYOUT.plaintext,
        LAYOUT.first_plaintext + LAYOUT.plaintext + 1,
        LAYOUT.first_plaintext + 3 * LAYOUT.plaintext,
    }
)


@pytest.mark.parametrize("size", BOUNDARY_SIZES)
def test_round_trip_at_every_segment_boundary(size: int) -> None:
    plaintext = os.urandom(size)
    ciphertext = seal(plaintext)
    assert unseal(ciphertext) == plaintext
    base = header_length(ciphertext)
    assert len(ciphertext) - base == LAYOUT.ciphertext_size(size)
    assert artefact.plaintext_size(len(ciphertext), ciphertext[:base], CONTEXT.artefact) == size


class _Trickle(io.RawIOBase):
    """A source that hands out at most 7 bytes per read, as a pipe or socket may."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        count = min(7, len(buffer), len(self._data))
        buffer[:count] = self._data[:count]
        self._data = self._data[count:]
        return count


def test_short_reads_give_the_same_ciphertext_layout() -> None:
    plaintext = os.urandom(3 * SEGMENT + 5)
    sink = io.BytesIO()
    artefact.encrypt_stream(_Trickle(plaintext), sink, KEY, "dk-7", 2, CONTEXT, SEGMENT)
    assert unseal(sink.getvalue()) == plaintext
    out = bytearray()
    artefact.decrypt_stream(_Trickle(sink.getvalue()), out.extend, lambda _h: KEY, CONTEXT)
    assert bytes(out) == plaintext


@settings(max_examples=60, deadline=None)
@given(
    data=st.binary(min_size=0, max_size=5 * SEGMENT),
    start=st.integers(min_value=0, max_value=6 * SEGMENT),
    length=st.integers(min_value=0, max_value=6 * SEGMENT),
)
def test_a_byte_range_is_read_alone(data: bytes, start: int, length: int) -> None:
    ciphertext = seal(data)
    reads: list[tuple[int, int]] = []

    def read_at(offset: int, size: int) -> bytes:
        reads.append((offset, size))
        return ciphertext[offset : offset + size]

    got = artefact.read_range(read_at, len(ciphertext), lambda _h: KEY, CONTEXT, start, length)
    assert got == data[start : start + length]
    # the header, the stream header, the covering segments and the last one: never the file
    if len(data) > 4 * SEGMENT and length < SEGMENT:
        assert sum(size for _, size in reads) < 4 * SEGMENT


def refused(ciphertext: bytes, key: bytes = KEY, context: Context = CONTEXT) -> str:
    with pytest.raises(DecryptionError) as caught:
        unseal(ciphertext, key, context)
    assert caught.value.artefact == context.artefact
    return caught.value.problem


PLAINTEXT = bytes(range(256)) * 60  # four segments of 4 KiB


def test_truncation_anywhere_is_refused() -> None:
    ciphertext = seal(PLAINTEXT)
    cuts = {0, 3, 10, header_length(ciphertext) - 1, header_length(ciphertext) + 39}
    cuts |= {end for _, end in segment_bounds(ciphertext)[:-1]}  # at segment boundaries
    cuts |= {start + 100 for start, _ in segment_bounds(ciphertext)}  # inside segments
    cuts |= {len(ciphertext) - 1}
    for cut in sorted(cuts):
        problem = refused(ciphertext[:cut])
        assert problem, cut


def test_segments_reordered_are_refused() -> None:
    ciphertext = seal(PLAINTEXT)
    (_, _), (s1, e1), (s2, e2), *_ = segment_bounds(ciphertext)
    swapped = ciphertext[:s1] + ciphertext[s2:e2] + ciphertext[s1:e1] + ciphertext[e2:]
    assert len(swapped) == len(ciphertext)
    assert "segment 1 does not authenticate" in refused(swapped)


def test_a_segment_from_another_file_is_refused_even_under_the_same_key() -> None:
    mine, theirs = seal(PLAINTEXT), seal(PLAINTEXT)  # same key, context and plaintext
    start, end = segment_bounds(mine)[2]
    spliced = mine[:start] + theirs[start:end] + mine[end:]
    assert spliced != mine
    assert "segment 2 does not authenticate" in refused(spliced)


@pytest.mark.parametrize("extra", [b"\x00", os.urandom(SEGMENT), os.urandom(17)])
def test_appended_data_is_refused(extra: bytes) -> None:
    assert refused(seal(PLAINTEXT) + extra)


def test_every_flipped_bit_is_refused() -> None:
    ciphertext = seal(bytes(range(256)) * 20)  # two segments
    for position in range(len(ciphertext)):
        tampered = bytearray(ciphertext)
        tampered[position] ^= 1 << (position % 8)
        with pytest.raises(DecryptionError):
            unseal(bytes(tampered))


def test_a_wrong_key_is_named_before_any_segment_is_tried() -> None:
    problem = refused(seal(PLAINTEXT), key=os.urandom(32))
    assert "not the one this file was encrypted with" in problem
    assert "dk-7" in problem


@pytest.mark.parametrize(
    "context",
    [
        Context("fraud", "runs/0a1b2c/artifacts/model/other.pkl"),  # another path in the run
        Context("fraud", "runs/ffffff/artifacts/model/model.pkl"),  # another run
        Context("marketing", "runs/0a1b2c/artifacts/model/model.pkl"),  # another project
    ],
)
def test_a_file_moved_to_another_artefact_or_project_is_refused(context: Context) -> None:
    ciphertext = seal(PLAINTEXT)
    assert "segment 0 does not authenticate" in refused(ciphertext, context=context)


def _patched_header(ciphertext: bytes, **fields: object) -> bytes:
    header, raw = header_format.read_header(io.BytesIO(ciphertext))
    values = {**header.__dict__, **fields}
    return header_format.Header(**values).encode() + ciphertext[len(raw) :]


def test_a_header_downgraded_to_an_older_version_is_refused() -> None:
    ciphertext = seal(PLAINTEXT)
    problem = refused(_patched_header(ciphertext, version=0))
    assert "format version 0 is not one this client reads" in problem
    assert "upgrade" in problem
    assert "cipher suite 0 is unknown" in refused(_patched_header(ciphertext, suite=0))


@pytest.mark.parametrize("fields", [{"key_version": 1}, {"key_id": "dk-8"}, {"segment_size": 8192}])
def test_any_other_header_edit_fails_authentication(fields: dict[str, object]) -> None:
    assert refused(_patched_header(seal(PLAINTEXT), **fields))


@pytest.mark.parametrize(
    ("ciphertext", "problem"),
    [
        (b"", "no MLSE header"),
        (b"PK\x03\x04 a zip file, not ciphertext", "no MLSE header"),
        (b"MLSE\x01", "truncated"),
        (struct.pack(">4sBBIH", b"MLSE", 1, 1, 1 << 30, 4) + b"dk-1" + bytes(36), "segment size"),
        (struct.pack(">4sBBIH", b"MLSE", 1, 1, SEGMENT, 0) + bytes(36), "data key id"),
    ],
)
def test_foreign_or_malformed_files_are_refused_with_a_reason(
    ciphertext: bytes, problem: str
) -> None:
    assert problem in refused(ciphertext)


def test_decrypt_file_leaves_nothing_behind_when_the_file_is_bad(tmp_path: Path) -> None:
    ciphertext = seal(PLAINTEXT)
    bad = tmp_path / "model.pkl.enc"
    bad.write_bytes(ciphertext[: segment_bounds(ciphertext)[-1][0]])  # last segment lost
    target = tmp_path / "out" / "model.pkl"
    target.parent.mkdir()
    with pytest.raises(DecryptionError):
        artefact.decrypt_file(bad, target, lambda _h: KEY, CONTEXT)
    assert list(target.parent.iterdir()) == []


def test_encrypt_file_and_decrypt_file(tmp_path: Path) -> None:
    source, sealed, opened = tmp_path / "in.bin", tmp_path / "in.bin.enc", tmp_path / "out.bin"
    source.write_bytes(PLAINTEXT)
    artefact.encrypt_file(source, sealed, KEY, "dk-7", 2, CONTEXT, SEGMENT)
    assert PLAINTEXT[:64] not in sealed.read_bytes()
    assert artefact.decrypt_file(sealed, opened, lambda _h: KEY, CONTEXT) == len(PLAINTEXT)
    assert opened.read_bytes() == PLAINTEXT


# --- key commitment: an "invisible salamander" against the bare stream format -------------

_R = 0xE1 << 120


def _gf_mult(x: int, y: int) -> int:
    """Multiplication in GCM's GF(2^128) (NIST SP 800-38D, algorithm 1)."""
    z, v = 0, x
    for bit in range(127, -1, -1):
        if (y >> bit) & 1:
            z ^= v
        v = (v >> 1) ^ _R if v & 1 else v >> 1
    return z


def _gf_inverse(x: int) -> int:
    result, power, exponent = 1 << 127, x, 2**128 - 2  # 1 << 127 is GCM's "1"
    while exponent:
        if exponent & 1:
            result = _gf_mult(result, power)
        power = _gf_mult(power, power)
        exponent >>= 1
    return result


def _block_cipher(key: bytes, block: bytes) -> int:
    # one raw AES block is what GCM's H and tag mask are; ECB here computes exactly that
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()  # noqa: S305
    return int.from_bytes(encryptor.update(block) + encryptor.finalize(), "big")


def salamander(key_one: bytes, key_two: bytes, nonce: bytes) -> bytes:
    """Two blocks and a GCM tag that authenticate under both keys (Dodis et al. 2018)."""
    h1, h2 = _block_cipher(key_one, bytes(16)), _block_cipher(key_two, bytes(16))
    j0 = nonce + b"\x00\x00\x00\x01"
    e1, e2 = _block_cipher(key_one, j0), _block_cipher(key_two, j0)
    lengths = int.from_bytes(struct.pack(">QQ", 0, 256), "big")  # no AAD, 2 blocks
    c1 = int.from_bytes(os.urandom(16), "big")

    def cube(h: int) -> int:
        return _gf_mult(_gf_mult(h, h), h)

    rhs = _gf_mult(c1, cube(h1) ^ cube(h2)) ^ _gf_mult(lengths, h1 ^ h2) ^ e1 ^ e2
    c2 = _gf_mult(rhs, _gf_inverse(_gf_mult(h1, h1) ^ _gf_mult(h2, h2)))
    tag = e1 ^ _gf_mult(c1, cube(h1)) ^ _gf_mult(c2, _gf_mult(h1, h1)) ^ _gf_mult(lengths, h1)
    return b"".join(value.to_bytes(16, "big") for value in (c1, c2, tag))


def test_the_format_commits_to_one_key_where_bare_gcm_segments_do_not() -> None:
    key_one, key_two = os.urandom(32), os.urandom(32)
    first = header_format.new_header(key_one, "dk-1", 1, SEGMENT).encode()
    aad = header_format.associated_data(first, CONTEXT)
    stream_header = segments.new_header()
    salt, prefix = segments.parse_header(stream_header)
    derived = [
        segments.segment_key(header_format.stream_key(key), salt, aad) for key in (key_one, key_two)
    ]
    nonce = segments.nonce(prefix, 0, True)
    body = salamander(*derived, nonce)
    # the bare stream format opens under both keys, to two different plaintexts ...
    opened = [AESGCM(key).decrypt(nonce, body, None) for key in derived]
    assert opened[0] != opened[1]
    for key in (key_one, key_two):
        out = bytearray()
        stream = io.BytesIO(stream_header + body)
        segments.decrypt(stream, out.extend, header_format.stream_key(key), aad, LAYOUT)
        assert bytes(out) in opened
    # ... the artefact format, whose header commits to key one, opens under key one only
    ciphertext = first + stream_header + body
    assert unseal(ciphertext, key_one) == opened[0]
    assert "not the one this file was encrypted with" in refused(ciphertext, key_two)


@pytest.mark.parametrize("size", BOUNDARY_SIZES)
def test_the_encrypting_reader_knows_its_length_and_opens_like_a_file(tmp_path, size):
    source = tmp_path / "plain.bin"
    plaintext = os.urandom(size)
    source.write_bytes(plaintext)
    with artefact.encrypting_reader(source, KEY, "dk-7", 2, CONTEXT, SEGMENT) as reader:
        length = len(reader)
        assert reader.tell() == 0
        ciphertext = reader.read()
        assert reader.tell() == length
    assert len(ciphertext) == length
    assert unseal(ciphertext) == plaintext
    assert (
        artefact.encrypt_stream(io.BytesIO(plaintext), io.BytesIO(), KEY, "k", 1, CONTEXT, SEGMENT)
        == size
    )
