"""The llama_cpp backend: tiny models converted to GGUF, served by the real daemon through llama-cpp-python."""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sqlcoder_daemon.cli import main
from sqlcoder_dev import shop
from sqlcoder_dev.daemonproc import Connection, DaemonProcess, socket_dir, socket_path
from sqlcoder_dev.gguf_export import ensure_gguf
from sqlcoder_dev.pgcluster import Cluster
from sqlcoder_dev.tiny import DEFAULT_CORPUS

pytestmark = pytest.mark.slow

QUESTIONS = shop.sample_questions()


@pytest.fixture(scope="module")
def random_gguf(random_model: Path) -> Path:
    return ensure_gguf(random_model)


@pytest.fixture(scope="module")
def llama_daemon(demo_model: Path) -> Iterator[DaemonProcess]:
    """The demo model as GGUF, served with --backend llama_cpp, reachable by PostgreSQL."""
    with DaemonProcess(ensure_gguf(demo_model), socket_dir() / "sqlcoder.sock",
                       ["--backend", "llama_cpp", "--socket-group", "postgres"]) as daemon:
        yield daemon


@pytest.fixture(scope="module")
def random_llama_daemon(random_gguf: Path) -> Iterator[DaemonProcess]:
    """A random model (it rarely says EOS: long generations to cancel) on llama_cpp."""
    with DaemonProcess(random_gguf, socket_path(), ["--backend", "llama_cpp", "--max-new-tokens", "4000",
                                                    "--repetition-guard-tokens", "0"]) as d:
        yield d


def _backends(random_model: Path, random_gguf: Path):
    from sqlcoder_daemon.backends.llama_cpp_backend import LlamaCppBackend
    from sqlcoder_daemon.backends.transformers_backend import TransformersBackend
    from sqlcoder_daemon.settings import load_settings

    cached = LlamaCppBackend(load_settings(["--backend", "llama_cpp", "--model", str(random_gguf),
                                            "--prefix-cache-min-tokens", "4"]))
    plain = LlamaCppBackend(load_settings(["--backend", "llama_cpp", "--model", str(random_gguf),
                                           "--prefix-cache-bytes", "0"]))
    hf = TransformersBackend(load_settings(["--model", str(random_model), "--quantize", "none", "--device-map", "cpu",
                                            "--prefix-cache-bytes", "0"]))
    for b in (cached, plain, hf):
        b.load()
    return cached, plain, hf


def _job(prompt: str, new: int = 24):
    from sqlcoder_daemon.jobs import Job
    from sqlcoder_daemon.protocol import GenerateRequest

    return Job(GenerateRequest(id="t", op="generate", prompt=prompt, max_new_tokens=new, num_beams=1,
                               timeout_ms=600_000))


def test_gguf_tokenizer_and_greedy_output_match_transformers(random_model: Path, random_gguf: Path) -> None:
    """Same token ids for the corpus, same greedy text and counts, with and without the KV prefix reuse."""
    cached, plain, hf = _backends(random_model, random_gguf)
    texts = list(DEFAULT_CORPUS) + ["  two  spaces\n\n\ttab", "ünïcödé 日本 😀", "it's 12345 'll"]
    assert cached.count_tokens(texts) == hf.count_tokens(texts)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(random_model)
    assert [cached.llm.tokenize(t.encode(), add_bos=False) for t in texts] == \
        [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    schema_a, schema_b = DEFAULT_CORPUS[2], DEFAULT_CORPUS[3]
    prompts = [schema_a + "SELECT", schema_a + "SELECT name", schema_b + "SELECT", schema_a + "SELECT count",
               "SELECT 1"]
    for prompt in prompts:
        want = hf.generate([_job(prompt)])[0]
        for b in (cached, plain):
            got = b.generate([_job(prompt)])[0]
            assert (got.text, got.finish_reason, got.prompt_tokens, got.completion_tokens) == \
                (want.text, want.finish_reason, want.prompt_tokens, want.completion_tokens), prompt
    stats = cached.stats()["prefix_cache"]
    assert stats["restores"] >= 1 and stats["hits"] >= 2  # schema_a came back after schema_b: a saved state
    assert plain.stats()["prefix_cache"]["tokens_reused"] == 0
    for b in (cached, plain):
        b.close()


@pytest.mark.parametrize("item", QUESTIONS, ids=[q["question"] for q in QUESTIONS])
def test_ask_answers_through_llama_cpp(pg: Cluster, new_db, analyst_role, llama_daemon, item) -> None:
    """The trained demo model, as GGUF on llama.cpp, answers each demo question exactly through SQL."""
    db = new_db(socket=llama_daemon.socket_path)
    with pg.connect(db, user=analyst_role(db)) as conn:
        sql = conn.execute("SELECT sqlcoder.ask(%s)", (item["question"],)).fetchone()[0]
        assert sql == item["sql"]
        conn.execute(sql)


def test_status_says_llama_cpp_and_greedy(llama_daemon: DaemonProcess) -> None:
    st = llama_daemon.request({"v": 1, "id": "s", "op": "status"})["status"]
    assert (st["backend"], st["device"], st["dtype"], st["decoding"]) == ("llama_cpp", "cpu", "gguf", "greedy")
    assert st["memory_estimate"]["kv_cache_bytes"] == 4096 * 2 * 2 * 64 * 2  # tokens x layers x K,V x width x f16
    assert st["context_length"] == 4096 and st["quantization"] == "all F32"
    assert st["prefix_cache"]["enabled"] is True and st["memory"]["rss_bytes"] > 0


def test_disconnect_stops_at_the_next_token(random_llama_daemon: DaemonProcess) -> None:
    d = random_llama_daemon

    def requests() -> dict:
        return d.request({"v": 1, "id": "s", "op": "status"})["status"]["requests"]

    before = requests()
    c = Connection(d.socket_path)
    c.send({"v": 1, "id": "long", "op": "generate", "prompt": "SELECT count(*) FROM", "max_new_tokens": 4000})
    end = time.monotonic() + 60
    while requests()["in_flight"] == 0:
        assert time.monotonic() < end, "the generation never started"
        time.sleep(0.02)
    c.close()
    while requests()["in_flight"] == 1:
        assert time.monotonic() < end, "the generation was not stopped"
        time.sleep(0.02)
    after = requests()
    assert after["cancelled"] == before["cancelled"] + 1 and after["interrupted"] == before["interrupted"] + 1
    # A deadline stops it the same way, and the daemon still answers afterwards.
    reply = d.request({"v": 1, "id": "t", "op": "generate", "prompt": "SELECT count(*) FROM", "max_new_tokens": 4000,
                       "timeout_ms": 300})
    assert reply["error"]["code"] == "timeout"
    assert d.request({"v": 1, "id": "ok", "op": "generate", "prompt": "SELECT", "max_new_tokens": 3})["ok"]


def _start_fails(capfd: pytest.CaptureFixture[str], tmp_path: Path, model: Path) -> str:
    rc = main(["--backend", "llama_cpp", "--model", str(model), "--socket", str(tmp_path / "s.sock")])
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 1 and len(lines) == 1, err
    assert not (tmp_path / "s.sock").exists()
    return lines[0]


def test_missing_or_corrupt_gguf_is_refused_with_one_line(capfd, tmp_path: Path, random_gguf: Path) -> None:
    assert "no such file" in _start_fails(capfd, tmp_path, tmp_path / "absent.gguf").lower()
    assert "a directory; the llama_cpp backend takes a .gguf file" in _start_fails(capfd, tmp_path, tmp_path)
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"PK\x03\x04 not a gguf" * 100)
    assert "not a GGUF file" in _start_fails(capfd, tmp_path, junk)
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(random_gguf.read_bytes()[: random_gguf.stat().st_size // 2])
    assert "llama.cpp cannot load it (truncated or corrupt GGUF?)" in _start_fails(capfd, tmp_path, truncated)
    garbled = tmp_path / "garbled.gguf"
    data = bytearray(random_gguf.read_bytes())
    data[8:64] = b"\xff" * 56  # tensor and metadata counts beyond any bound
    garbled.write_bytes(bytes(data))
    assert "cannot load it" in _start_fails(capfd, tmp_path, garbled)
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_a_model_that_cannot_fit_is_refused_before_loading(capfd, tmp_path: Path, random_gguf: Path) -> None:
    rc = main(["--backend", "llama_cpp", "--model", str(random_gguf), "--prefix-cache-bytes", "100000GiB",
               "--socket", str(tmp_path / "s.sock")])
    lines = [line for line in capfd.readouterr().err.splitlines() if line.strip()]
    assert rc == 3 and len(lines) == 1, lines
    assert "of KV cache for --llama-n-ctx 4096" in lines[0] and "Try a smaller --llama-n-ctx" in lines[0]


def test_missing_package_says_how_to_install(capfd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # import llama_cpp now raises ImportError
    line = _start_fails(capfd, tmp_path, tmp_path / "m.gguf")
    assert "pip install 'sqlcoder-daemon[llama-cpp]'" in line
