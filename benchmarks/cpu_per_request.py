"""CPU per request of the whole server process tree, stock MLflow vs `--app-name secure`.

Throughput ratios on a shared machine swing by ±20% with whatever else runs; the CPU a server
spends per answered request barely moves, and it is what an operator pays for. For each
workload, both servers (two uvicorn workers each, SQLite, up at once) are loaded in turn by
CLIENTS concurrent clients for ROUNDS rounds; the CPU time (user + system) of each server's
whole process tree (the `mlflow server` process, uvicorn's supervisor and workers and, for
secure, its managed OPA) is read with psutil before and after each round, and divided by the
2xx answers of that round. Printed per workload: requests per second, p50/p99 latency, CPU
per request, the non-2xx answers, and secure / stock for CPU and throughput.

The secure server is used as an ordinary user, an editor of project `bench` with a
read/write key: the policy decides every request (an administrator's requests take shorter
paths through the rules). Experiment search runs over EXPERIMENTS experiments of which the
user may read 1%, on identical copies of one store. Nothing is asserted here.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
from tests.support import servers

from benchmarks.authz_throughput import statuses, stock_server
from benchmarks.listing_scale import seed_experiments

CLIENTS = 16
DURATION = 6.0
ROUNDS = 2
WARMUP = 2.0
WORKERS = 2
EXPERIMENTS = 2_000
CPU_GOAL = 1.15  # secure / stock CPU per request, at most
THROUGHPUT_GOAL = 0.95  # secure / stock requests per second (mixed), at least
API = "/api/2.0/mlflow-secure/"

Call = tuple[str, str, dict | None]  # method, path with query, JSON body


@dataclass
class Target:
    name: str
    url: str
    headers: dict[str, str]
    processes: list[psutil.Process]
    experiment: str = ""
    runs: list[str] = field(default_factory=list)


@dataclass
class Round:
    answered: int
    seconds: float
    cpu: float
    latencies: list[float]
    refused: Counter


def _tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def _cpu(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total


def _editor_key(secure: servers.Server) -> str:
    admin = secure.admin_key()
    for path, body in (
        ("projects/create", {"name": "bench"}),
        ("users/create", {"name": "editor", "clearance": "confidential"}),
        ("projects/set-member", {"project": "bench", "role": "editor", "principal": "editor"}),
        # the seeded store's readable 1% is in project `one` (listing_scale)
        ("projects/create", {"name": "one"}),
        ("projects/set-member", {"project": "one", "role": "viewer", "principal": "editor"}),
    ):
        secure.api("POST", API + path, admin, json=body).raise_for_status()
    response = secure.api(
        "POST",
        API + "keys/create",
        admin,
        json={"principal": "editor", "scopes": ["read", "write"]},
    )
    response.raise_for_status()
    return response.json()["key"]


def _prepare(target: Target) -> None:
    """One experiment (in project `bench` for secure: the editor's default project) and one
    run per client."""
    with httpx.Client(headers=target.headers, timeout=60) as client:
        created = client.post(
            f"{target.url}/api/2.0/mlflow/experiments/create", json={"name": "cpu-bench"}
        )
        created.raise_for_status()
        target.experiment = created.json()["experiment_id"]
        for _ in range(CLIENTS):
            response = client.post(
                f"{target.url}/api/2.0/mlflow/runs/create",
                json={"experiment_id": target.experiment},
            )
            response.raise_for_status()
            target.runs.append(response.json()["run"]["info"]["run_id"])


def _workloads() -> dict[str, Callable[[Target, int, int], list[Call]]]:
    def log_batch(target: Target, client: int, step: int) -> list[Call]:
        metric = {"key": "m", "value": step, "timestamp": step, "step": step}
        body = {"run_id": target.runs[client], "metrics": [metric]}
        return [("POST", "/api/2.0/mlflow/runs/log-batch", body)]

    def get_run(target: Target, client: int, step: int) -> list[Call]:
        return [("GET", f"/api/2.0/mlflow/runs/get?run_id={target.runs[client]}", None)]

    def search_runs(target: Target, client: int, step: int) -> list[Call]:
        body = {"experiment_ids": [target.experiment], "max_results": 10}
        return [("POST", "/api/2.0/mlflow/runs/search", body)]

    def mixed(target: Target, client: int, step: int) -> list[Call]:
        return [
            *log_batch(target, client, step),
            *get_run(target, client, step),
            *search_runs(target, client, step),
        ]

    def search_experiments(target: Target, client: int, step: int) -> list[Call]:
        return [("GET", "/api/2.0/mlflow/experiments/search?max_results=100", None)]

    return {
        "get-run": get_run,
        "log-batch": log_batch,
        "search-runs": search_runs,
        "mixed": mixed,
        "experiment search": search_experiments,
    }


def _load(
    target: Target, calls: Callable[[Target, int, int], list[Call]], duration: float
) -> Round:
    stop = time.monotonic() + duration
    lock = threading.Lock()
    latencies: list[float] = []
    refused: Counter = Counter()
    answered = [0]

    def client_loop(index: int) -> None:
        mine: list[float] = []
        done, failed = 0, Counter()
        with httpx.Client(headers=target.headers, timeout=60) as client:
            step = 0
            while time.monotonic() < stop:
                step += 1
                for method, path, body in calls(target, index, step):
                    started = time.perf_counter()
                    response = client.request(method, target.url + path, json=body)
                    if 200 <= response.status_code < 300:
                        done += 1
                        mine.append(time.perf_counter() - started)
                    else:
                        failed[response.status_code] += 1
        with lock:
            answered[0] += done
            latencies.extend(mine)
            refused.update(failed)

    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(CLIENTS)]
    cpu_before, started = _cpu(target.processes), time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.monotonic() - started
    return Round(answered[0], seconds, _cpu(target.processes) - cpu_before, latencies, refused)


def _percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def _start(root: Path) -> tuple[servers.Server, servers.Server, list[Target]]:
    seeded = root / "seed.db"
    seed_experiments(f"sqlite:///{seeded}", EXPERIMENTS, "tagged")
    for name in ("stock", "secure"):
        (root / name / "artifacts").mkdir(parents=True)
        shutil.copy(seeded, root / name / "mlflow.db")
    stock = stock_server(root / "stock", workers=WORKERS)
    try:
        secure = servers.start(root / "secure", workers=WORKERS)
    except BaseException:
        stock.interrupt()
        raise
    key = _editor_key(secure)
    targets = [
        Target("stock", stock.url, {}, _tree(stock.process.pid)),
        # the editor is in two projects: new work goes where the client says
        Target(
            "secure",
            secure.url,
            {"Authorization": f"Bearer {key}", "X-MLflow-Secure-Project": "bench"},
            [],
        ),
    ]
    for target in targets:
        _prepare(target)
    targets[1].processes = _tree(secure.process.pid)  # OPA is up by now
    return stock, secure, targets


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        stock, secure, targets = _start(Path(tmp))
        try:
            _run(targets)
        finally:
            secure.interrupt()
            stock.interrupt()


def _run(targets: list[Target]) -> None:
    print(
        f"cpu_per_request: {CLIENTS} clients, {WORKERS} workers each, {ROUNDS} rounds of "
        f"{DURATION:g} s per server and workload (after {WARMUP:g} s of warm-up), CPU of each "
        "server's whole process tree (workers and OPA) per 2xx answer"
    )
    for workload, calls in _workloads().items():
        rounds: dict[str, list[Round]] = {target.name: [] for target in targets}
        for target in targets:
            _load(target, calls, WARMUP)
        for _ in range(ROUNDS):
            for target in targets:
                rounds[target.name].append(_load(target, calls, DURATION))
        figures = {name: _figures(found) for name, found in rounds.items()}
        print(f"  {workload}")
        for name, (rate, cpu, p50, p99, refused) in figures.items():
            print(
                f"    {name:<7} {rate:7.1f} requests/s  p50 {p50 * 1000:6.1f} ms  "
                f"p99 {p99 * 1000:6.1f} ms  CPU {cpu * 1000:6.2f} ms/request  "
                f"non-2xx: {statuses(refused)}"
            )
        cpu_ratio = figures["secure"][1] / figures["stock"][1]
        rate_ratio = figures["secure"][0] / figures["stock"][0]
        goal = f" (goal >= {THROUGHPUT_GOAL})" if workload == "mixed" else ""
        cpu_goal = f" (goal <= {CPU_GOAL})" if workload != "experiment search" else ""
        print(
            f"    secure / stock: CPU per request {cpu_ratio:.2f}{cpu_goal}, "
            f"throughput {rate_ratio:.2f}{goal}"
        )


def _figures(found: list[Round]) -> tuple[float, float, float, float, Counter]:
    answered = sum(r.answered for r in found)
    rate = statistics.median(r.answered / r.seconds for r in found)
    cpu = sum(r.cpu for r in found) / max(1, answered)
    latencies = [value for r in found for value in r.latencies]
    refused: Counter = Counter()
    for r in found:
        refused.update(r.refused)
    return rate, cpu, _percentile(latencies, 0.5), _percentile(latencies, 0.99), refused


if __name__ == "__main__":
    main()
