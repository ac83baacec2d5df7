"""The scheduler with a scripted backend: batching, busy, deadlines, cancellation, failures, draining."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest

from sqlcoder_daemon.backends.base import Backend
from sqlcoder_daemon.errors import Busy, Cancelled, Internal, ShuttingDown, Timeout
from sqlcoder_daemon.jobs import GenerationResult, Job
from sqlcoder_daemon.metrics import Metrics
from sqlcoder_daemon.protocol import GenerateRequest
from sqlcoder_daemon.scheduler import Scheduler


class FakeBackend(Backend):
    """Records batches; each batch waits until released (or until every job should stop)."""

    name = "fake"

    def __init__(self, hold: bool = False, fail: bool = False):
        super().__init__({})
        self.batches: list[list[str]] = []
        self.release = threading.Event()
        self.started = threading.Event()
        self.stopped_early = False
        if not hold:
            self.release.set()
        self.fail = fail

    def load(self) -> None:
        pass

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(t) for t in texts]

    def generate(self, jobs: Sequence[Job]) -> list:
        self.batches.append([j.request.id for j in jobs])
        self.started.set()
        while not self.release.wait(0.01):
            if all(j.should_stop() for j in jobs):
                self.stopped_early = True
                return [GenerationResult("", "stop", 1, 0) for _ in jobs]
        if self.fail:
            raise RuntimeError("boom")
        return [GenerationResult(j.request.prompt.upper(), "eos", 1, 1) for j in jobs]


def job(rid: str, *, beams: int = 1, new: int = 10, timeout_ms: int = 60_000) -> Job:
    return Job(GenerateRequest(id=rid, op="generate", prompt=f"p{rid}", max_new_tokens=new, num_beams=beams,
                               timeout_ms=timeout_ms))


@pytest.fixture
def make():
    made: list[Scheduler] = []

    def _make(backend: FakeBackend, **kw) -> Scheduler:
        s = Scheduler(backend, Metrics(), **{"batch_wait_ms": 0, **kw})
        made.append(s)
        return s

    yield _make
    for s in made:
        s.stop()


def test_compatible_jobs_share_a_batch_and_others_wait(make) -> None:
    be = FakeBackend(hold=True)
    s = make(be, max_batch_size=3)
    first = s.submit(job("first"))
    s.start()
    assert be.started.wait(5)
    jobs = [s.submit(job(f"a{i}")) for i in range(4)] + [s.submit(job("b", beams=4))]
    be.release.set()
    for j in [first, *jobs]:
        assert j.future.result(5).text == j.request.prompt.upper()
    assert be.batches == [["first"], ["a0", "a1", "a2"], ["a3"], ["b"]]
    assert s.metrics.snapshot()["requests"]["completed"] == 6


def test_full_queue_answers_busy(make) -> None:
    be = FakeBackend(hold=True)
    s = make(be, max_queue=2)
    s.start()
    s.submit(job("running"))
    assert be.started.wait(5)
    s.submit(job("q1"))
    s.submit(job("q2"))
    with pytest.raises(Busy, match="queue is full"):
        s.submit(job("q3"))
    assert s.queued == 2 and s.in_flight == 1
    assert s.metrics.snapshot()["requests"]["rejected"] == 1
    be.release.set()


def test_deadline_passed_in_queue_is_timeout(make) -> None:
    be = FakeBackend(hold=True)
    s = make(be)
    s.start()
    s.submit(job("running"))
    assert be.started.wait(5)
    late = s.submit(job("late", timeout_ms=1))
    time.sleep(0.01)
    be.release.set()
    with pytest.raises(Timeout, match="queued"):
        late.future.result(5)
    assert be.batches == [["running"]]


def test_deadline_passed_while_running_stops_generation(make) -> None:
    be = FakeBackend(hold=True)
    s = make(be)
    s.start()
    j = s.submit(job("slow", timeout_ms=50))
    with pytest.raises(Timeout, match="before generation finished"):
        j.future.result(5)
    assert be.stopped_early
    assert s.metrics.snapshot()["requests"]["timeouts"] == 1


def test_cancelled_queued_job_leaves_the_queue(make) -> None:
    be = FakeBackend(hold=True)
    s = make(be)
    s.start()
    running = s.submit(job("running"))
    assert be.started.wait(5)
    gone = s.submit(job("gone"))
    s.cancel(gone)
    assert s.queued == 0
    with pytest.raises(Cancelled):
        gone.future.result(1)
    be.release.set()
    running.future.result(5)
    assert be.batches == [["running"]]


def test_cancelled_running_job_stops_generation(make) -> None:
    be = FakeBackend(hold=True)
    s = make(be)
    s.start()
    j = s.submit(job("r"))
    assert be.started.wait(5)
    s.cancel(j)
    with pytest.raises(Cancelled):
        j.future.result(5)
    assert be.stopped_early
    after = s.submit(job("next"))
    be.release.set()
    assert after.future.result(5).text == "PNEXT"
    counts = s.metrics.snapshot()["requests"]
    assert counts["cancelled"] == 1 and counts["interrupted"] == 1


def test_backend_exception_is_internal_and_serving_goes_on(make) -> None:
    be = FakeBackend(fail=True)
    s = make(be)
    s.start()
    with pytest.raises(Internal):
        s.submit(job("x")).future.result(5)
    be.fail = False
    assert s.submit(job("y")).future.result(5).text == "PY"
    assert s.metrics.snapshot()["requests"]["failed"] == 1


def test_drain_finishes_in_flight_then_refuses(make) -> None:
    be = FakeBackend(hold=True)
    s = make(be)
    s.start()
    j = s.submit(job("inflight"))
    assert be.started.wait(5)
    threading.Timer(0.1, be.release.set).start()
    assert s.drain(timeout=5) == 0
    assert j.future.result(0).text == "PINFLIGHT"
    with pytest.raises(ShuttingDown, match="shutting down"):
        s.submit(job("late"))


def test_drain_deadline_answers_shutting_down_not_busy(make) -> None:
    """Running and queued jobs cut off by the drain deadline are told the daemon stopped (never 'queue is full')."""
    be = FakeBackend(hold=True)
    s = make(be, max_batch_size=1)
    s.start()
    running = s.submit(job("running"))
    assert be.started.wait(5)
    queued = s.submit(job("queued"))
    assert s.drain(timeout=0.1) == 2
    with pytest.raises(ShuttingDown, match="before running this request"):
        queued.future.result(5)
    with pytest.raises(ShuttingDown, match="while generating this request"):
        running.future.result(5)


def test_a_lone_client_never_waits_for_companions(make) -> None:
    """With a minute's batch_wait_ms, requests one at a time still run at once (the last batch had one)."""
    be = FakeBackend()
    s = make(be, batch_wait_ms=60_000)
    s.start()
    for i in range(3):
        assert s.submit(job(f"lone{i}")).future.result(10).text == f"PLONE{i}"
    assert be.batches == [["lone0"], ["lone1"], ["lone2"]]


def test_clients_arriving_together_are_waited_for(make) -> None:
    """After a batch of three, the next batch waits (here up to a minute) until three have arrived again."""
    be = FakeBackend(hold=True)
    s = make(be, batch_wait_ms=60_000, max_batch_size=8)
    first = [s.submit(job(f"x{i}")) for i in range(3)]
    s.start()
    assert be.started.wait(5)
    be.release.set()
    for j in first:
        j.future.result(10)
    second = []
    for i in range(3):  # arriving one by one, apart
        second.append(s.submit(job(f"y{i}")))
        time.sleep(0.05)
    for j in second:
        j.future.result(10)
    assert be.batches == [["x0", "x1", "x2"], ["y0", "y1", "y2"]]
