"""The UI download decryption's bounds, and the trace tag only the server writes."""

from __future__ import annotations

import asyncio

import pytest

from mlflow_secure.request import decrypting
from mlflow_secure.request.canonical import BadRequest
from mlflow_secure.request.resolution import refuse_server_trace_tags


class _Opener:
    def __init__(self) -> None:
        self.asked: list[int] = []

    def plaintext(self, body: bytes, identity: str, experiment_id: object) -> bytes:
        self.asked.append(len(body))
        return b"plain"


def _run(chunks: list[bytes], opener: _Opener) -> list[dict]:
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    async def go() -> None:
        sender = decrypting.asgi_decrypting(send, opener, "runs/r/artifacts/f", "1")
        await sender({"type": "http.response.start", "status": 200, "headers": []})
        for index, chunk in enumerate(chunks):
            more = index < len(chunks) - 1
            await sender({"type": "http.response.body", "body": chunk, "more_body": more})

    asyncio.run(go())
    return sent


def test_plaintext_passes_at_once_and_ciphertext_is_decrypted_whole():
    opener = _Opener()
    sent = _run([b"PL", b"AIN", b" text"], opener)
    assert b"".join(m.get("body", b"") for m in sent) == b"PLAIN text"
    assert opener.asked == []
    sent = _run([b"ML", b"SE", b"rest"], opener)
    assert sent[-1]["body"] == b"plain"
    assert opener.asked == [8]


def test_a_ciphertext_above_the_limit_is_refused_without_being_held(monkeypatch):
    monkeypatch.setattr(decrypting, "MAX_DECRYPTED", 1024)
    opener = _Opener()
    sent = _run([b"MLSE"] + [b"\0" * 512] * 200, opener)  # 100 KiB, the limit 1 KiB
    assert sent[0]["status"] == 400
    assert b"larger than" in sent[-1]["body"]
    assert opener.asked == []


def test_wsgi_holds_an_encrypted_response_only_up_to_the_limit(monkeypatch):
    monkeypatch.setattr(decrypting, "MAX_DECRYPTED", 1024)
    read: list[int] = []

    def response():
        for index in range(10_000):
            read.append(index)
            yield b"MLSE" if index == 0 else b"\0" * 512

    chunks = decrypting.collect_bounded(response())
    assert sum(map(len, chunks)) <= 1024 + 512
    assert len(read) < 10
    plain = decrypting.collect_bounded(iter([b"text", b"\0" * 4096]))
    assert sum(map(len, plain)) == 4100  # plaintext is not cut


@pytest.mark.parametrize(
    "params",
    [
        {"key": "mlflow.artifactLocation", "value": "file:///etc"},
        {"key": "MLFLOW.ARTIFACTLOCATION", "value": "x"},
        {"tags": [{"key": "mlflow.artifactLocation", "value": "x"}]},
        {"tags": {"mlflow.artifactLocation": "x"}},
        {"trace": {"trace_info": {"tags": {"mlflow.artifactLocation": "x"}}}},
    ],
)
def test_clients_may_not_write_a_traces_artifact_location(params):
    with pytest.raises(BadRequest, match="set by the server"):
        refuse_server_trace_tags(params)


def test_other_trace_tags_pass():
    refuse_server_trace_tags({"key": "mlflow.traceName", "tags": {"team": "a"}})
