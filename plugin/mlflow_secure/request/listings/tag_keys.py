"""Policy tag keys spelt in another case (`MLFLOW.SECURE.CLASSIFICATION`) in MLflow's tag
tables, looked for once at start-up.

The server refuses to write such a key (resolution.py), and a single item's decision reads it
as the policy tag it spells (lookups.policy_attributes). A store from before the plugin, or a
direct database write, may still hold one; the SQL listing paths (pushdown.py and the batched
filter's queries) compare keys exactly, so a listing would miss it: a restricted item shown
to a reader who may not open it. A table found holding such rows is listed through MLflow's
public search instead, whose items carry all their tags and are described as a single item
is (correct, and as slow as a scan of the store), and the log says so with the fix.

Why once, at start-up: nothing the server lets MLflow do writes such a key (resolution.py
refuses the spelling on every tag write), so the answer cannot change behind it.
"""

from __future__ import annotations

import logging
from typing import Any

from mlflow_secure.request.listings.pushdown import POLICY_TAG_PREFIX
from mlflow_secure.request.listings.store_indexes import TagTable, is_sql

_logger = logging.getLogger(__name__)

# Tables found holding keys whose lower case is a policy tag key while they are not.
FOUND: set[str] = set()


def has_case_variants(table: TagTable) -> bool:
    return table.table in FOUND


def look_for_case_variants(store: Any, table: TagTable) -> int:
    """How many rows of `table` spell a policy tag key in another case (0 for a store that
    is not SQL); remembered for the listings, logged with the fix when any."""
    from sqlalchemy import func, select
    from sqlalchemy import table as sql_table
    from sqlalchemy.sql import column

    if not is_sql(store):
        return 0
    rows = sql_table(table.table, column("key"))
    lowered = func.lower(rows.c.key)
    query = (
        select(func.count())
        .select_from(rows)
        .where(
            func.substr(lowered, 1, len(POLICY_TAG_PREFIX)) == POLICY_TAG_PREFIX,
            rows.c.key != lowered,
        )
    )
    with store.engine.connect() as connection:
        found = int(connection.execute(query).scalar() or 0)
    if found:
        FOUND.add(table.table)
        _logger.error(
            "%d row(s) of MLflow's %s spell a policy tag key in another case (e.g. "
            "MLFLOW.SECURE.CLASSIFICATION); they count as that policy tag, and listings "
            "of that table scan the store to honour them. Rename them to the lower-case key "
            "(SELECT key FROM %s WHERE lower(key) LIKE 'mlflow.secure.%%' AND key <> lower(key))",
            found,
            table.table,
            table.table,
        )
    else:
        FOUND.discard(table.table)
    return found
