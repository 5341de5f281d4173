"""Listings at the scale of a large organisation: what one page costs, secure / stock.

Experiment search at 10,000 and 100,000 experiments, the caller reading 1% or 50% of them,
on a store where every experiment carries the plugin's tags and on one that predates the
plugin (almost none tagged: the 1% belong to the caller's project, the 50% to the caller as
their MLflow owner, the rest to 50 other users); model-version search over 50,000 versions
(5,000 registered models of 10 versions), 1% or 50% readable. SQLite and PostgreSQL.

Stock (unfiltered) and secure (filtered, as a viewer with a read-only key) serve identical
copies of one store side by side (stock's without the indexes the secure app adds, as stock
MLflow runs), one worker each, their requests alternating, so a noisy moment on a shared
machine hits both alike; each cell is the median of ROUNDS pages of 100. Goals (issue
11): secure <= 1.1 x stock in every cell, and secure's page growing no more than 1.2 x from
10,000 to 100,000 experiments (the cost follows the page, not the store). Printed, never
asserted. `BENCH_DATABASES=sqlite` (or `postgresql`) runs one database alone.

Stores are written with SQLAlchemy Core in MLflow's own tables (one create call per
experiment would take an hour at 100,000); on PostgreSQL the tables are then ANALYZEd, as
autovacuum would do after such a load.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from tests.support import servers

from benchmarks.authz_throughput import statuses, stock_server

SIZES = (10_000, 100_000)
VERSIONS = 50_000
VERSIONS_PER_MODEL = 10
PAGE = 100
ROUNDS = 15
WARMUP = 3
GOAL = 1.1
GROWTH_GOAL = 1.2
CHUNK = 5_000  # rows per INSERT
API = "/api/2.0/mlflow-secure/"
# Who reads what: a viewer of project "one" reads 1%, a viewer of "half" (or, on a store
# that predates the plugin, the owner of those experiments) reads 50%.
READERS = {"1%": ("reader-one", "one"), "50%": ("reader-half", "half")}
CLASSIFICATIONS = ("public", "internal", "confidential")
COPIES = ("stock", "secure")


@dataclass(frozen=True)
class Store:
    """One seeded database and the listing measured on it."""

    label: str  # "experiment search" / "model-version search"
    tagging: str  # "tagged" / "predates"
    size: int
    path: str  # the search endpoint
    field: str  # the items' field in the reply


def _project(index: int) -> str:
    """1% in "one", 50% in "half", the rest in "hidden" (never both one and half)."""
    return "one" if index % 100 == 0 else "half" if index % 2 == 1 else "hidden"


def _experiment_tags(index: int, tagging: str) -> Iterator[tuple[str, str]]:
    project = _project(index)
    if tagging == "tagged":
        yield "mlflow.secure.project", project
        yield "mlflow.secure.classification", CLASSIFICATIONS[index % 3]
        yield "mlflow.user", f"user{index % 50}"
    elif project == "one":  # predates the plugin: only the caller's project was tagged since
        yield "mlflow.secure.project", "one"
        yield "mlflow.user", f"user{index % 50}"
    else:  # MLflow's own owner tag, the caller's on half of them
        yield "mlflow.user", "reader-half" if project == "half" else f"user{index % 50}"


def _insert(connection, table, rows: Iterator[dict]) -> None:
    batch: list[dict] = []
    for row in rows:
        batch.append(row)
        if len(batch) == CHUNK:
            connection.execute(table.insert(), batch)
            batch = []
    if batch:
        connection.execute(table.insert(), batch)


def seed_experiments(uri: str, total: int, tagging: str) -> None:
    """`total` experiments (ids from 1) in MLflow's tables at `uri`, tagged as `tagging`
    says (see the module docstring): 1% in project `one`, 50% in `half`."""
    from mlflow.store.tracking.dbmodels.models import SqlExperiment, SqlExperimentTag
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore(uri, "mlflow-artifacts:/")
    created = int(time.time() * 1000)
    with store.engine.begin() as connection:
        _insert(
            connection,
            SqlExperiment.__table__,
            (
                {
                    "experiment_id": index,
                    "name": f"e{index:06d}",
                    "workspace": "default",
                    "artifact_location": f"mlflow-artifacts:/{index}",
                    "lifecycle_stage": "active",
                    "creation_time": created + index,
                    "last_update_time": created + index,
                }
                for index in range(1, total + 1)
            ),
        )
        _insert(
            connection,
            SqlExperimentTag.__table__,
            (
                {"experiment_id": index, "key": key, "value": value}
                for index in range(1, total + 1)
                for key, value in _experiment_tags(index, tagging)
            ),
        )
    _settle(store.engine, experiments=True)
    store.engine.dispose()


def _seed_versions(uri: str, total: int) -> None:
    from mlflow.store.model_registry.dbmodels.models import (
        SqlModelVersion,
        SqlRegisteredModel,
        SqlRegisteredModelTag,
    )
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore(uri)
    created = int(time.time() * 1000)
    models = range(total // VERSIONS_PER_MODEL)
    with store.engine.begin() as connection:
        _insert(
            connection,
            SqlRegisteredModel.__table__,
            (
                {
                    "workspace": "default",
                    "name": f"m{index:05d}",
                    "creation_time": created + index,
                    "last_updated_time": created + index,
                }
                for index in models
            ),
        )
        _insert(
            connection,
            SqlRegisteredModelTag.__table__,
            (
                {"workspace": "default", "name": f"m{index:05d}", "key": key, "value": value}
                for index in models
                for key, value in _experiment_tags(index, "tagged")
            ),
        )
        _insert(
            connection,
            SqlModelVersion.__table__,
            (
                {
                    "workspace": "default",
                    "name": f"m{index:05d}",
                    "version": version,
                    "creation_time": created + index * VERSIONS_PER_MODEL + version,
                    "last_updated_time": created + index * VERSIONS_PER_MODEL + version,
                    "current_stage": "None",
                    "source": f"mlflow-artifacts:/{index}/{version}",
                    "storage_location": f"mlflow-artifacts:/{index}/{version}",
                    "status": "READY",
                }
                for index in models
                for version in range(1, VERSIONS_PER_MODEL + 1)
            ),
        )
    _settle(store.engine)
    store.engine.dispose()


_ADVANCE_EXPERIMENT_IDS = (
    "SELECT setval(pg_get_serial_sequence('experiments', 'experiment_id'), "
    "(SELECT max(experiment_id) FROM experiments))"
)


def _settle(engine, experiments: bool = False) -> None:
    """PostgreSQL: advance the experiment id sequence past the ids written, and ANALYZE."""
    from sqlalchemy import text

    if engine.dialect.name != "postgresql":
        return
    if experiments:
        with engine.begin() as connection:
            connection.execute(text(_ADVANCE_EXPERIMENT_IDS))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("ANALYZE"))


def _reader_keys(secure: servers.Server) -> dict[str, str]:
    """A read-only key per reader: a viewer of its project, clearance confidential."""
    call = secure.api
    key = secure.admin_key()
    found = {}
    for share, (name, project) in READERS.items():
        call("POST", API + "projects/create", key, json={"name": project}).raise_for_status()
        call(
            "POST", API + "users/create", key, json={"name": name, "clearance": "confidential"}
        ).raise_for_status()
        call(
            "POST",
            API + "projects/set-member",
            key,
            json={"project": project, "role": "viewer", "principal": name},
        ).raise_for_status()
        made = call("POST", API + "keys/create", key, json={"principal": name, "scopes": ["read"]})
        made.raise_for_status()
        found[share] = made.json()["key"]
    return found


@dataclass
class Cell:
    database: str
    store: Store
    readable: str
    stock: float
    secure: float
    returned: int
    failures: Counter


def _page(client: httpx.Client, url: str, store: Store, failures: Counter) -> tuple[float, int]:
    started = time.perf_counter()
    response = client.get(url + store.path, params={"max_results": PAGE})
    elapsed = time.perf_counter() - started
    if not 200 <= response.status_code < 300:
        failures[response.status_code] += 1
        return elapsed, -1
    return elapsed, len(response.json().get(store.field, []))


def _measure(root: Path, database: str, uris: dict[str, str], store: Store) -> list[Cell]:
    """Stock and secure on their copies, each reader's pages alternating with stock's."""
    directory = root / f"{database}-{store.tagging}-{store.size}-{store.field}"
    for name in ("stock", "secure"):
        (directory / name / "artifacts").mkdir(parents=True)
    stock = stock_server(directory / "stock", workers=1, backend_uri=uris["stock"])
    try:
        secure = servers.start(directory / "secure", workers=1, backend_uri=uris["secure"])
    except BaseException:
        stock.interrupt()
        raise
    cells = []
    try:
        keys = _reader_keys(secure)
        plain = httpx.Client(timeout=120)
        for share, key in keys.items():
            reader = httpx.Client(timeout=120, headers={"Authorization": f"Bearer {key}"})
            samples: dict[str, list[float]] = {"stock": [], "secure": []}
            failures: Counter = Counter()
            returned = 0
            for _ in range(WARMUP):  # caches, connections, the residual
                _page(plain, stock.url, store, Counter())
                _page(reader, secure.url, store, Counter())
            for _ in range(ROUNDS):
                samples["stock"].append(_page(plain, stock.url, store, failures)[0])
                elapsed, count = _page(reader, secure.url, store, failures)
                samples["secure"].append(elapsed)
                returned = max(returned, count)
            reader.close()
            cells.append(
                Cell(
                    database,
                    store,
                    share,
                    statistics.median(samples["stock"]),
                    statistics.median(samples["secure"]),
                    returned,
                    failures,
                )
            )
        plain.close()
        if "uses the batched filter" in secure.log():
            print(f"  (!) {database} {store.label}: the secure server fell back to the filter")
    finally:
        secure.interrupt()
        stock.interrupt()
    return cells


def _stores() -> list[tuple[Store, Callable[[str], None]]]:
    found = []
    for size in SIZES:
        for tagging in ("tagged", "predates"):
            store = Store(
                "experiment search",
                tagging,
                size,
                "/api/2.0/mlflow/experiments/search",
                "experiments",
            )
            found.append((store, lambda uri, s=size, t=tagging: seed_experiments(uri, s, t)))
    versions = Store(
        "model-version search",
        "tagged",
        VERSIONS,
        "/api/2.0/mlflow/model-versions/search",
        "model_versions",
    )
    found.append((versions, lambda uri: _seed_versions(uri, VERSIONS)))
    return found


def main() -> None:
    wanted = os.environ.get("BENCH_DATABASES", "sqlite,postgresql").split(",")
    cells: list[Cell] = []
    with tempfile.TemporaryDirectory(prefix="mls-scale-", dir="/tmp") as tmp:
        root = Path(tmp)
        postgres = None
        try:
            for database in wanted:
                if database == "postgresql":
                    from tests.support.postgres import start_postgres

                    postgres = start_postgres(root / "postgres")
                for index, (store, seed) in enumerate(_stores()):
                    started = time.monotonic()
                    if database == "sqlite":
                        files = {name: root / f"store-{index}-{name}.db" for name in COPIES}
                        seed(f"sqlite:///{files['stock']}")
                        shutil.copy(files["stock"], files["secure"])
                        uris = {name: f"sqlite:///{path}" for name, path in files.items()}
                    else:
                        uris = {n: postgres.make_database(f"scale_{index}_{n}") for n in COPIES}
                        for uri in uris.values():
                            seed(uri)
                    seeded = time.monotonic() - started
                    print(
                        f"listing_scale: {database} {store.label}, {store.size:,} items "
                        f"({store.tagging}), seeded in {seeded:.0f} s",
                        flush=True,
                    )
                    cells += _measure(root, database, uris, store)
        finally:
            if postgres is not None:
                postgres.stop()
    _report(cells)


def _report(cells: list[Cell]) -> None:
    print(
        f"listing_scale: per-page p50 (max_results={PAGE}), stock (unfiltered) and secure "
        f"(a viewer's read-only key) on one database, 1 worker each, median of {ROUNDS} "
        f"alternating pages; goal secure <= {GOAL} x stock"
    )
    print(
        f"  {'database':<10} {'listing':<21} {'store':<9} {'items':>8} {'readable':>8} "
        f"{'stock ms':>9} {'secure ms':>9} {'ratio':>6}  returned  non-2xx"
    )
    for c in cells:
        print(
            f"  {c.database:<10} {c.store.label:<21} {c.store.tagging:<9} {c.store.size:>8,} "
            f"{c.readable:>8} {c.stock * 1000:9.1f} {c.secure * 1000:9.1f} "
            f"{c.secure / c.stock:6.2f}  {c.returned:>8}  {statuses(c.failures)}"
        )
    small, large = SIZES
    print(f"  secure's page from {small:,} to {large:,} experiments (goal <= {GROWTH_GOAL} x):")
    for c in cells:
        if c.store.size != large or c.store.label != "experiment search":
            continue
        (before,) = [
            b
            for b in cells
            if b.database == c.database
            and b.store.size == small
            and b.store.tagging == c.store.tagging
            and b.readable == c.readable
            and b.store.label == c.store.label
        ]
        print(
            f"    {c.database:<10} {c.store.tagging:<9} {c.readable:>4} readable: "
            f"{c.secure / before.secure:.2f} x (stock {c.stock / before.stock:.2f} x)"
        )
