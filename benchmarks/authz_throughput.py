"""Throughput of stock MLflow, `--app-name basic-auth` and `--app-name secure`, same run.

Mixed workload (log-batch, get run, search runs) from concurrent clients for a fixed time
against each server (two workers each, SQLite), then a listing benchmark: experiment search
over 10,000 experiments of which the caller may read 1%, against stock's unfiltered search
on an identical database, side by side, on two stores: one where every experiment carries
the plugin's tags, and one that predates the plugin (99% of the experiments without any
`mlflow.secure.*` tag, owned by other users; 1% tagged with the caller's project).

Every answer that is not 2xx is counted per server and printed (a 503 under load is a
decision that could not be had, a finding in itself); the throughput counts 2xx answers only.
Ratios are printed against the goals; nothing is asserted here.
"""

from __future__ import annotations

import os
import shutil
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
SEARCH_GOAL = 1.1  # secure / stock median latency of one page, at most
SEARCH_ROUNDS = 20
# One worker each, stock and secure alike: on this machine a 2-worker `mlflow server` answers
# this search about 3x slower per request than a 1-worker one (64 vs 20 ms), so comparing
# servers with different worker counts measures that, not the filtering.
SEARCH_WORKERS = 1
EXPERIMENTS = 10_000
READABLE = 100


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


def _tags(index: int, total: int, readable: int, predates_plugin: bool) -> dict[str, str]:
    visible = index % (total // readable) == 0
    if predates_plugin:  # a store from before the plugin: only the caller's 1% was tagged
        tags = {"mlflow.user": f"user{index % 50}"}  # owned by someone else
        if visible:
            tags["mlflow.secure.project"] = "visible"
        return tags
    # Realistic variety for the policy: 50 owners, three classifications.
    return {
        "mlflow.secure.project": "visible" if visible else "hidden",
        "mlflow.secure.classification": ("public", "internal", "confidential")[index % 3],
        "mlflow.user": f"user{index % 50}",
    }


def _seed_experiments(
    database: Path, total: int, readable: int, predates_plugin: bool = False
) -> None:
    """`total` experiments as MLflow's SQL store writes them, in one transaction (one
    create_experiment call each would take minutes)."""
    from mlflow.entities.lifecycle_stage import LifecycleStage
    from mlflow.store.tracking.dbmodels.models import SqlExperiment, SqlExperimentTag
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore(f"sqlite:///{database}", "mlflow-artifacts:/")
    created = int(time.time() * 1000)
    with store.ManagedSessionMaker(read_only=False) as session:
        experiments = []
        for index in range(total):
            experiment = store._with_workspace_field(
                SqlExperiment(
                    name=f"e{index:05d}",
                    lifecycle_stage=LifecycleStage.ACTIVE,
                    creation_time=created + index,
                    last_update_time=created + index,
                )
            )
            experiment.tags = [
                SqlExperimentTag(key=key, value=value)
                for key, value in _tags(index, total, readable, predates_plugin).items()
            ]
            session.add(experiment)
            experiments.append(experiment)
        session.flush()
        for experiment in experiments:
            experiment.artifact_location = store._get_artifact_location(experiment.experiment_id)
    store.engine.dispose()


def _search_once(client: httpx.Client, url: str, failures: Counter) -> tuple[float, int]:
    started = time.perf_counter()
    response = client.get(f"{url}/api/2.0/mlflow/experiments/search", params={"max_results": 100})
    elapsed = time.perf_counter() - started
    if not 200 <= response.status_code < 300:
        failures[response.status_code] += 1
        return elapsed, -1
    return elapsed, len(response.json().get("experiments", []))


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


def _reader_key(secure: servers.Server) -> str:
    """A viewer of project `visible` (clearance confidential) with a read-only key."""
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
    response = secure.api(
        "POST", api + "keys/create", admin, json={"principal": "reader", "scopes": ["read"]}
    )
    response.raise_for_status()
    return response.json()["key"]


def _search_store(root: Path, key: str, label: str, predates_plugin: bool) -> None:
    """Stock (unfiltered) and secure (filtered) up at once on copies of one store,
    SEARCH_WORKERS each, their requests alternating: SEARCH_ROUNDS samples each, medians."""
    seeded = root / f"seed-{key}.db"
    _seed_experiments(seeded, EXPERIMENTS, READABLE, predates_plugin)
    for name in ("stock", "secure"):
        (root / f"{key}-{name}" / "artifacts").mkdir(parents=True)
        shutil.copy(seeded, root / f"{key}-{name}" / "mlflow.db")
    stock = stock_server(root / f"{key}-stock", workers=SEARCH_WORKERS)
    try:
        secure = servers.start(root / f"{key}-secure", workers=SEARCH_WORKERS)
    except BaseException:
        stock.interrupt()
        raise
    failures = {"stock": Counter(), "secure": Counter()}
    samples: dict[str, list[float]] = {"stock": [], "secure": []}
    found = {"stock": 0, "secure": 0}
    try:
        targets = {
            "stock": (stock.url, httpx.Client(timeout=120)),
            "secure": (
                secure.url,
                httpx.Client(
                    timeout=120, headers={"Authorization": f"Bearer {_reader_key(secure)}"}
                ),
            ),
        }
        for url, client in targets.values():  # warm-up: caches, connections
            for _ in range(3):
                _search_once(client, url, Counter())
        for _ in range(SEARCH_ROUNDS):
            for name, (url, client) in targets.items():
                elapsed, returned = _search_once(client, url, failures[name])
                samples[name].append(elapsed)
                found[name] = max(found[name], returned)
        for _, client in targets.values():
            client.close()
    finally:
        secure.interrupt()
        stock.interrupt()
    stock_median = statistics.median(samples["stock"])
    secure_median = statistics.median(samples["secure"])
    print(
        f"authz_throughput: experiment search (max_results=100, {SEARCH_WORKERS} worker each, "
        f"median of {SEARCH_ROUNDS}), {label}"
    )
    print(
        f"  stock (unfiltered)  median {stock_median * 1000:8.1f} ms, {found['stock']} returned"
        f"  non-2xx: {statuses(failures['stock'])}"
    )
    print(
        f"  secure (filtered)   median {secure_median * 1000:8.1f} ms, {found['secure']} returned"
        f"  (ratio {secure_median / stock_median:.2f}; goal <= {SEARCH_GOAL})"
        f"  non-2xx: {statuses(failures['secure'])}"
    )


def _search(root: Path) -> None:
    _search_store(
        root,
        "tagged",
        f"{EXPERIMENTS:,} experiments, caller may read 1%, all tagged by the plugin",
        predates_plugin=False,
    )
    _search_store(
        root,
        "untagged",
        f"{EXPERIMENTS:,} experiments, caller may read 1%, a store that predates the plugin "
        "(99% without mlflow.secure.* tags, owned by others)",
        predates_plugin=True,
    )
