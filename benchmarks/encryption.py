"""Artefact encryption: streamed throughput against raw AES-256-GCM, and memory for 1 GiB.

Printed in one run on this machine (issue 14):
- encryption and decryption throughput of `mlflow_secure.crypto.artefact` (from a stream
  to a stream, 1 MiB segments, header and key derivation included) against raw
  AES-256-GCM from `cryptography` over the same bytes in the same 1 MiB pieces (goal
  >= 0.5), and Tink's own Python streaming AEAD over the same bytes (the reason the format is
  written with `cryptography`: docs/encryption-format.md);
- `log_artifact` + `download_artifacts` of a 256 MiB file through one secure server (1
  worker, proxied `mlflow-artifacts:` store), into a confidential experiment (encrypted by
  the client plugin) against an internal one (plaintext), rounds alternating (goal <= 1.15);
- peak RSS (VmHWM) while encrypting and while decrypting a 1 GiB artefact file, above the
  interpreter's baseline with the package imported (goal <= 64 MiB), each in a fresh
  process so neither inherits the other's peak; the plaintext is generated as it is read
  (never held), and decryption goes file to file through `decrypt_file`.
"""

from __future__ import annotations

import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mlflow_secure.crypto import artefact
from mlflow_secure.crypto.header import Context

MIB = 1024 * 1024
SIZE = 256 * MIB
ROUNDS = 5
CONTEXT = Context("bench", "1/run/artifacts/model.bin")


def _discard(_chunk: bytes) -> None:
    return None


def _raw_encrypt(data: memoryview, key: bytes) -> None:
    cipher, nonce = AESGCM(key), os.urandom(12)
    for start in range(0, len(data), MIB):
        cipher.encrypt(nonce, data[start : start + MIB], None)


def _raw_decrypt(pieces: list[tuple[bytes, bytes]], key: bytes) -> None:
    cipher = AESGCM(key)
    for nonce, piece in pieces:
        cipher.decrypt(nonce, piece, None)


def _timed(action) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def _tink_rate(data: bytes) -> float:
    try:
        import tink
        from tink import streaming_aead
    except ImportError:
        return float("nan")
    streaming_aead.register()
    handle = tink.new_keyset_handle(streaming_aead.streaming_aead_key_templates.AES256_GCM_HKDF_1MB)
    primitive = handle.primitive(streaming_aead.StreamingAead)

    class _Sink(io.RawIOBase):
        def writable(self) -> bool:
            return True

        def write(self, chunk) -> int:  # type: ignore[no-untyped-def]
            return len(chunk)

    def run() -> None:
        with primitive.new_encrypting_stream(_Sink(), b"aad") as stream:
            stream.write(data)

    return len(data) / min(_timed(run) for _ in range(2)) / 1e9


def throughput() -> None:
    data = os.urandom(SIZE)
    view, key = memoryview(data), os.urandom(32)
    sealed = io.BytesIO()
    artefact.encrypt_stream(io.BytesIO(data), sealed, key, "dk-bench", 1, CONTEXT)
    ciphertext = sealed.getvalue()
    nonce = os.urandom(12)
    pieces = [
        (nonce, AESGCM(key).encrypt(nonce, view[start : start + MIB], None))
        for start in range(0, SIZE, MIB)
    ]

    def ours_encrypt() -> None:
        artefact.encrypt_stream(io.BytesIO(data), _NullSink(), key, "dk-bench", 1, CONTEXT)

    def ours_decrypt() -> None:
        artefact.decrypt_stream(io.BytesIO(ciphertext), _discard, lambda _h: key, CONTEXT)

    rows = []
    for name, ours, raw in (
        ("encrypt", ours_encrypt, lambda: _raw_encrypt(view, key)),
        ("decrypt", ours_decrypt, lambda: _raw_decrypt(pieces, key)),
    ):
        ratios, ours_rates, raw_rates = [], [], []
        for _ in range(ROUNDS):  # alternating, so a busy moment hits both
            raw_rate = SIZE / _timed(raw) / 1e9
            ours_rate = SIZE / _timed(ours) / 1e9
            ratios.append(ours_rate / raw_rate)
            ours_rates.append(ours_rate)
            raw_rates.append(raw_rate)
        rows.append((name, ours_rates, raw_rates, ratios))
    print(f"\nartefact encryption, {SIZE // MIB} MiB in memory, 1 MiB segments, {ROUNDS} rounds")
    print(f"{'':9}{'ours GB/s':>18}{'raw AES-GCM GB/s':>20}{'ours/raw':>18}")
    for name, ours_rates, raw_rates, ratios in rows:
        print(
            f"{name:9}{_span(ours_rates):>18}{_span(raw_rates):>20}{_span(ratios, 3):>18}"
            f"   median {statistics.median(ratios):.3f} (goal >= 0.5)"
        )
    tink_rate = _tink_rate(data)
    print(f"tink's Python streaming AEAD (AES256_GCM_HKDF_1MB) encrypt: {tink_rate:.2f} GB/s")


class _NullSink:
    def write(self, chunk: bytes) -> int:
        return len(chunk)


def _span(values: list[float], digits: int = 2) -> str:
    return f"{min(values):.{digits}f}-{max(values):.{digits}f}"


_RSS_CHILD = """
import io, os, sys
from mlflow_secure.crypto import artefact
from mlflow_secure.crypto.header import Context
mode, path, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
key, context = bytes(range(32)), Context("bench", "1/run/artifacts/big.bin")
class Source(io.RawIOBase):  # 1 GiB that never exists in memory
    def __init__(self): self.left, self.block = size, os.urandom(1 << 16)
    def readable(self): return True
    def readinto(self, buffer):
        count = min(len(buffer), self.left)
        for start in range(0, count, len(self.block)):
            end = min(start + len(self.block), count)
            buffer[start:end] = self.block[: end - start]
        self.left -= count
        return count
def high_water():  # VmHWM is this process's own peak (ru_maxrss survives exec from the parent)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
baseline = high_water()
if mode == "encrypt":
    with open(path, "wb") as sink:
        artefact.encrypt_stream(Source(), sink, key, "dk-bench", 1, context)
else:
    artefact.decrypt_file(path, path + ".out", lambda _h: key, context)
    os.unlink(path + ".out")
peak = high_water()
print(baseline, peak)
"""


def peak_rss() -> None:
    size = 1024 * MIB
    with tempfile.TemporaryDirectory() as scratch:
        path = os.path.join(scratch, "big.bin.enc")
        print(f"\npeak RSS for a {size // MIB} MiB artefact (fresh process each)")
        for mode in ("encrypt", "decrypt"):
            start = time.perf_counter()
            out = subprocess.run(
                [sys.executable, "-c", _RSS_CHILD, mode, path, str(size)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout.split()
            baseline, peak = (int(value) / 1024 for value in out)
            elapsed = time.perf_counter() - start
            print(
                f"{mode:9} baseline {baseline:6.1f} MiB, peak {peak:6.1f} MiB, "
                f"above baseline {peak - baseline:5.1f} MiB (goal <= 64), "
                f"file to file {size / elapsed / 1e9:.2f} GB/s"
            )


_ROUND_TRIP_CHILD = """
import os, sys, time, tempfile
import mlflow
from mlflow import MlflowClient
source, runs = sys.argv[1], sys.argv[2:]
client = MlflowClient()
for run in runs:  # one round: each run's upload, then its download, timed
    start = time.perf_counter()
    client.log_artifact(run, source)
    with tempfile.TemporaryDirectory() as out:
        client.download_artifacts(run, os.path.basename(source), out)
    print(run, time.perf_counter() - start, flush=True)
"""


def round_trip(size: int = 256 * MIB, rounds: int = 5) -> None:
    """Through a real server with the stock client and the plugin installed."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.support import servers

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        (root / "server").mkdir()
        server = servers.start(root / "server")
        try:
            admin = server.admin_key()
            runs = {}
            for label, classification in (("encrypted", "confidential"), ("plaintext", "internal")):
                tags = [
                    {"key": "mlflow.secure.project", "value": "bench"},
                    {"key": "mlflow.secure.classification", "value": classification},
                ]
                experiment = server.api(
                    "POST",
                    "/api/2.0/mlflow/experiments/create",
                    admin,
                    json={"name": label, "tags": tags},
                ).json()["experiment_id"]
                run = server.api(
                    "POST",
                    "/api/2.0/mlflow/runs/create",
                    admin,
                    json={"experiment_id": experiment},
                ).json()["run"]["info"]["run_id"]
                runs[run] = label
            source = root / "weights.bin"
            with open(source, "wb") as out:
                for _ in range(size // MIB):
                    out.write(os.urandom(MIB))
            env = {**os.environ, "MLFLOW_TRACKING_URI": server.url, "MLFLOW_TRACKING_TOKEN": admin}
            times: dict[str, list[float]] = {"encrypted": [], "plaintext": []}
            order = list(runs)
            for index in range(rounds):
                ordered = order if index % 2 == 0 else order[::-1]
                lines = subprocess.run(
                    [sys.executable, "-c", _ROUND_TRIP_CHILD, str(source), *ordered],
                    env=env,
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout.split("\n")
                for line in filter(None, lines):
                    run, seconds = line.split()
                    times[runs[run]].append(float(seconds))
        finally:
            server.kill()
    ratios = [e / p for e, p in zip(times["encrypted"], times["plaintext"], strict=True)]
    print(
        f"\nlog_artifact + download_artifacts of {size // MIB} MiB through the server, "
        f"{rounds} rounds"
    )
    print(
        f"encrypted {_span(times['encrypted'])} s, plaintext {_span(times['plaintext'])} s, "
        f"encrypted/plaintext {_span(ratios, 3)}, median {statistics.median(ratios):.3f} "
        "(goal <= 1.15)"
    )


def main() -> None:
    throughput()
    peak_rss()
    round_trip()


if __name__ == "__main__":
    main()
