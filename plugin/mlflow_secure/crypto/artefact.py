"""Safe recipes for encrypting and decrypting one artefact file (the layer callers use).

Callers name the artefact (`header.Context`) and hand over the data key, or a function from
the file's header to its data key (the key service's unwrap, asked only once the header says
which key). Everything below them (`header`, `segments`) is the format; nothing here takes
a nonce, a salt or an associated-data string from a caller. Every failure is one
`DecryptionError` naming the artefact and the problem, never partial plaintext:
`decrypt_file` writes to a temporary file beside the destination and renames it only once
the last segment has authenticated.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from mlflow_secure.crypto import header as header_format
from mlflow_secure.crypto import segments
from mlflow_secure.crypto.header import Context, Header, HeaderError

KeyLookup = Callable[[Header], bytes]


class DecryptionError(Exception):
    """An artefact that cannot be decrypted: wrong key, tampered, truncated, moved, foreign."""

    def __init__(self, artefact: str, problem: str) -> None:
        super().__init__(f"cannot decrypt artefact {artefact!r}: {problem}")
        self.artefact = artefact
        self.problem = problem


def _segment_problem(error: segments.SegmentError) -> str:
    if error.segment is None or "truncated" in error.problem:
        return error.problem
    return (
        f"segment {error.segment} does not authenticate: the file was modified, cut short, "
        "reordered, extended, or copied from another artefact or project"
    )


def _sealing(
    data_key: bytes, key_id: str, key_version: int, context: Context, segment_size: int
) -> tuple[bytes, bytes, bytes, segments.Layout]:
    """(header bytes, stream key, associated data, layout) of a new file: one place for both
    ways of encrypting one (to a sink, or as a stream read by an upload)."""
    header_bytes = header_format.new_header(data_key, key_id, key_version, segment_size).encode()
    aad = header_format.associated_data(header_bytes, context)
    return header_bytes, header_format.stream_key(data_key), aad, segments.Layout(segment_size)


def encrypt_stream(
    source: BinaryIO,
    sink: BinaryIO,
    data_key: bytes,
    key_id: str,
    key_version: int,
    context: Context,
    segment_size: int = header_format.DEFAULT_SEGMENT_SIZE,
) -> int:
    """Encrypt everything `source` holds into `sink`; the plaintext length."""
    header_bytes, key, aad, layout = _sealing(data_key, key_id, key_version, context, segment_size)
    sink.write(header_bytes)
    return segments.encrypt(source, sink.write, key, aad, layout)


def encrypt_file(
    source: str | os.PathLike[str],
    destination: str | os.PathLike[str],
    data_key: bytes,
    key_id: str,
    key_version: int,
    context: Context,
    segment_size: int = header_format.DEFAULT_SEGMENT_SIZE,
) -> int:
    with open(source, "rb") as plain, open(destination, "wb") as sealed:
        return encrypt_stream(plain, sealed, data_key, key_id, key_version, context, segment_size)


def read_header(source: BinaryIO, artefact: str) -> tuple[Header, bytes]:
    try:
        return header_format.read_header(source)
    except HeaderError as error:
        raise DecryptionError(artefact, error.problem) from None


def read_header_of(path: str | os.PathLike[str], artefact: str) -> Header:
    """The header of an encrypted file on disk (to learn which data key opens it)."""
    with open(path, "rb") as sealed:
        return read_header(sealed, artefact)[0]


Opener = Callable[[Header], tuple[bytes, Context]]


def _open(source: BinaryIO, opener: Opener, name: str) -> tuple[Header, int, bytes, bytes, str]:
    """(header, its length, stream key, associated data, artefact) once the data key the
    opener returns matches the commitment; the opener also says what the artefact is."""
    header, header_bytes = read_header(source, name)
    data_key, context = opener(header)
    try:
        header_format.verify_commitment(header, data_key)
    except (HeaderError, ValueError) as error:
        raise DecryptionError(context.artefact, str(error)) from None
    aad = header_format.associated_data(header_bytes, context)
    key = header_format.stream_key(data_key)
    return header, len(header_bytes), key, aad, context.artefact


def decrypt_opened(
    source: BinaryIO, write: Callable[[bytes], object], opener: Opener, name: str
) -> int:
    """Decrypt `source` into `write` with the data key and context `opener` gives for its
    header (a key service asked once the header names the key); plaintext length."""
    header, _, key, aad, artefact = _open(source, opener, name)
    try:
        return segments.decrypt(source, write, key, aad, segments.Layout(header.segment_size))
    except segments.SegmentError as error:
        raise DecryptionError(artefact, _segment_problem(error)) from None


def decrypt_stream(
    source: BinaryIO, write: Callable[[bytes], object], key_for: KeyLookup, context: Context
) -> int:
    """Decrypt `source` into `write`, each segment once it authenticates; plaintext length.

    A failure after the first segment leaves earlier, authenticated segments written: use
    `decrypt_file` (or discard what was written) where partial plaintext must never appear.
    """
    return decrypt_opened(source, write, lambda h: (key_for(h), context), context.artefact)


def decrypt_into_file(
    source: BinaryIO, destination: str | os.PathLike[str], opener: Opener, name: str
) -> int:
    """Decrypt a stream to `destination`, which appears only whole and authenticated."""
    destination = Path(destination)
    handle, temporary = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.")
    try:
        with os.fdopen(handle, "wb") as plain:
            length = decrypt_opened(source, plain.write, opener, name)
        os.replace(temporary, destination)
        return length
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def decrypt_file(
    source: str | os.PathLike[str],
    destination: str | os.PathLike[str],
    key_for: KeyLookup,
    context: Context,
) -> int:
    """Decrypt a file to `destination`, which appears only whole and authenticated."""
    with open(source, "rb") as sealed:
        return decrypt_into_file(
            sealed, destination, lambda h: (key_for(h), context), context.artefact
        )


class EncryptingReader(io.RawIOBase):
    """A file's ciphertext, produced as it is read: an HTTP body that streams (its `len` is
    known in advance, so it goes with a Content-Length) without a ciphertext copy on disk.
    Not seekable: a retry must start a new reader (and so a new data key's stream)."""

    def __init__(self, chunks: Iterator[bytes], length: int, close: Callable[[], None]) -> None:
        super().__init__()
        self._chunks, self._pending, self._position = chunks, b"", 0
        self.len = length
        self._close_source = close

    def __len__(self) -> int:
        return self.len

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = chunk
        count = min(len(buffer), len(self._pending))
        buffer[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        self._position += count
        return count

    def close(self) -> None:
        self._close_source()
        super().close()


def encrypting_reader(
    source: str | os.PathLike[str],
    data_key: bytes,
    key_id: str,
    key_version: int,
    context: Context,
    segment_size: int = header_format.DEFAULT_SEGMENT_SIZE,
) -> EncryptingReader:
    """The ciphertext of the file at `source`, to be read once (an upload's body)."""
    header_bytes, key, aad, layout = _sealing(data_key, key_id, key_version, context, segment_size)
    plain = open(source, "rb")  # noqa: SIM115 (closed with the reader)
    size = os.fstat(plain.fileno()).st_size
    chunks = segments.encrypt_chunks(plain, key, aad, layout)

    def all_chunks() -> Iterator[bytes]:
        yield header_bytes
        yield from chunks

    return EncryptingReader(
        all_chunks(), len(header_bytes) + layout.ciphertext_size(size), plain.close
    )


def plaintext_size(ciphertext_size: int, header_bytes: bytes, artefact: str) -> int:
    """The decrypted length of a file of this size (what a listing shows a reader)."""
    header, raw = read_header(io.BytesIO(header_bytes), artefact)
    try:
        return segments.Layout(header.segment_size).plaintext_size(ciphertext_size - len(raw))
    except segments.SegmentError as error:
        raise DecryptionError(artefact, error.problem) from None


def read_range(
    read_at: Callable[[int, int], bytes],
    ciphertext_size: int,
    key_for: KeyLookup,
    context: Context,
    offset: int,
    length: int,
) -> bytes:
    """`length` plaintext bytes from `offset`, decrypting only the segments that cover them.

    `read_at(offset, length)` reads the stored file (a local file, or an HTTP range of an
    object). The last segment is authenticated too, so a file cut at a segment boundary is
    refused even when the range lies before the cut.
    """
    if offset < 0 or length < 0:
        raise ValueError("offset and length are not negative")
    probe = read_at(0, header_format.MAX_HEADER_SIZE)
    opener: Opener = lambda h: (key_for(h), context)  # noqa: E731
    header, base, key, aad, _ = _open(io.BytesIO(probe), opener, context.artefact)
    layout = segments.Layout(header.segment_size)
    try:
        count = layout.segment_count(ciphertext_size - base)
        total = layout.plaintext_size(ciphertext_size - base)
        salt, prefix = segments.parse_header(read_at(base, segments.HEADER_SIZE))
        cipher = segments.derive_key(key, salt, aad)
        end = min(offset + length, total)
        if end <= offset:
            wanted: list[int] = [count - 1]
        else:
            wanted = list(range(layout.segment_at(offset), layout.segment_at(end - 1) + 1))
        if wanted[-1] != count - 1:
            wanted.append(count - 1)
        pieces = []
        for index in wanted:
            start, size = layout.segment_span(index)
            size = min(size, ciphertext_size - base - start)
            ciphertext = read_at(base + start, size)
            if len(ciphertext) != size:
                raise segments.SegmentError("truncated: the file is shorter than its size")
            plain = segments.decrypt_segment(cipher, prefix, index, index == count - 1, ciphertext)
            first = layout.plaintext_start(index)
            pieces.append(plain[max(offset - first, 0) : max(end - first, 0)])
    except segments.SegmentError as error:
        raise DecryptionError(context.artefact, _segment_problem(error)) from None
    return b"".join(pieces)
