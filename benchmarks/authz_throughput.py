"""Throughput of stock MLflow, `--app-name basic-auth` and `--app-name secure`, same run.

Mixed workload (log-batch, get run, search runs) from concurrent clients for a fixed time
against each server (two workers each, SQLite). Listings at scale are listing_scale.py's.

Every answer that is not 2xx is counted per server and printed (a 503 under load is a
decision that could not be had, a finding in itself); the throughput counts 2xx answers only.
Ratios are printed against the goals; nothing is asserted here.
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
from tests.support import servers

CLIENT_THREADS = 8
DURATION = 8.0
ROUNDS = 3
WARMUP = 3.0
WORKERS = 2
BASIC_PASSWORD = "benchmark-admin-password-1"
MIXED_GOAL = 0.90  # secure / stock requests per second, at least


def stock_server(
    directory: Path,
    extra: list[str] | None = None,
    env: dict | None = None,
    workers: int = WORKERS,
    backend_uri: str | None = None,
) -> servers.Server:
    """`mlflow server` (no app, or `extra` options) on its own SQLite database, or on
    `backend_uri`."""
    port = servers.free_port()
    backend = backend_uri or f"sqlite:///{directory / 'mlflow.db'}"
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


def statuses(counts: Counter) -> str:
    """`none`, or the non-2xx answers by status: `503 x3, 500 x1`."""
    if not counts:
        return "none"
    return ", ".join(f"{status} x{count}" for status, count in counts.most_common())


def _load(
    url: str, headers: dict[str, str], failures: Counter, duration: float = DURATION
) -> float:
    """2xx answers per second of the mixed workload from CLIENT_THREADS clients; every other
    answer is counted in `failures` by status, and the client carries on."""
    with httpx.Client(headers=headers, timeout=60) as client:
        created = client.post(
            f"{url}/api/2.0/mlflow/experiments/create", json={"name": f"bench-{time.time_ns()}"}
        )
        created.raise_for_status()
        experiment = created.json()["experiment_id"]
    counts = []
    stop = time.monotonic() + duration
    lock = threading.Lock()
    setup_errors: list[str] = []

    def worker() -> None:
        done, refused = 0, Counter()
        with httpx.Client(headers=headers, timeout=60) as client:
            response = client.post(
                f"{url}/api/2.0/mlflow/runs/create", json={"experiment_id": experiment}
            )
            if response.status_code != 200:
                setup_errors.append(f"runs/create: {response.status_code} {response.text[:200]}")
                return
            run_id = response.json()["run"]["info"]["run_id"]
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
                    if 200 <= response.status_code < 300:
                        done += 1
                    else:
                        refused[response.status_code] += 1
        with lock:
            counts.append(done)
            failures.update(refused)

    threads = [threading.Thread(target=worker) for _ in range(CLIENT_THREADS)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if setup_errors:
        raise RuntimeError(f"workload could not start against {url}: {setup_errors[:3]}")
    return sum(counts) / (time.monotonic() - started)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        _throughput(Path(tmp))


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
    failures: dict[str, Counter] = {name: Counter() for name in started}
    try:
        for name, (server, headers) in started.items():  # warm-up, not counted: cold caches
            _load(server.url, headers(server), failures[name], WARMUP)
        for _ in range(ROUNDS):
            for name, (server, headers) in started.items():
                rates[name].append(_load(server.url, headers(server), failures[name]))
    finally:
        for server, _ in started.values():
            server.interrupt()
    results = {name: statistics.median(values) for name, values in rates.items()}
    print(
        f"authz_throughput: mixed log-batch/get-run/search-runs, {CLIENT_THREADS} clients, "
        f"{WARMUP:g} s warm-up, then {ROUNDS} rounds of {DURATION:g} s, {WORKERS} workers each "
        "(median of rounds; 2xx answers only)"
    )
    for name, rate in results.items():
        ratio = rate / results["stock"]
        rounds = ", ".join(f"{value:.1f}" for value in rates[name])
        goal = f"; goal >= {MIXED_GOAL:.2f}" if name == "secure" else ""
        print(
            f"  {name:<11} {rate:8.1f} requests/s  (ratio to stock {ratio:.3f}{goal}; "
            f"rounds {rounds})  non-2xx: {statuses(failures[name])}"
        )
    print(f"  secure / basic-auth        {results['secure'] / results['basic-auth']:.3f}")
