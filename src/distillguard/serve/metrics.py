"""Request counts by status and latency percentiles of one server process (GET /metrics)."""

from __future__ import annotations

import time
from collections import Counter, deque

import numpy as np


class Metrics:
    def __init__(self, window: int = 10_000) -> None:
        self.started = time.time()
        self.by_status: Counter[int] = Counter()
        self.rows = 0
        self._latency_ms: deque[float] = deque(maxlen=window)

    def record(self, status: int, seconds: float, rows: int = 0) -> None:
        self.by_status[status] += 1
        self.rows += rows
        self._latency_ms.append(1000 * seconds)

    def snapshot(self) -> dict:
        lat = np.asarray(self._latency_ms, dtype=np.float64)
        pct = (lambda q: round(float(np.percentile(lat, q)), 3) if len(lat) else None)  # noqa: E731
        return {
            "requests": {str(status): n for status, n in sorted(self.by_status.items())},
            "requests_total": sum(self.by_status.values()),
            "rows_predicted": self.rows,
            "latency_ms": {"window": len(lat), "p50": pct(50), "p99": pct(99),
                           "max": round(float(lat.max()), 3) if len(lat) else None},
            "uptime_seconds": round(time.time() - self.started, 1),
        }
