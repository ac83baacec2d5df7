"""The memory estimate made before loading, and the refusal it leads to."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import LlamaConfig

from sqlcoder_daemon.cli import main
from sqlcoder_daemon.memory import InsufficientMemory, check_fits, estimate_weight_bytes

GB = 10**9


def codellama_70b() -> LlamaConfig:
    return LlamaConfig(vocab_size=32016, hidden_size=8192, intermediate_size=28672, num_hidden_layers=80,
                       num_attention_heads=64, num_key_value_heads=8, max_position_embeddings=4096)


def test_70b_estimates() -> None:
    cfg = codellama_70b()
    nf4 = estimate_weight_bytes(cfg, "nf4", "bfloat16")
    int8 = estimate_weight_bytes(cfg, "int8", "bfloat16")
    bf16 = estimate_weight_bytes(cfg, "none", "bfloat16")
    assert 136 * GB < bf16 < 140 * GB  # 69B parameters at 2 bytes
    assert 68 * GB < int8 < 71 * GB
    assert 38 * GB < nf4 < 41 * GB


def test_refusal_suggests_nf4_and_a_smaller_model() -> None:
    with pytest.raises(InsufficientMemory) as info:
        check_fits(codellama_70b(), quantize="none", dtype="bfloat16", device_map="cpu",
                   max_memory={"cpu": "64GiB"}, model_name="defog/sqlcoder-70b-alpha")
    msg = str(info.value)
    assert "--quantize nf4" in msg and "smaller model" in msg and "defog/sqlcoder-70b-alpha" in msg


def test_daemon_refuses_before_loading(random_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--model", str(random_model), "--quantize", "none", "--device-map", "cpu",
                 "--max-memory", "cpu=1MiB", "--socket", "/nonexistent/never.sock"])
    assert code == 3
    err = capsys.readouterr().err
    assert "--quantize nf4" in err and "1.0 MiB of available RAM" in err
