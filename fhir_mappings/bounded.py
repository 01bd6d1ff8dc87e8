"""A dict that stays under a number of entries: the process-wide caches of values read from charts
(their keys repeat across resources and calls, so emptying it when full refills it at once)."""

from __future__ import annotations

from typing import Any


class BoundedCache(dict):
    """Read it as a dict (`get`, `in`: C speed on the hot path); store through `keep`."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def keep(self, key: Any, value: Any) -> Any:
        """Store `value` under `key` (emptying the cache first when it is full); returns `value`."""
        if len(self) >= self.size:
            self.clear()
        self[key] = value
        return value
