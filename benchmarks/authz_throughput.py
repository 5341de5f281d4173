"""Throughput of stock MLflow, `--app-name basic-auth` and `--app-name secure`, same run.

Mixed workload (log-batch, get run, search runs) from concurrent clients for a fixed time
against each server (two workers each, SQLite), then a listing benchmark: experiment search
over 10,000 experiments of which the caller may read 1%, against stock's unfiltered search
on an identical database. Ratios are printed; goals are in the issue, not asserted here.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx
from tests.support import servers

CLIENT_THREADS = 8
DURATION = 8.0
ROUNDS = 3
WARMUP = 3.0
WORKERS = 2
BASIC_PASSWORD = "benchmark-admin-password-1"


def stock_server(
    directory: Path, extra: list[str] | None = None, env: dict | None = None, workers: int = WORKERS
) -> servers.Server:
    """`mlflow server` (no app, or `extra` options) on its own SQLite database."""
    port = servers.free_port()
    backend = f"sqlite:///{directory / 'mlflow.db'}"
    command = [
        servers.MLFLOW,
        "server",
        "--backend-store-uri",
        backend,
        "--artifacts-destination",
        str(directory / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        *(extra or []),
    ]
    server_env = servers.server_env(directory, env)
    return servers.wait_healthy(servers.spawn(directory, command, server_env, port, backend))


def _basic_auth(directory: Path):
    config = directory / "basic_auth.ini"
    config.write_text(
        "[mlflow]\ndefault_permission = READ\n"
        f"database_uri = sqlite:///{directory / 'basic_auth.db'}\n"
        "admin_username = admin\n"
        f"admin_password = {BASIC_PASSWORD}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    env = {
        "MLFLOW_AUTH_CONFIG_PATH": str(config),
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "benchmark-secret-key",
    }
    return stock_server(directory, ["--app-name", "basic-auth"], env)


def _load(url: str, headers: dict[str, str], duration: float = DURATION) -> float:
    """Requests per second of the mixed workload from CLIENT_THREADS clients."""
    with httpx.Client(headers=headers, timeout=60) as client:
        experiment = client.post(
            f"{url}/api/2.0/mlflow/experiments/create", json={"name": f"bench-{time.time_ns()}"}
        ).json()["experiment_id"]
    counts = []
    stop = time.monotonic() + duration
    errors: list[str] = []

    def worker() -> None:
        done = 0
        with httpx.Client(headers=headers, timeout=60) as client:
            run_id = client.post(
                f"{url}/api/2.0/mlflow/runs/create", json={"experiment_id": experiment}
            ).json()["run"]["info"]["run_id"]
            step = 0
            while time.monotonic() < stop:
                step += 1
                calls = [
                    (
                        "POST",
                        "/api/2.0/mlflow/runs/log-batch",
                        {
                            "run_id": run_id,
                            "metrics": [
                                {"key": "m", "value": step, "timestamp": step, "step": step}
                            ],
                        },
                    ),
                    ("GET", f"/api/2.0/mlflow/runs/get?run_id={run_id}", None),
                    (
                        "POST",
                        "/api/2.0/mlflow/runs/search",
                        {"experiment_ids": [experiment], "max_results": 10},
                    ),
                ]
                for method, path, body in calls:
                    response = client.request(method, url + path, json=body)
                    if response.status_code != 200:
                        errors.append(f"{method} {path}: {response.status_code}")
                        return
                    done += 1
        counts.append(done)

    threads = [threading.Thread(target=worker) for _ in range(CLIENT_THREADS)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"workload failed against {url}: {errors[:3]}")
    return sum(counts) / (time.monotonic() - started)


def _seed_experiments(database: Path, total: int, readable: int) -> None:
    from mlflow.entities import ExperimentTag
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore(f"sqlite:///{database}", "mlflow-artifacts:/")
    classifications = ("public", "internal", "confidential")
    for index in range(total):
        project = "visible" if index % (total // readable) == 0 else "hidden"
        # Realistic variety for the policy: 50 owners, three classifications.
        tags = {
            "mlflow.secure.project": project,
            "mlflow.secure.classification": classifications[index % 3],
            "mlflow.user": f"user{index % 50}",
        }
        store.create_experiment(
            f"e{index:05d}", tags=[ExperimentTag(k, v) for k, v in tags.items()]
        )


def _search_latency(url: str, headers: dict[str, str], rounds: int = 20) -> tuple[float, int]:
    samples, found = [], 0
    with httpx.Client(headers=headers, timeout=120) as client:
        for _ in range(rounds):
            started = time.perf_counter()
            response = client.get(
                f"{url}/api/2.0/mlflow/experiments/search", params={"max_results": 100}
            )
            samples.append(time.perf_counter() - started)
            response.raise_for_status()
            found = len(response.json().get("experiments", []))
    return statistics.median(samples), found


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        only = os.environ.get("BENCH_ONLY")  # "throughput" or "search": one half alone
        if only != "search":
            _throughput(root)
        if only != "throughput":
            _search(root)


def _throughput(root: Path) -> None:
    """All three servers up at once, loaded in turn for ROUNDS rounds: each figure is the
    median of its rounds, so a noisy moment on a shared machine hits every server alike."""
    for name in ("stock", "basic", "secure"):
        (root / name / "artifacts").mkdir(parents=True)
    started = {
        "stock": (stock_server(root / "stock"), lambda server: {}),
        "basic-auth": (
            _basic_auth(root / "basic"),
            lambda server: {"Authorization": httpx.BasicAuth("admin", BASIC_PASSWORD)._auth_header},
        ),
        "secure": (
            servers.start(root / "secure", workers=WORKERS),
            lambda server: {"Authorization": f"Bearer {server.admin_key()}"},
        ),
    }
    rates: dict[str, list[float]] = {name: [] for name in started}
    try:
        for server, headers in started.values():  # warm-up, not counted: cold caches
            _load(server.url, headers(server), WARMUP)
        for _ in range(ROUNDS):
            for name, (server, headers) in started.items():
                rates[name].append(_load(server.url, headers(server)))
    finally:
        for server, _ in started.values():
            server.interrupt()
    results = {name: statistics.median(values) for name, values in rates.items()}
    print(
        f"authz_throughput: mixed log-batch/get-run/search-runs, {CLIENT_THREADS} clients, "
        f"{WARMUP:g} s warm-up, then {ROUNDS} rounds of {DURATION:g} s, {WORKERS} workers each "
        "(median of rounds)"
    )
    for name, rate in results.items():
        ratio = rate / results["stock"]
        rounds = ", ".join(f"{value:.1f}" for value in rates[name])
        print(f"  {name:<11} {rate:8.1f} requests/s  (ratio to stock {ratio:.3f}; rounds {rounds})")
    print(f"  secure / basic-auth        {results['secure'] / results['basic-auth']:.3f}")


def _search(root: Path) -> None:
    for name in ("stock10k", "secure10k"):
        (root / name / "artifacts").mkdir(parents=True)
    seeded = root / "seed.db"
    _seed_experiments(seeded, 10_000, 100)
    shutil.copy(seeded, root / "stock10k" / "mlflow.db")
    shutil.copy(seeded, root / "secure10k" / "mlflow.db")
    stock = stock_server(root / "stock10k")
    try:
        stock_median, stock_found = _search_latency(stock.url, {})
    finally:
        stock.interrupt()
    secure = servers.start(root / "secure10k", workers=1)
    try:
        admin = secure.admin_key()
        api = "/api/2.0/mlflow-secure/"
        secure.api("POST", api + "projects/create", admin, json={"name": "visible"})
        reader = {"name": "reader", "clearance": "confidential"}
        secure.api("POST", api + "users/create", admin, json=reader)
        secure.api(
            "POST",
            api + "projects/set-member",
            admin,
            json={"project": "visible", "role": "viewer", "principal": "reader"},
        )
        key = secure.api(
            "POST", api + "keys/create", admin, json={"principal": "reader", "scopes": ["read"]}
        ).json()["key"]
        secure_median, secure_found = _search_latency(
            secure.url, {"Authorization": f"Bearer {key}"}
        )
    finally:
        secure.interrupt()
    print("authz_throughput: experiment search, 10,000 experiments, caller may read 1%")
    print(f"  stock (unfiltered)  median {stock_median * 1000:8.1f} ms, {stock_found} returned")
    print(
        f"  secure (filtered)   median {secure_median * 1000:8.1f} ms, {secure_found} returned"
        f"  (ratio {secure_median / stock_median:.2f}; goal <= 1.5)"
    )
