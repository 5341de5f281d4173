"""Per-request overhead of authentication, against stock MLflow in the same run.

Two servers on this machine, one worker each, same SQLite backend layout: stock
`mlflow server` and `mlflow server --app-name secure`. The same cheap read
(`experiments/get` of the default experiment) is sent sequentially over one keep-alive
connection, alternating batches between the servers so that machine noise hits both alike.

It reports the end-to-end difference of the medians (authentication + policy decision +
routing), and, in-process, the authentication step alone on its common path (a key already
known to the worker) and one OPA decision round trip, so the overhead can be attributed.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import httpx
from tests.support import servers

from benchmarks.authz_throughput import stock_server

REQUESTS_PER_BATCH = 200
BATCHES = 10
WARMUP = 200
PATH = "/api/2.0/mlflow/experiments/get?experiment_id=0"


def _latencies(client: httpx.Client, url: str, count: int) -> list[float]:
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        response = client.get(url)
        samples.append(time.perf_counter() - started)
        if response.status_code != 200:
            raise RuntimeError(f"{url} answered {response.status_code}: {response.text[:200]}")
    return samples


def _in_process_costs(policy_dir: Path) -> tuple[float, float]:
    """Median seconds of the cached authentication path and of one OPA decision."""
    from mlflow_secure.config import Settings
    from mlflow_secure.identity import store
    from mlflow_secure.identity.authenticator import Authenticator
    from mlflow_secure.identity.credentials import Bearer, parse_authorization
    from mlflow_secure.identity.throttle import Throttle
    from mlflow_secure.policy.engine import PROBE_INPUT, start_policy_engine

    with tempfile.TemporaryDirectory() as tmp:
        engine = store.open_engine(f"sqlite:///{tmp}/id.db")
        store.migrate(engine)
        sessions = store.session_factory(engine)
        with sessions.begin() as session:
            store.create_principal(session, "bench", "user", roles=["admin"])
            key, _ = store.create_key(session, "bench", ["read"])
        authenticator = Authenticator(sessions, Throttle(sessions))
        authenticator.start()
        header = [f"Bearer {key}".encode()]
        authenticator.authenticate(Bearer(key))
        auth_samples = []
        for _ in range(20000):
            started = time.perf_counter()
            credential = parse_authorization(header)
            subject = authenticator.cached(credential)
            auth_samples.append(time.perf_counter() - started)
            assert subject is not None
        policy = start_policy_engine(Settings(runtime_dir=f"{tmp}/run", policy_dir=str(policy_dir)))
        decision_samples = []
        for _ in range(3000):
            started = time.perf_counter()
            policy.client.decide_sync(PROBE_INPUT)
            decision_samples.append(time.perf_counter() - started)
        policy.stop_watching()
        policy.supervisor.stop()
        authenticator.stop()
        engine.dispose()
    return statistics.median(auth_samples), statistics.median(decision_samples)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "stock").mkdir()
        (root / "secure").mkdir()
        stock = stock_server(root / "stock", workers=1)
        secure = servers.start(root / "secure")
        try:
            key = secure.admin_key()
            stock_samples: list[float] = []
            secure_samples: list[float] = []
            with (
                httpx.Client() as plain,
                httpx.Client(headers={"Authorization": f"Bearer {key}"}) as authed,
            ):
                _latencies(plain, stock.url + PATH, WARMUP)
                _latencies(authed, secure.url + PATH, WARMUP)
                for _ in range(BATCHES):
                    stock_samples += _latencies(plain, stock.url + PATH, REQUESTS_PER_BATCH)
                    secure_samples += _latencies(authed, secure.url + PATH, REQUESTS_PER_BATCH)
        finally:
            stock.interrupt()
            secure.interrupt()
        auth_cost, decision_cost = _in_process_costs(Path(__file__).parents[1] / "rego")

    stock_median = statistics.median(stock_samples) * 1000
    secure_median = statistics.median(secure_samples) * 1000
    print(
        "auth_overhead: sequential GET experiments/get, 1 worker each, "
        f"{len(stock_samples)} requests per server"
    )
    print(f"  stock mlflow server          median {stock_median:7.3f} ms")
    print(f"  --app-name secure (API key)  median {secure_median:7.3f} ms")
    print(
        f"  end-to-end overhead          median {secure_median - stock_median:7.3f} ms "
        f"(ratio secure/stock {secure_median / stock_median:.3f})"
    )
    print(
        f"  authentication alone         median {auth_cost * 1e3:7.3f} ms "
        "(parse header + cached key check, in process; goal < 0.3 ms)"
    )
    print(
        f"  one OPA decision round trip  median {decision_cost * 1e3:7.3f} ms "
        "(unix socket, in process)"
    )
