"""The openai backend against servers we did not write: llama-cpp-python's OpenAI-compatible server on
loopback (with the demo model as GGUF), and stand-ins that are down, answer garbage or never answer."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from helpers.model_server_stand_in import ModelServerStandIn
from sqlcoder_daemon.cli import main
from sqlcoder_dev import shop
from sqlcoder_dev.daemonproc import DaemonProcess, socket_dir
from sqlcoder_dev.gguf_export import ensure_gguf
from sqlcoder_dev.llama_server import LlamaServer, free_port
from sqlcoder_dev.pgcluster import Cluster

pytestmark = pytest.mark.slow

QUESTIONS = shop.sample_questions()


@pytest.fixture(scope="module")
def llama_server(demo_model: Path) -> Iterator[LlamaServer]:
    server = LlamaServer(ensure_gguf(demo_model))
    yield server
    server.close()


@pytest.fixture(scope="module")
def front(llama_server: LlamaServer) -> Iterator[DaemonProcess]:
    """The real daemon, --backend openai, forwarding to llama_cpp.server; no local tokenizer."""
    with DaemonProcess(None, socket_dir() / "sqlcoder.sock",
                       ["--backend", "openai", "--openai-url", llama_server.url, "--socket-group", "postgres"]) as d:
        yield d


@pytest.mark.parametrize("item", QUESTIONS, ids=[q["question"] for q in QUESTIONS])
def test_ask_through_a_third_party_openai_server(pg: Cluster, new_db, analyst_role, front, item) -> None:
    """PostgreSQL -> socket -> daemon (openai backend) -> llama_cpp.server -> llama.cpp, and the exact SQL back."""
    db = new_db(socket=front.socket_path)
    with pg.connect(db, user=analyst_role(db)) as conn:
        assert conn.execute("SELECT sqlcoder.ask(%s)", (item["question"],)).fetchone()[0] == item["sql"]


def test_server_counts_tokens_and_status_says_how(front: DaemonProcess, demo_model: Path) -> None:
    from transformers import AutoTokenizer

    texts = ["SELECT 1", "", "CREATE TABLE t (id int);", "ünïcödé 😀"]
    counts = front.request({"v": 1, "id": "c", "op": "count_tokens", "texts": texts})["counts"]
    tok = AutoTokenizer.from_pretrained(demo_model)
    assert counts == [len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts]
    st = front.request({"v": 1, "id": "s", "op": "status"})["status"]
    assert st["backend"] == "openai" and st["device"].startswith("remote:http://127.0.0.1:")
    assert st["model"].endswith("model-f32.gguf")  # the served model's id, from GET /v1/models
    assert st["token_counting"] == "llama-cpp-python"


def test_greedy_even_where_the_server_defaults_to_a_repeat_penalty(front: DaemonProcess, llama_server) -> None:
    """llama-cpp-python's server applies repeat_penalty 1.1 unless told otherwise; the daemon pins 1.0."""
    prompt = "SELECT count(*) FROM"
    direct = llama_server.completion(prompt, 40)["choices"][0]["text"]
    reply = front.request({"v": 1, "id": "g", "op": "generate", "prompt": prompt, "max_new_tokens": 40,
                           "num_beams": 1})
    assert reply["ok"] and reply["text"] == direct


# --------------------------------------------------------------------------- servers that misbehave


@pytest.fixture(scope="module")
def misbehaving() -> Iterator[ModelServerStandIn]:
    with ModelServerStandIn() as srv:
        yield srv


def test_bad_server_answers_reach_the_caller_as_unavailable_with_a_hint(pg: Cluster, new_db, analyst_role,
                                                                        misbehaving) -> None:
    with DaemonProcess(None, socket_dir() / "sqlcoder.sock",
                       ["--backend", "openai", "--openai-url", misbehaving.url,
                        "--socket-group", "postgres"]) as d:
        db = new_db(socket=d.socket_path)
        with pg.connect(db) as conn:
            conn.execute("UPDATE sqlcoder.config SET value = '3000' WHERE key = 'model_timeout_ms'")
        with pg.connect(db, user=analyst_role(db)) as conn:
            for mode in ("garbage", "error", "shape"):
                misbehaving.mode = mode
                with pytest.raises(psycopg.Error) as info:
                    conn.execute("SELECT sqlcoder.ask('how many customers are there?')")
                assert info.value.sqlstate == "08001", (mode, info.value)
                assert "model server is unavailable" in str(info.value)
                assert "check that server and the daemon's openai_url" in info.value.diag.message_hint
            misbehaving.mode = "hang"  # accepts, never answers: the request's deadline ends it
            t0 = time.monotonic()
            with pytest.raises(psycopg.errors.QueryCanceled):
                conn.execute("SELECT sqlcoder.ask('how many customers are there?')")
            assert time.monotonic() - t0 < 20
        assert d.request({"v": 1, "id": "s", "op": "status"})["status"]["state"] == "ready"


def test_server_down_refuses_to_start_with_one_line(capfd, tmp_path: Path) -> None:
    rc = main(["--backend", "openai", "--openai-url", f"http://127.0.0.1:{free_port()}/v1",
               "--socket", str(tmp_path / "s.sock")])
    lines = [line for line in capfd.readouterr().err.splitlines() if line.strip()]
    assert rc == 1 and len(lines) == 1 and "cannot reach the model server (ConnectionRefusedError" in lines[0]


def test_server_that_never_answers_refuses_the_start_within_seconds(capfd, tmp_path: Path) -> None:
    import socket

    with socket.socket() as silent:  # accepts connections (the kernel's backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        t0 = time.monotonic()
        rc = main(["--backend", "openai", "--openai-url", f"http://127.0.0.1:{silent.getsockname()[1]}/v1",
                   "--socket", str(tmp_path / "s.sock")])
    lines = [line for line in capfd.readouterr().err.splitlines() if line.strip()]
    assert rc == 1 and len(lines) == 1 and "cannot reach the model server (TimeoutError" in lines[0], lines
    assert time.monotonic() - t0 < 30


def test_streamed_completions_and_a_client_that_leaves(misbehaving: ModelServerStandIn) -> None:
    """Completions are streamed (llama-cpp-python's server stops generating only for a streamed client that
    leaves, at its next chunk); when the caller leaves, the daemon hangs up on the server at once."""
    from sqlcoder_dev.daemonproc import Connection, socket_path

    misbehaving.mode, misbehaving.text = "stream", " SELECT 2;\n[/SQL]"
    with DaemonProcess(None, socket_path(), ["--backend", "openai", "--openai-url", misbehaving.url]) as d:
        ask = {"v": 1, "id": "s", "op": "generate", "prompt": "SELECT", "max_new_tokens": 50}
        reply = d.request(ask)
        assert reply["ok"] and reply["text"] == " SELECT 2;\n[/SQL]" and reply["finish_reason"] == "eos", reply
        assert reply["usage"]["completion_tokens"] == len(misbehaving.text)  # one per chunk without usage
        misbehaving.mode = "stream-forever"
        before = misbehaving.requests
        c = Connection(d.socket_path)
        c.send(dict(ask, id="long"))
        end = time.monotonic() + 30
        while misbehaving.requests == before:
            assert time.monotonic() < end
            time.sleep(0.02)
        c.close()
        while misbehaving.disconnects == 0:
            assert time.monotonic() < end, "the daemon kept reading the stream"
            time.sleep(0.02)
        assert d.request({"v": 1, "id": "s", "op": "status"})["status"]["requests"]["interrupted"] == 1


def test_a_completion_whose_finish_reason_is_not_text_is_still_read() -> None:
    """A hostile server's finish_reason may be any JSON value; a list does not even hash (it raised TypeError)."""
    from sqlcoder_daemon.backends.openai_backend import _parse_completion
    from sqlcoder_daemon.jobs import GenerationResult

    for reason, want in ((["stop"], "stop"), ({"a": 1}, "stop"), (None, "stop"), ("length", "length"), ("stop", "eos")):
        got = _parse_completion({"choices": [{"text": " SELECT 1;", "finish_reason": reason}]})
        assert isinstance(got, GenerationResult) and (got.text, got.finish_reason) == (" SELECT 1;", want), reason
