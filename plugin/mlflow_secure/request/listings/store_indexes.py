"""Indexes on MLflow's tag tables that let the database find readable items by their policy
attributes, created by the secure app at start-up: experiment tags (experiment search) and
registered-model tags (registered-model and model-version search).

A pushed-down search (pushdown.py) asks "which items have project tag X" and "which have a
non-empty classification": MLflow indexes its tag tables by key and item only, so each such
question scans every tag row of that key and reads its value from the table. Measured on
10,000 experiments, 1% readable (SQLite, benchmarks/): the narrowed id query takes ~5.5 ms
without these indexes and ~2 ms with them, against ~1.5 ms for stock MLflow's unfiltered one;
a whole page goes from 1.26-1.30 x stock to ~1.05 x.

* SQLite: one covering index per table (key, value, item): values of any length are fine.
* Both: experiment tags by experiment (`mlflow_secure_experiment_tag_items`). MLflow's key is
  (key, experiment_id), so loading the tags of a page of experiments by id scans every tag
  row of the store: measured on 100,000 experiments (SQLite), a page of 100 took ~85 ms
  with its tags loaded that way and ~45 ms with this index (stock MLflow pays the same scan
  for its own pages).
* PostgreSQL: one partial index (value, item) per table and attribute key (project,
  classification, owner). A B-tree entry is limited to about 2.7 kB, so only these keys are
  indexed: their values are project names, classification levels and principal names, which
  the server validates (long values elsewhere in the table are never indexed). The keys are
  written into the search statement as literals so that the planner can match the partial
  indexes.

Registered-model tags lead with MLflow's workspace column, as every registry statement
names it. They are MLflow-compatible additions (MLflow's migrations neither read nor drop
unknown indexes; a SQLite migration that rebuilds a table drops them, and the next start
creates them again). A database user without the right to create indexes gets a warning at
start-up and slower searches, nothing else. Other databases get no index (their searches use
the batched filter anyway, see pushdown.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from mlflow_secure.request.lookups import CLASSIFICATION_TAG, OWNER_TAG, PROJECT_TAG

_logger = logging.getLogger(__name__)

ATTRIBUTE_KEYS = {PROJECT_TAG: "project", CLASSIFICATION_TAG: "classification", OWNER_TAG: "owner"}


@dataclass(frozen=True)
class TagTable:
    """One of MLflow's tag tables: its name, the columns that lead every lookup, the item."""

    table: str
    prefix: str  # index names: <prefix>_values (SQLite), <prefix>_<attribute> (PostgreSQL)
    leading: tuple[str, ...]
    item: str
    # An index by item alone (<prefix>_items): the tags of a page's items, loaded by id.
    by_item: bool = False

    def sqlite_index(self) -> str:
        return f"{self.prefix}_values"

    def postgres_index(self, key: str) -> str:
        return f"{self.prefix}_{ATTRIBUTE_KEYS[key]}"


EXPERIMENT_TAGS = TagTable(
    "experiment_tags", "mlflow_secure_experiment_tag", (), "experiment_id", by_item=True
)
REGISTERED_MODEL_TAGS = TagTable(
    "registered_model_tags", "mlflow_secure_registered_model_tag", ("workspace",), "name"
)
# Kept for the tests and operators' scripts that name them.
SQLITE_INDEX = EXPERIMENT_TAGS.sqlite_index()
POSTGRES_INDEXES = {key: EXPERIMENT_TAGS.postgres_index(key) for key in ATTRIBUTE_KEYS}


def statements(dialect: str, table: TagTable = EXPERIMENT_TAGS) -> list[str]:
    """The CREATE INDEX statements for `dialect` (idempotent), none for other databases."""
    if dialect not in ("sqlite", "postgresql"):
        return []
    if dialect == "sqlite":
        columns = ", ".join((*table.leading, "key", "value", table.item))
        found = [f"CREATE INDEX IF NOT EXISTS {table.sqlite_index()} ON {table.table} ({columns})"]
    else:
        columns = ", ".join((*table.leading, "value", table.item))
        found = [
            f"CREATE INDEX IF NOT EXISTS {table.postgres_index(key)} ON {table.table} "
            f"({columns}) WHERE key = '{key}'"
            for key in ATTRIBUTE_KEYS
        ]
    if table.by_item:
        found.append(
            f"CREATE INDEX IF NOT EXISTS {table.prefix}_items ON {table.table} ({table.item})"
        )
    return found


def is_sql(store: Any) -> bool:
    """MLflow's SQL tracking store or SQL model registry (the stores with tag tables)."""
    from mlflow_secure.request.listings.experiments import _is_sql
    from mlflow_secure.request.listings.registry import is_sql as is_sql_registry

    return _is_sql(store) or is_sql_registry(store)


def ensure_listing_indexes(store: Any) -> list[str]:
    """Create the indexes on a SQL tracking store; the names of those it could not create."""
    return _ensure(store, EXPERIMENT_TAGS) if is_sql(store) else []


def ensure_registry_indexes(store: Any) -> list[str]:
    """Create the indexes on a SQL model registry; the names of those it could not create."""
    return _ensure(store, REGISTERED_MODEL_TAGS) if is_sql(store) else []


def _ensure(store: Any, table: TagTable) -> list[str]:
    from sqlalchemy import inspect, text

    missing = []
    for statement in statements(store._get_dialect(), table):
        name = statement.split()[5]
        try:
            with store.engine.begin() as connection:
                connection.execute(text(statement))
        except Exception as exc:  # a concurrent worker, missing rights, an odd old value
            present = {i["name"] for i in inspect(store.engine).get_indexes(table.table)}
            if name not in present:
                missing.append(name)
                _logger.warning(
                    "cannot create index %s on MLflow's %s (%s): searches stay correct but "
                    "scan the tag rows of every item; create it as the database owner: %s",
                    name,
                    table.table,
                    str(exc).splitlines()[0],
                    statement,
                )
    return missing
