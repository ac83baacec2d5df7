"""DaemonClient against the stand-in daemon, without PostgreSQL: error classes, bounds, interrupts."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from sqlcoder.client import DaemonClient
from sqlcoder.errors import (
    DaemonConnectionLost,
    DaemonNotResponding,
    DaemonNotRunning,
    DaemonProtocolError,
    DaemonReplyTooLarge,
    DaemonVersionMismatch,
    ModelTimeout,
)
from sqlcoder_dev.fake_daemon import FakeDaemon, socket_dir


@pytest.fixture
def stand_in_daemon() -> Iterator[FakeDaemon]:
    with FakeDaemon(socket_dir() / "unit.sock") as daemon:
        yield daemon


def client(stand_in_daemon: FakeDaemon, **kw) -> DaemonClient:
    return DaemonClient(str(stand_in_daemon.path), max_reply_bytes=kw.pop("max_reply_bytes", 4096), **kw)


def test_a_generate_round_trip(stand_in_daemon) -> None:
    stand_in_daemon.reply(" SELECT 1;", model="fake/m")
    reply = client(stand_in_daemon).request("generate", 5, prompt="p")
    assert (reply["text"], reply["model"]) == (" SELECT 1;", "fake/m")
    assert stand_in_daemon.requests[-1]["prompt"] == "p" and stand_in_daemon.requests[-1]["v"] == 1


@pytest.mark.parametrize("mode, kwargs, error", [
    ("oversize", {"size": 10_000}, DaemonReplyTooLarge),
    ("wrong_version", {}, DaemonVersionMismatch),
    ("unsupported_version", {}, DaemonVersionMismatch),
    ("garbage", {}, DaemonProtocolError),
    ("truncated", {}, DaemonProtocolError),
    ("close", {}, DaemonConnectionLost),
])
def test_failure_classes(stand_in_daemon, mode, kwargs, error) -> None:
    stand_in_daemon.misbehave(mode, **kwargs)
    with pytest.raises(error):
        client(stand_in_daemon).request("generate", 5, prompt="p")


def test_an_oversize_reply_is_refused_before_it_is_all_read(stand_in_daemon) -> None:
    stand_in_daemon.misbehave("oversize", size=10 * 1024 * 1024)
    with pytest.raises(DaemonReplyTooLarge) as err:
        client(stand_in_daemon, max_reply_bytes=1 << 20).request("generate", 30, prompt="p")
    assert "1048576 bytes" in err.value.message


def test_a_long_error_message_is_bounded(stand_in_daemon) -> None:
    stand_in_daemon.misbehave("error", code="x" * 10_000)
    with pytest.raises(Exception) as err:
        client(stand_in_daemon, max_reply_bytes=1 << 20).request("generate", 5, prompt="p")
    assert len(str(err.value)) < 700


def test_deadline_on_a_hanging_daemon(stand_in_daemon) -> None:
    stand_in_daemon.misbehave("hang")
    with pytest.raises(ModelTimeout):
        client(stand_in_daemon).request("generate", 0.3, prompt="p")
    deadline = time.monotonic() + 5
    while not stand_in_daemon.disconnects and time.monotonic() < deadline:
        time.sleep(0.02)
    assert stand_in_daemon.disconnects, "the request was dropped by closing the connection"


def test_a_hanging_daemon_is_named_not_the_model(stand_in_daemon) -> None:
    stand_in_daemon.misbehave("hang")
    with pytest.raises(DaemonNotResponding, match="daemon did not answer within 0.3 s") as err:
        client(stand_in_daemon).request("generate", 0.3, prompt="p")
    assert err.value.sqlstate == "57014" and "SIGSTOP" in err.value.hint


def test_one_budget_bounds_every_request_of_a_call(stand_in_daemon) -> None:
    """model_timeout_ms covers the status probe, token counting and the generate together."""
    stand_in_daemon.misbehave("slow", delay_s=0.4, text=" SELECT 1;")
    c = client(stand_in_daemon, budget=0.6)
    assert c.request("generate", 30, prompt="p")["text"] == " SELECT 1;"  # 0.4 s of the 0.6 s budget
    assert c.daemon_timeout_ms(30) < 250  # what is left, less a margin for the daemon's own timeout reply
    with pytest.raises(DaemonNotResponding, match="within 0.6 s"):
        c.request("generate", 30, prompt="p")  # the rest of the budget, not another 30 s
    with pytest.raises(ModelTimeout, match="ran out before the status request could be sent") as err:
        c.request("status", 5)
    assert "model_timeout_ms" in err.value.hint


def test_an_interrupt_propagates_and_closes_the_connection(stand_in_daemon) -> None:
    class Cancelled(Exception):
        pass

    calls = []

    def check() -> None:
        calls.append(1)
        if len(calls) > 3:
            raise Cancelled

    stand_in_daemon.misbehave("hang")
    with pytest.raises(Cancelled):
        client(stand_in_daemon, check_interrupts=check).request("generate", 30, prompt="p")
    deadline = time.monotonic() + 5
    while not stand_in_daemon.disconnects and time.monotonic() < deadline:
        time.sleep(0.02)
    assert stand_in_daemon.disconnects


def test_no_daemon(tmp_path) -> None:
    with pytest.raises(DaemonNotRunning):
        DaemonClient(str(tmp_path / "none.sock")).request("status", 1)


@pytest.mark.parametrize("code, hint_part", [("bad_request", "num_beams"), ("too_large", "context_budget_tokens"),
                                             ("internal", "daemon's log")])
def test_the_daemons_refusals_carry_a_hint_a_user_can_act_on(stand_in_daemon, code, hint_part) -> None:
    from sqlcoder.errors import DaemonRejected

    stand_in_daemon.misbehave("error", code=code)
    with pytest.raises(DaemonRejected) as err:
        client(stand_in_daemon).request("generate", 5, prompt="p")
    assert err.value.sqlstate == "58000" and hint_part in err.value.hint
