"""The optional backends: openai (against the daemon's own OpenAI-compatible listener) and vllm (import guard)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sqlcoder_daemon.cli import main
from sqlcoder_dev.daemonproc import Connection, DaemonProcess, socket_path

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def pair(random_model: Path) -> Iterator[tuple[DaemonProcess, DaemonProcess]]:
    """A model daemon serving an OpenAI-compatible API on loopback, and a daemon forwarding to it."""
    port = _free_port()
    with DaemonProcess(random_model, socket_path("model.sock"),
                       ["--quantize", "none", "--device-map", "cpu", "--openai-listen", f"127.0.0.1:{port}",
                        "--openai-listen-api-key", "k-123", "--max-new-tokens", "4000",
                        "--repetition-guard-tokens", "0"]) as model:
        with DaemonProcess(random_model, socket_path("front.sock"),
                           ["--backend", "openai", "--openai-url", f"http://127.0.0.1:{port}/v1",
                            "--openai-api-key", "k-123", "--max-new-tokens", "4000",
                            "--repetition-guard-tokens", "0"]) as front:
            yield model, front


def status(d: DaemonProcess) -> dict:
    return d.request({"v": 1, "id": "s", "op": "status"})["status"]


@pytest.mark.parametrize("beams", [1, 4])
def test_openai_backend_gives_the_same_answer(pair, beams: int) -> None:
    model, front = pair
    ask = {"v": 1, "id": "q", "op": "generate", "prompt": "SELECT name FROM", "max_new_tokens": 9, "num_beams": beams}
    direct, forwarded = model.request(ask), front.request(ask)
    assert forwarded["ok"], forwarded
    for key in ("text", "finish_reason", "usage"):
        if key == "usage":
            assert forwarded["usage"]["prompt_tokens"] == direct["usage"]["prompt_tokens"]
            assert forwarded["usage"]["completion_tokens"] == direct["usage"]["completion_tokens"]
        else:
            assert forwarded[key] == direct[key]


def test_openai_backend_counts_tokens_and_reports_itself(pair) -> None:
    model, front = pair
    ask = {"v": 1, "id": "c", "op": "count_tokens", "texts": ["SELECT 1", "", "CREATE TABLE t (id int);"]}
    assert front.request(ask)["counts"] == model.request(ask)["counts"]
    st = status(front)
    assert st["backend"] == "openai" and st["device"].startswith("remote:http://127.0.0.1:")
    assert st["context_length"] == 4096 and st["settings"]["openai_api_key"] == "***"


def test_disconnect_cancels_through_the_openai_hop(pair) -> None:
    model, front = pair
    before = status(model)["requests"]
    c = Connection(front.socket_path)
    c.send({"v": 1, "id": "long", "op": "generate", "prompt": "SELECT count(*) FROM", "max_new_tokens": 4000,
            "num_beams": 4})
    end = time.monotonic() + 120
    while status(model)["requests"]["in_flight"] == 0:
        assert time.monotonic() < end, "the forwarded request never started"
        time.sleep(0.05)
    c.close()
    while status(model)["requests"]["in_flight"] == 1:
        assert time.monotonic() < end, "the forwarded generation was not stopped"
        time.sleep(0.05)
    after = status(model)["requests"]
    assert after["cancelled"] == before["cancelled"] + 1 and after["interrupted"] == before["interrupted"] + 1


def test_listener_requires_its_key(pair) -> None:
    import json
    import urllib.error
    import urllib.request

    model, _ = pair
    port = status(model)["settings"]["openai_listen"].rsplit(":", 1)[1]
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions", method="POST",
                                 data=json.dumps({"prompt": "x", "max_tokens": 1}).encode(),
                                 headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req)
    assert info.value.code == 401


def test_vllm_backend_missing_says_how_to_install(capsys: pytest.CaptureFixture[str]) -> None:
    try:
        import vllm  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("vllm is installed here, so the missing-package message cannot be shown")
    assert main(["--backend", "vllm", "--model", "x", "--socket", "/nonexistent/x.sock"]) == 1
    assert "pip install 'sqlcoder-daemon[vllm]'" in capsys.readouterr().err


@pytest.mark.parametrize("quantize, layer", [("nf4", "Linear4bit"), ("int8", "Linear8bitLt"), ("none", "Linear")])
def test_the_daemons_loader_quantizes_the_weights(random_model, quantize: str, layer: str) -> None:
    """The exact loader the 70B goes through: its linear layers are bitsandbytes' when quantized."""
    from sqlcoder_daemon.backends.transformers_backend import TransformersBackend
    from sqlcoder_daemon.settings import load_settings

    backend = TransformersBackend(load_settings(["--model", str(random_model), "--quantize", quantize,
                                                 "--device-map", "cpu"]))
    backend.load()
    q_proj = backend.model.model.layers[0].self_attn.q_proj
    assert type(q_proj).__name__ == layer
    assert backend.info()["quantization"] == quantize
