"""The vllm backend end to end, where a CUDA GPU and vLLM are present (it has not run on the CI machine yet:
docs/performance.md says so). The import guard without vLLM is tested in test_daemon_backends.py."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

from sqlcoder_dev import shop
from sqlcoder_dev.daemonproc import DaemonProcess, socket_dir
from sqlcoder_dev.pgcluster import Cluster


def _why_not() -> str | None:
    if importlib.util.find_spec("vllm") is None:
        return "vllm is not installed (pip install 'sqlcoder-daemon[vllm]' on a CUDA host)"
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU"
    return None


REASON = _why_not()
pytestmark = [pytest.mark.gpu, pytest.mark.slow, pytest.mark.skipif(REASON is not None, reason=str(REASON))]
QUESTIONS = shop.sample_questions()


@pytest.fixture(scope="module")
def vllm_daemon(demo_model: Path) -> Iterator[DaemonProcess]:
    with DaemonProcess(demo_model, socket_dir() / "sqlcoder.sock",
                       ["--backend", "vllm", "--quantize", "none", "--dtype", "float32", "--socket-group", "postgres"],
                       start_timeout=900) as daemon:
        yield daemon


@pytest.mark.parametrize("item", QUESTIONS, ids=[q["question"] for q in QUESTIONS])
def test_ask_answers_through_vllm(pg: Cluster, new_db, analyst_role, vllm_daemon, item) -> None:
    db = new_db(socket=vllm_daemon.socket_path)
    with pg.connect(db, user=analyst_role(db)) as conn:
        assert conn.execute("SELECT sqlcoder.ask(%s)", (item["question"],)).fetchone()[0] == item["sql"]


@pytest.mark.parametrize("beams", [1, 4])
def test_vllm_answers_like_transformers(vllm_daemon: DaemonProcess, tiny_daemon: DaemonProcess, beams: int) -> None:
    ask = {"v": 1, "id": "q", "op": "generate", "prompt": "SELECT name FROM", "max_new_tokens": 12, "num_beams": beams}
    got, want = vllm_daemon.request(ask), tiny_daemon.request(ask)
    assert got["ok"] and (got["text"], got["usage"]["prompt_tokens"]) == (want["text"], want["usage"]["prompt_tokens"])
    st = vllm_daemon.request({"v": 1, "id": "s", "op": "status"})["status"]
    assert st["backend"] == "vllm" and st["device"].startswith("cuda:")
