"""A short-lived cache of policy answers (`MLFLOW_SECURE_DECISION_CACHE_TTL`, 30 s by default).

A decision is a function of its input, the policy modules and their data, so a request whose
input equals one decided a moment ago may reuse that answer and save an OPA round trip (on
the mixed benchmark OPA's process alone was 1.0 to 1.5 ms of CPU per request, more than the rest
of the secure layer). The key is the whole input except the request time, plus the policy
revision (modules and data.mlflow), so a change of subject (roles, projects, clearance, key),
action, resource attributes, client address, path or loaded policy is a different key. The
same holds for listing filters (the subject, the action and the listed resources).

When an answer is not reused, whatever the TTL:

* the policy reads something the key does not hold — the request time, a nondeterministic
  built-in such as ``time.now_ns`` or ``http.send``, data outside ``data.mlflow``
  (determinism.py finds these in the modules OPA loaded; the engine then offers no
  revision to key on, and says why in the log);
* the revision is unknown (OPA not answering the watcher) or the managed OPA's process is
  not running (looked at at most every 0.1 s): an outage refuses with 503, the request
  decided a moment ago too;
* the worker saw the revision change since the answer was kept: the key holds a generation
  that every change moves on (engine.py), so an answer of a new policy kept under the old
  key just before the change was seen never comes back, not even after a revert;
* the answer was an outage: those are never cached.

What is left: a policy or data change is seen by cached answers when the worker's revision
watcher reads it (within 2 s; fresh decisions see it at once), and an external OPA that
stops answering is noticed by the same watcher (until then, an identical request decided
less than the TTL ago gets that decision; a managed OPA's death is seen within 0.1 s).
"""

from __future__ import annotations

import json
from typing import Any

from mlflow_secure.ttl_cache import TtlCache

MAX_DECISIONS = 5_000
# A filter over many resources is a large key that is rarely asked twice: not kept.
MAX_KEY_CHARS = 8192  # with MAX_DECISIONS: at most ~40 MB of keys per worker
DECISION = "decision:"
FILTER = "filter:"


class DecisionCache:
    def __init__(self, ttl: float, max_items: int = MAX_DECISIONS) -> None:
        self.ttl = ttl
        self._cache = TtlCache(ttl, max_items)
        self.hits = self.misses = 0

    @staticmethod
    def key(policy_input: dict[str, Any], revision: str | None, kind: str = DECISION) -> str | None:
        """None: do not reuse (no revision whose answers may be reused, or too large)."""
        if revision is None:
            return None
        stable = policy_input
        if "request" in policy_input:
            request = {k: v for k, v in policy_input["request"].items() if k != "time"}
            stable = {**policy_input, "request": request}
        text = json.dumps(stable, sort_keys=True, separators=(",", ":"), default=str)
        return kind + revision + text if len(text) <= MAX_KEY_CHARS else None

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
