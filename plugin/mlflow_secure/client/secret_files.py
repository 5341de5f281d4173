"""Reading a secret (API key, OIDC client secret) from a file only its owner can use."""

from __future__ import annotations

import os
import stat

from mlflow_secure.client.errors import config_error

MAX_SECRET_FILE_BYTES = 64 * 1024


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    remaining = limit
    while remaining > 0:
        chunk = os.read(fd, remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_secret_file(path: str, setting: str) -> str:
    """Read a secret from a file only its owner can read or write (raises `ClientError`).

    The mode is checked on the opened descriptor (no check-then-open race). A file that others
    can read has already leaked the secret to them, and one they can write lets them substitute
    their own credential, so both are refused rather than warned about.
    """
    if os.name == "nt":
        raise config_error(
            f"{setting} is not supported on Windows, where file modes do not express who may "
            "read the file; set the secret in the environment instead."
        )
    expanded = os.path.expanduser(path)
    # O_NONBLOCK: opening a FIFO must not hang the client before the type check refuses it.
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(expanded, flags)
    except OSError as exc:
        raise config_error(
            f"{setting}={expanded!r} cannot be opened: {exc.strerror or type(exc).__name__}."
        ) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise config_error(f"{setting}={expanded!r} is not a regular file.")
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o066:
            raise config_error(
                f"{setting}={expanded!r} is readable or writable by group or others "
                f"(mode {mode:04o}); restrict it to its owner with `chmod 600 {expanded}`."
            )
        data = _read_at_most(fd, MAX_SECRET_FILE_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_SECRET_FILE_BYTES:
        raise config_error(f"{setting}={expanded!r} is too large to be a secret file.")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise config_error(f"{setting}={expanded!r} is not UTF-8 text.") from None
    secret = text.strip()
    if not secret:
        raise config_error(f"{setting}={expanded!r} is empty.")
    return secret
