"""A bounded, thread-safe LRU whose entries expire: the one cache shape this layer uses.

WSGI servers answer from several threads and the ASGI front door from the event loop plus
worker threads, so every access takes the lock; entries are few and small.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any


class TtlCache:
    def __init__(self, ttl: float | None, max_items: int) -> None:
        self._ttl = ttl  # None: entries never expire (only the size bound evicts)
        self._max = max_items
        self._items: OrderedDict[Any, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            stored_at, value = item
            if self._ttl is not None and time.monotonic() - stored_at > self._ttl:
                del self._items[key]
                return None
            self._items.move_to_end(key)
            return value

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            self._items[key] = (time.monotonic(), value)
            self._items.move_to_end(key)
            while len(self._items) > self._max:
                self._items.popitem(last=False)

    def drop(self, key: Any) -> None:
        with self._lock:
            self._items.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
