"""After: the MLflow UI's artefact downloads, decrypted on the server for their reader.

The UI cannot run the client plugin, so the files it shows (`/get-artifact` for a run's,
`logged-models/<id>/artifacts/files` for a logged model's, `get-trace-artifact` for a
trace's data and attachments when the store keeps no spans) are decrypted here when they are
in the encrypted format: the request has already been allowed as a read of that run or
logged model (the same rule the bundled policy applies to unwrapping its data keys), and the
data key opens only if the key service issued it for exactly this artefact (a ciphertext
copied in from another project's artefact does not open here). Every other route, the
client's own download (`mlflow-artifacts`) included, passes ciphertext through untouched.

The whole file is decrypted before any byte is sent (never partial plaintext), so only files
up to `MAX_DECRYPTED` bytes are shown; a larger one gets a JSON error that names the client
download as the fix. Trade-off (docs/threat-model.md): the server sees the plaintext of what
it shows the UI, for the moment of the request; the artefact store never does.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import anyio

from mlflow_secure.crypto import artefact
from mlflow_secure.crypto.header import MAGIC, Context
from mlflow_secure.errors import ErrorResponse
from mlflow_secure.identity.records import IdentityError
from mlflow_secure.keys import service
from mlflow_secure.keys.wrapping import KeyWrapper

MAX_DECRYPTED = 64 * 1024 * 1024

# endpoint -> (identity prefix, id parameter names, path parameter name)
UI_DOWNLOADS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "mlflow.artifacts.get": ("runs", ("run_id", "run_uuid"), "path"),
    "mlflow.logged_models.get_artifact": ("models", ("model_id",), "artifact_file_path"),
}


def identity_of(endpoint: str, params: dict[str, Any] | None) -> str | None:
    """The artefact identity a UI download names (as the key service computes it)."""
    if endpoint == "mlflow.traces.get_artifact" and params:
        trace = params.get("request_id")
        if not isinstance(trace, str) or not trace:
            return None
        attachment = params.get("path")
        inside = f"attachments/{attachment.strip('/')}" if isinstance(attachment, str) else ""
        return f"traces/{trace}/artifacts/{inside or 'traces.json'}"
    shape = UI_DOWNLOADS.get(endpoint)
    if shape is None or not params:
        return None
    prefix, id_names, path_name = shape
    owner = next((params[n] for n in id_names if isinstance(params.get(n), str)), None)
    path = params.get(path_name)
    if not owner or not isinstance(path, str) or not path:
        return None
    return f"{prefix}/{owner}/artifacts/{path.strip('/')}"


class ServerDecryption:
    """Opens an encrypted artefact's bytes for the request that was allowed to read it."""

    def __init__(self, sessions: Any, wrapper: KeyWrapper | None) -> None:
        self._sessions = sessions
        self._wrapper = wrapper

    def plaintext(self, body: bytes, identity: str, experiment_id: object) -> bytes | ErrorResponse:
        if len(body) > MAX_DECRYPTED:
            return _too_large(identity)
        if self._wrapper is None:
            return ErrorResponse(503, f"artefact {identity!r} is encrypted and {NO_KEY_SERVICE}")
        try:
            header, _ = artefact.read_header(io.BytesIO(body), identity)
            with self._sessions() as session:
                record = service.find_for(session, header.key_id, identity, experiment_id)
                data_key = service.open_key(session, self._wrapper, record, identity)
                project = record.project
            out = bytearray()
            artefact.decrypt_stream(
                io.BytesIO(body), out.extend, lambda _h: data_key, Context(project, identity)
            )
            return bytes(out)
        except IdentityError as exc:
            return ErrorResponse(
                exc.status, f"artefact {identity!r} is encrypted and cannot be shown: {exc}"
            )
        except artefact.DecryptionError as exc:
            return ErrorResponse(500, str(exc), error_code="DATA_LOSS")


NO_KEY_SERVICE = "the key service has no master key (MLFLOW_SECURE_MASTER_KEY_FILE)"


def _headers_for(start: dict[str, Any], length: int) -> list[tuple[bytes, bytes]]:
    kept = [(k, v) for k, v in start.get("headers", []) if k.lower() not in _LENGTH_HEADERS]
    return [*kept, (b"content-length", str(length).encode())]


_LENGTH_HEADERS = {b"content-length", b"etag", b"content-encoding"}


def _too_large(identity: str) -> ErrorResponse:
    return ErrorResponse(
        400,
        f"artefact {identity!r} is encrypted and larger than {MAX_DECRYPTED >> 20} MiB:"
        " download it with the mlflow-secure client "
        "(mlflow.artifacts.download_artifacts) to decrypt it on your machine",
    )


def _plaintext_or_refusal(
    opener: ServerDecryption, body: bytes, size: int, identity: str, experiment_id: object
) -> bytes | ErrorResponse:
    if size > MAX_DECRYPTED:
        return _too_large(identity)
    return opener.plaintext(body, identity, experiment_id)


def asgi_decrypting(
    send: Callable, opener: ServerDecryption, identity: str, experiment_id: object
) -> Callable:
    """`send` that holds a successful response until its first bytes say whether it is an
    encrypted artefact: plaintext passes on at once, ciphertext is gathered and decrypted."""
    held: dict[str, Any] = {"body": [], "size": 0}

    async def sender(message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            if message["status"] != 200:
                held["passing"] = True
                await send(message)
                return
            held["start"] = message
            return
        if kind != "http.response.body" or held.get("passing"):
            await send(message)
            return
        chunk, more = message.get("body", b""), message.get("more_body", False)
        held["size"] += len(chunk)
        if held["size"] <= MAX_DECRYPTED:  # past the limit, only counted: memory bounded
            held["body"].append(chunk)
        if "encrypted" not in held:
            first = b"".join(held["body"])  # a few bytes: the first chunks only
            if len(first) < len(MAGIC) and more:
                return
            held["encrypted"] = first.startswith(MAGIC)
            if not held["encrypted"]:
                held["passing"] = True
                await send(held.pop("start"))
                await send({"type": "http.response.body", "body": first, "more_body": more})
                return
            held["body"] = [first]
        if more:
            return
        gathered = b"".join(held["body"]) if held["size"] <= MAX_DECRYPTED else b""
        # decrypting is CPU work: off the event loop, so other requests go on being served
        answer = await anyio.to_thread.run_sync(
            _plaintext_or_refusal, opener, gathered, held["size"], identity, experiment_id
        )
        if isinstance(answer, ErrorResponse):
            headers = [(k.encode(), v.encode()) for k, v in answer.header_list()]
            await send({"type": "http.response.start", "status": answer.status, "headers": headers})
            await send({"type": "http.response.body", "body": answer.body(), "more_body": False})
            return
        start = held.pop("start")
        await send({**start, "headers": _headers_for(start, len(answer))})
        await send({"type": "http.response.body", "body": answer, "more_body": False})

    return sender


def collect_bounded(response: Any) -> list[bytes]:
    """A WSGI response's chunks, whole as the WSGI front door always holds them, except an
    encrypted one: held only up to one byte past `MAX_DECRYPTED` (the rest is not read, the
    iterable is closed), which `wsgi_decrypted` then refuses as too large."""
    chunks: list[bytes] = []
    size, encrypted = 0, None
    try:
        for chunk in response:
            chunks.append(chunk)
            size += len(chunk)
            if encrypted is None and size >= len(MAGIC):
                encrypted = b"".join(chunks)[: len(MAGIC)] == MAGIC
            if encrypted and size > MAX_DECRYPTED:
                break
    finally:
        close = getattr(response, "close", None)
        if close is not None:
            close()
    return chunks


def wsgi_decrypted(
    status: str,
    headers: list[tuple[str, str]],
    body: list[bytes],
    opener: ServerDecryption,
    identity: str,
    experiment_id: object,
) -> tuple[str, list[tuple[str, str]], list[bytes]]:
    """The WSGI twin: the response is already materialised by the front door."""
    data = b"".join(body)
    if not status.startswith("200") or not data.startswith(MAGIC):
        return status, headers, body
    answer = opener.plaintext(data, identity, experiment_id)
    if isinstance(answer, ErrorResponse):
        return (
            f"{answer.status} {HTTPStatus(answer.status).phrase}",
            answer.header_list(),
            [answer.body()],
        )
    kept = [(k, v) for k, v in headers if k.lower().encode() not in _LENGTH_HEADERS]
    return status, [*kept, ("Content-Length", str(len(answer)))], [answer]
