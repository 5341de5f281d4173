"""An optional, short-lived cache of policy decisions (`MLFLOW_SECURE_DECISION_CACHE_TTL`).

A decision is a function of its input, so a request whose input equals one decided a moment
ago may reuse that answer and save an OPA round trip. The key is the whole input except the
request time, plus the policy revision, so a change of subject (roles, projects, clearance,
key), action, resource attributes, client address, path or loaded policy is a different key.

What it trades, and why it is off by default: a rule reading `input.request.time` sees the
time of the cached decision (at most the TTL old), and just after OPA goes down a request
whose decision is cached is still answered instead of refused with 503 — until the worker's
revision watcher (every 2 s) finds no readable revision, after which the key is None and
nothing is served from the cache. Refusals caused by an unavailable OPA are never cached.
"""

from __future__ import annotations

import json
from typing import Any

from mlflow_secure.ttl_cache import TtlCache

MAX_DECISIONS = 10_000


class DecisionCache:
    def __init__(self, ttl: float, max_items: int = MAX_DECISIONS) -> None:
        self.ttl = ttl
        self._cache = TtlCache(ttl, max_items)
        self.hits = self.misses = 0

    @staticmethod
    def key(policy_input: dict[str, Any], revision: str | None) -> str | None:
        """None: do not cache (no known policy revision to tie the answer to)."""
        if revision is None:
            return None
        request = {k: v for k, v in policy_input.get("request", {}).items() if k != "time"}
        stable = {**policy_input, "request": request}
        return revision + json.dumps(stable, sort_keys=True, separators=(",", ":"), default=str)

    def get(self, key: str | None) -> Any:
        found = self._cache.get(key) if key is not None else None
        if found is None:
            self.misses += 1
        else:
            self.hits += 1
        return found

    def put(self, key: str | None, decision: Any) -> None:
        if key is not None:
            self._cache.put(key, decision)

    def clear(self) -> None:
        self._cache.clear()
