"""One JSON log line per generate request, with how long it waited and ran, whatever its outcome."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from .jobs import Job

__all__ = ["log_request"]

request_log = logging.getLogger("sqlcoder_daemon.requests")


def log_request(job: Job, outcome: str, peer_uid: int | None, log_prompts: bool) -> None:
    """The request's log line; a job cancelled or cut off while the model still runs it logs how long it ran."""
    res = job.future.result() if job.future.done() and not job.future.exception() else None
    now = time.monotonic()
    event: dict[str, Any] = {
        "event": "request", "id": job.request.id, "source": job.source, "peer_uid": peer_uid,
        "outcome": outcome, "prompt_chars": len(job.request.prompt),
        "max_new_tokens": job.request.max_new_tokens, "num_beams": job.request.num_beams, **job.timings(),
        "total_ms": round((now - job.received) * 1000, 3),
    }
    if job.started is not None and job.finished is None:
        event["generate_ms"] = round((now - job.started) * 1000, 3)
    if res is not None:
        event.update(prompt_tokens=res.prompt_tokens, completion_tokens=res.completion_tokens,
                     cached_tokens=res.cached_tokens, finish_reason=res.finish_reason)
    if log_prompts:
        event["prompt"] = job.request.prompt
    request_log.info(json.dumps(event, ensure_ascii=False))
