"""Policy tag keys spelt in another case (`MLFLOW.SECURE.CLASSIFICATION`) in MLflow's tag
tables, looked for once at start-up.

The server refuses to write such a key (resolution.py), and a single item's decision reads it
as the policy tag it spells (lookups.policy_attributes). A store from before the plugin, or a
direct database write, may still hold one; the SQL listing paths (pushdown.py and the batched
filter's queries) compare keys exactly, so a listing would miss it: a restricted item shown
to a reader who may not open it. A table found holding such rows is listed through MLflow's
public search instead, whose items carry all their tags and are described as a single item
is (correct, and as slow as a scan of the store), and the log says so with the fix.

Why once, at start-up: nothing the server lets MLflow do writes such a key (the census
refuses the spelling on every tag write), so the answer cannot change behind it.
"""

from __future__ import annotations

import logging
from typing import Any

_logger = logging.getLogger(__name__)

EXPERIMENT_TAGS = "experiment_tags"
REGISTERED_MODEL_TAGS = "registered_model_tags"
POLICY_PREFIX = "mlflow.secure."
# Tables found holding keys whose lower case is a policy tag key while they are not.
FOUND: set[str] = set()


def has_case_variants(table: str) -> bool:
    return table in FOUND


def look_for_case_variants(store: Any, table: str) -> int:
    """How many rows of `table` (a SQL store's) spell a policy tag key in another case;
    remembered for the listings, logged with the fix when any."""
    from sqlalchemy import func, select
    from sqlalchemy import table as sql_table
    from sqlalchemy.sql import column

    rows = sql_table(table, column("key"))
    lowered = func.lower(rows.c.key)
    query = (
        select(func.count())
        .select_from(rows)
        .where(func.substr(lowered, 1, len(POLICY_PREFIX)) == POLICY_PREFIX, rows.c.key != lowered)
    )
    with store.engine.connect() as connection:
        found = int(connection.execute(query).scalar() or 0)
    if found:
        FOUND.add(table)
        _logger.error(
            "%d row(s) of MLflow's %s spell a policy tag key in another case (e.g. "
            "MLFLOW.SECURE.CLASSIFICATION); they count as that policy tag, and listings "
            "of that table scan the store to honour them. Rename them to the lower-case key "
            "(SELECT key FROM %s WHERE lower(key) LIKE 'mlflow.secure.%%' AND key <> lower(key))",
            found,
            table,
            table,
        )
    else:
        FOUND.discard(table)
    return found
