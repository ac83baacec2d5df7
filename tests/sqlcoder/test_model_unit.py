"""sqlcoder.model.Model against the stand-in daemon, without PostgreSQL: the model info's cache, chunked counts."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sqlcoder import model as model_module
from sqlcoder.client import DaemonClient
from sqlcoder.model import Model
from sqlcoder_dev.fake_daemon import FakeDaemon, socket_dir


@pytest.fixture
def stand_in_daemon() -> Iterator[FakeDaemon]:
    model_module._cache.clear()
    with FakeDaemon(socket_dir() / "model.sock") as daemon:
        yield daemon
    model_module._cache.clear()


def new_model(stand_in_daemon: FakeDaemon) -> Model:
    return Model(DaemonClient(str(stand_in_daemon.path)), timeout_s=5.0)


def ops(stand_in_daemon: FakeDaemon) -> list[str]:
    return [r["op"] for r in stand_in_daemon.requests]


def test_info_is_asked_once_and_shared_by_the_next_calls(stand_in_daemon) -> None:
    stand_in_daemon.reply("SELECT 1", model="fake/a")
    first = new_model(stand_in_daemon).info()
    assert first is not None and (first.model, first.context_length, first.max_new_tokens) == ("fake/a", 4096, 300)
    assert new_model(stand_in_daemon).info() == first  # another call in the same backend: from the cache
    assert ops(stand_in_daemon) == ["status"]


def test_a_generate_reply_naming_another_model_drops_the_cached_info(stand_in_daemon) -> None:
    stand_in_daemon.reply("SELECT 1", model="fake/a")
    model = new_model(stand_in_daemon)
    model.info()
    assert model.generate("p").model == "fake/a"
    model.info()
    assert ops(stand_in_daemon) == ["status", "generate"]  # same model: the cache stands
    stand_in_daemon.reply("SELECT 2", model="fake/b")
    generated = model.generate("p", max_new_tokens=7)
    assert (generated.text, generated.model) == ("SELECT 2", "fake/b")
    assert stand_in_daemon.requests[-1]["max_new_tokens"] == 7 and "num_beams" not in stand_in_daemon.requests[-1]
    info = model.info()
    assert info is not None and info.model == "fake/b"
    assert ops(stand_in_daemon) == ["status", "generate", "generate", "status"]


def test_status_is_parsed_once_and_refreshes_the_cache(stand_in_daemon) -> None:
    stand_in_daemon.reply("SELECT 1", model="fake/c")
    status = new_model(stand_in_daemon).status(10.0)
    assert status["model"] == "fake/c" and status["backend"] == "fake"
    info = new_model(stand_in_daemon).info()
    assert info is not None and info.model == "fake/c"
    assert ops(stand_in_daemon) == ["status"]


def test_an_unreachable_daemon_has_no_info(tmp_path) -> None:
    assert Model(DaemonClient(str(tmp_path / "none.sock")), timeout_s=1.0).info() is None


def test_counts_go_in_chunks_under_the_request_limit(stand_in_daemon, monkeypatch) -> None:
    monkeypatch.setattr(model_module, "_COUNT_CHUNK_BYTES", 100)
    texts = ["x" * 10, "y" * 10, "z" * 10, "w" * 30]
    counts = new_model(stand_in_daemon).count_tokens(texts)
    assert counts == [len(t) // 4 + 1 for t in texts]  # the stand-in's counting, in order
    sizes = [len(r["texts"]) for r in stand_in_daemon.requests if r["op"] == "count_tokens"]
    assert sizes == [2, 1, 1]  # 4 bytes a character at worst: 40 + 40, then 40 (40 + 120 > 100), then 120
