"""The request queue, owned by one worker thread that runs compatible requests as one batch.

Connection threads only ``submit`` jobs and wait on their futures; the
worker is the only thread that touches the model, so backends need no locks
and torch (which releases the GIL) computes while connections keep being served.
"""

from __future__ import annotations

import logging
import threading
import time

from .backends.base import Backend
from .errors import Busy, Cancelled, DaemonError, Internal, ShuttingDown, Timeout
from .jobs import GenerationResult, Job
from .metrics import Metrics

__all__ = ["Scheduler"]

log = logging.getLogger(__name__)


class Scheduler:
    """Bounded FIFO queue plus one worker thread that batches jobs with the same generation settings."""

    def __init__(self, backend: Backend, metrics: Metrics, *, max_queue: int = 64, max_batch_size: int = 8,
                 batch_wait_ms: float = 10.0):
        self.backend = backend
        self.metrics = metrics
        self.max_queue = max_queue
        self.max_batch_size = max_batch_size
        self.batch_wait_s = batch_wait_ms / 1000.0
        self._queue: list[Job] = []
        self._running: list[Job] = []
        self._last_batch_size = 1
        self._cond = threading.Condition()
        self._accepting = True
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="sqlcoder-worker", daemon=True)

    # -- client side ---------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def submit(self, job: Job) -> Job:
        """Queue ``job``; raise :class:`Busy` when the queue is full or the daemon is draining."""
        with self._cond:
            if not self._accepting:
                self.metrics.count("rejected")
                raise ShuttingDown("the daemon is shutting down and takes no new requests")
            if len(self._queue) >= self.max_queue:
                self.metrics.count("rejected")
                raise Busy(f"queue is full ({self.max_queue} requests); try again")
            self._queue.append(job)
            self._cond.notify_all()
        return job

    def cancel(self, job: Job) -> None:
        """The client left: drop the job if queued, or flag it so the running generation stops."""
        job.cancelled.set()
        with self._cond:
            if job in self._queue:
                self._queue.remove(job)
                self._finish(job, Cancelled())

    def expire_queued(self, job: Job) -> None:
        """Answer a job whose deadline passed while it waited, without waiting for the worker to reach it."""
        with self._cond:
            if job in self._queue:
                self._queue.remove(job)
                self._finish(job, Timeout(f"deadline of {job.request.timeout_ms} ms passed while queued"))

    @property
    def queued(self) -> int:
        with self._cond:
            return len(self._queue)

    @property
    def in_flight(self) -> int:
        with self._cond:
            return len(self._running)

    def drain(self, timeout: float) -> int:
        """Stop accepting, let queued and running jobs finish within ``timeout``; the number of jobs cut
        off (answered ``shutting_down``) when it passed, 0 when all finished."""
        with self._cond:
            self._accepting = False
            end = time.monotonic() + timeout
            while self._queue or self._running:
                left = end - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            cut = len(self._queue) + len(self._running)
            for job in self._queue + self._running:
                job.shutdown = True
                job.cancelled.set()
            for job in list(self._queue):
                self._finish(job, ShuttingDown(f"the daemon shut down before running this request "
                                               f"(drain_timeout_s, {timeout:g} s, passed)"))
            self._queue.clear()
            self._stop = True
            self._cond.notify_all()
        return cut

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stop = True
            self._accepting = False
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    # -- worker side ---------------------------------------------------------
    def _next_batch(self) -> list[Job] | None:
        with self._cond:
            while not self._queue and not self._stop:
                self._cond.wait()
            if not self._queue:
                return None
            # While clients have been arriving together (the last batch was bigger
            # than what is queued now), give their next requests a moment to join:
            # replies go out together, so the requests that follow them arrive a
            # few milliseconds apart. A lone client never waits.
            want = min(self.max_batch_size, self._last_batch_size)
            deadline = time.monotonic() + self.batch_wait_s
            while len(self._queue) < want and not self._stop:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            if not self._queue:
                return []
            key = self._queue[0].batch_key
            batch = [j for j in self._queue if j.batch_key == key][: self.max_batch_size]
            self._last_batch_size = len(batch)
            for j in batch:
                self._queue.remove(j)
            now = time.monotonic()
            runnable = []
            for j in batch:
                if j.cancelled.is_set():
                    self._finish(j, Cancelled())
                elif j.expired(now):
                    self._finish(j, Timeout(f"deadline of {j.request.timeout_ms} ms passed while queued"))
                else:
                    j.started = now
                    runnable.append(j)
            self._running = runnable
            return runnable

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            if not batch:
                continue
            t0 = time.monotonic()
            results: list[GenerationResult | DaemonError] | list[Exception]
            try:
                results = self.backend.generate(batch)
                if len(results) != len(batch):
                    raise RuntimeError(f"backend returned {len(results)} results for {len(batch)} jobs")
            except Exception as e:  # one top-level handler: the daemon keeps serving
                log.exception("generation failed for a batch of %d", len(batch))
                results = [e] * len(batch)
            elapsed = time.monotonic() - t0
            self.metrics.record_batch(len(batch), elapsed)
            with self._cond:
                for job, res in zip(batch, results):
                    self._finish(job, res)
                self._running = []
                self._cond.notify_all()

    def _finish(self, job: Job, result: object) -> None:
        """Resolve ``job``'s future with its result or error, and count it."""
        job.finished = time.monotonic()
        if job.future.done():
            return
        if isinstance(result, GenerationResult):
            if result.finish_reason == "stop" and job.should_stop():
                self.metrics.count("interrupted")  # the stopping criterion cut the generation short
            if job.shutdown:
                result = ShuttingDown("the daemon shut down while generating this request "
                                      "(drain_timeout_s passed)")
            elif job.cancelled.is_set():
                result = Cancelled()
            elif job.expired(job.finished):
                result = Timeout(f"deadline of {job.request.timeout_ms} ms passed before generation finished")
        if isinstance(result, GenerationResult):
            self.metrics.record_done((job.finished - job.received) * 1000, result.prompt_tokens,
                                     result.completion_tokens, result.cached_tokens)
            job.future.set_result(result)
        else:
            if isinstance(result, Cancelled):
                self.metrics.count("cancelled")
            else:
                self.metrics.count("failed")
                if isinstance(result, Timeout):
                    self.metrics.count("timeout")
            if not isinstance(result, (DaemonError, Cancelled)):
                result = Internal("generation failed; see the daemon's log")
            job.future.set_exception(result)
