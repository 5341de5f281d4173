"""A stream whose first bytes were already read: those bytes, then the rest of it.

Used wherever the first bytes must be looked at before the stream is handed on unchanged:
the front door's check of an upload's header (WSGI input, which MLflow reads with `read`
and `readline`) and the client's check of a download (a urllib3 response, read with
`readinto`)."""

from __future__ import annotations

import io
from typing import Any


class Prefixed(io.RawIOBase):
    def __init__(self, prefix: bytes, rest: Any) -> None:
        super().__init__()
        self._prefix, self._rest = prefix, rest

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            data, self._prefix = self._prefix + self._rest.read(), b""
            return data
        if self._prefix:
            data, self._prefix = self._prefix[:size], self._prefix[size:]
            return data
        return self._rest.read(size)

    def readinto(self, buffer: Any) -> int:
        if not self._prefix and hasattr(self._rest, "readinto"):
            return self._rest.readinto(buffer)
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def readline(self, size: int | None = -1) -> bytes:
        if self._prefix:
            return self.read(size if size is not None and size >= 0 else len(self._prefix))
        return self._rest.readline(size)
