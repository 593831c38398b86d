"""The per-client query budget: at most ``limit`` predicted rows per client per window.

A client is its address as the server sees it (behind a trusted proxy, the forwarded
one). Each client's window starts at its first query and lasts ``window`` seconds; a
request that would go over the budget is refused whole (429) and costs nothing. The
table is bounded: past ``max_clients`` the expired windows are dropped, then the oldest.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class QueryBudget:
    def __init__(self, limit: int, window: float, *, clock: Callable[[], float] = time.monotonic,
                 max_clients: int = 100_000) -> None:
        self.limit, self.window, self.clock, self.max_clients = int(limit), float(window), clock, max_clients
        self._used: dict[str, tuple[float, int]] = {}  # client -> (window start, rows used)

    def _current(self, client: str, now: float) -> tuple[float, int]:
        start, used = self._used.get(client, (now, 0))
        return (now, 0) if now - start >= self.window else (start, used)

    def retry_after(self, client: str, rows: int = 1) -> int | None:
        """Seconds until ``rows`` more fit the client's budget; None when they fit now."""
        now = self.clock()
        start, used = self._current(client, now)
        if used + rows <= self.limit:
            return None
        return max(1, math.ceil(start + self.window - now))

    def take(self, client: str, rows: int) -> int | None:
        """Charge ``rows`` to the client; None when charged, else the seconds to wait (nothing charged)."""
        wait = self.retry_after(client, rows)
        if wait is not None:
            return wait
        now = self.clock()
        start, used = self._current(client, now)
        self._used[client] = (start, used + rows)
        if len(self._used) > self.max_clients:
            self._shrink(now)
        return None

    def _shrink(self, now: float) -> None:
        self._used = {c: v for c, v in self._used.items() if now - v[0] < self.window}
        if len(self._used) > self.max_clients:
            keep = sorted(self._used.items(), key=lambda item: item[1][0])[-(self.max_clients // 2):]
            self._used = dict(keep)

    def __len__(self) -> int:
        return len(self._used)
