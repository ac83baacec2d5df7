"""Request counters, latency percentiles and token throughput for ``status`` and Prometheus."""

from __future__ import annotations

import collections
import threading
import time
from typing import Any

__all__ = ["Metrics", "percentile", "prometheus_text"]


def percentile(values: list[float], q: float) -> float | None:
    """The ``q`` (0..1) percentile by nearest rank; None when there are no values."""
    if not values:
        return None
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, int(round(q * (len(ordered) - 1)))))
    return ordered[k]


class Metrics:
    """Thread-safe counters; latency percentiles over the last ``window`` requests."""

    def __init__(self, window: int = 1000):
        self._lock = threading.Lock()
        self.started = time.monotonic()
        self.counts: collections.Counter[str] = collections.Counter()
        self._latency_ms: collections.deque[float] = collections.deque(maxlen=window)
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cached_tokens = 0
        self.busy_s = 0.0  # time the model spent in generate
        self.batches = 0
        self.batched_requests = 0

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counts[name] += n

    def record_batch(self, size: int, seconds: float) -> None:
        with self._lock:
            self.batches += 1
            self.batched_requests += size
            self.busy_s += seconds

    def record_done(self, latency_ms: float, prompt_tokens: int, completion_tokens: int, cached_tokens: int) -> None:
        with self._lock:
            self.counts["completed"] += 1
            self._latency_ms.append(latency_ms)
            self.prompt_tokens += prompt_tokens
            self.completion_tokens += completion_tokens
            self.cached_tokens += cached_tokens

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            lat = list(self._latency_ms)
            busy = self.busy_s
            return {
                "requests": {
                    "completed": self.counts["completed"],
                    "failed": self.counts["failed"],
                    "cancelled": self.counts["cancelled"],
                    "rejected": self.counts["rejected"],
                    "timeouts": self.counts["timeout"],
                    "interrupted": self.counts["interrupted"],
                    "bad_requests": self.counts["bad_request"],
                },
                "latency_ms": {
                    "p50": _round(percentile(lat, 0.50)),
                    "p95": _round(percentile(lat, 0.95)),
                    "samples": len(lat),
                },
                "tokens": {
                    "prompt": self.prompt_tokens,
                    "completion": self.completion_tokens,
                    "prompt_cached": self.cached_tokens,
                },
                "tokens_per_s": {
                    "prompt": _round(self.prompt_tokens / busy if busy else None),
                    "generated": _round(self.completion_tokens / busy if busy else None),
                },
                "batches": {
                    "count": self.batches,
                    "mean_size": _round(self.batched_requests / self.batches if self.batches else None),
                },
                "busy_s": round(busy, 3),
            }


def _round(v: float | None, digits: int = 2) -> float | None:
    return None if v is None else round(v, digits)


def prometheus_text(status: dict[str, Any]) -> str:
    """Prometheus text exposition of a ``status`` object: numeric leaves flattened with ``_``;
    per-GPU memory carries a ``device`` label."""
    lines: list[str] = []

    def walk(name: str, value: Any, labels: str = "") -> None:
        if isinstance(value, bool):
            value = int(value)
        if isinstance(value, (int, float)):
            lines.append(f"{name}{labels} {value}")
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(f"{name}_{_metric_name(k)}", v, labels)

    for key, value in status.items():
        if key == "settings":
            continue
        if key == "memory" and isinstance(value, dict):
            for dev, figures in (value.get("gpus") or {}).items():
                walk("sqlcoder_daemon_gpu_memory", figures, f'{{device="{dev}"}}')
            value = {k: v for k, v in value.items() if k != "gpus"}
        walk(f"sqlcoder_daemon_{_metric_name(key)}", value)
    model = str(status.get("model", "")).replace("\\", "\\\\").replace('"', '\\"')
    lines.append(f'sqlcoder_daemon_info{{model="{model}",state="{status.get("state", "")}",'
                 f'backend="{status.get("backend", "")}"}} 1')
    return "\n".join(lines) + "\n"


def _metric_name(key: Any) -> str:
    return "".join(c if c.isalnum() else "_" for c in str(key))
