"""The optional decision cache: what makes two inputs the same, and what is never cached."""

import time

from mlflow_secure.policy.decision_cache import DecisionCache

INPUT = {
    "subject": {"id": "ann", "roles": [], "projects": [{"name": "fraud", "role": "viewer"}]},
    "action": {"endpoint": "mlflow.runs.get", "access": "read", "method": "GET"},
    "resource": {"type": "run", "id": "r1", "project": "fraud"},
    "request": {"path": "/api/2.0/mlflow/runs/get", "client_ip": "10.0.0.5", "time": "t1"},
}


def _with(**changes):
    changed = {k: dict(v) for k, v in INPUT.items()}
    for dotted, value in changes.items():
        part, field = dotted.split("__")
        changed[part][field] = value
    return changed


def test_the_request_time_alone_does_not_make_a_new_key():
    key = DecisionCache.key(INPUT, "sha256:a")
    assert DecisionCache.key(_with(request__time="t2"), "sha256:a") == key
    for other in (
        DecisionCache.key(INPUT, "sha256:b"),  # another policy revision
        DecisionCache.key(_with(request__client_ip="10.0.0.6"), "sha256:a"),
        DecisionCache.key(_with(subject__roles=["admin"]), "sha256:a"),
        DecisionCache.key(_with(resource__project="churn"), "sha256:a"),
        DecisionCache.key(_with(action__access="write"), "sha256:a"),
    ):
        assert other != key
    assert DecisionCache.key(INPUT, None) is None  # no known revision: never cached


def test_entries_expire_and_are_counted():
    cache = DecisionCache(ttl=0.05)
    key = DecisionCache.key(INPUT, "sha256:a")
    assert cache.get(key) is None
    cache.put(key, "allow")
    assert cache.get(key) == "allow"
    time.sleep(0.08)
    assert cache.get(key) is None
    assert (cache.hits, cache.misses) == (1, 2)
    cache.put(None, "ignored")
    assert cache.get(None) is None


def test_filters_have_keys_of_their_own_and_large_ones_are_not_kept():
    from mlflow_secure.policy.decision_cache import FILTER, MAX_KEY_CHARS

    listing = {k: INPUT[k] for k in ("subject", "action")}
    listing["resources"] = [{"type": "experiment", "id": "1", "project": "fraud"}]
    as_filter = DecisionCache.key(listing, "sha256:a", FILTER)
    assert as_filter is not None
    assert as_filter != DecisionCache.key(listing, "sha256:a")
    many = [{"type": "experiment", "id": str(i)} for i in range(MAX_KEY_CHARS // 20)]
    assert DecisionCache.key({**listing, "resources": many}, "sha256:a", FILTER) is None
