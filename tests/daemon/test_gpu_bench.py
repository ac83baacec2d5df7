"""bench/gpu_70b_shape.py without a GPU: its arguments, the 70B shape it builds, and a scaled-down CPU run."""

from __future__ import annotations

import importlib.util

import pytest

from helpers.paths import ROOT


@pytest.fixture(scope="module")
def gpu_bench():
    spec = importlib.util.spec_from_file_location("gpu_70b_shape", ROOT / "bench" / "gpu_70b_shape.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_default_shape_is_codellama_70b(gpu_bench) -> None:
    from accelerate import init_empty_weights
    from transformers import LlamaForCausalLM

    args = gpu_bench.parse_args([])
    cfg = gpu_bench.model_config(args)
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads,
            cfg.intermediate_size, cfg.vocab_size) == (80, 8192, 64, 8, 28672, 32016)
    assert (args.prompt_tokens, args.beams, args.device) == (2000, 4, "cuda")
    with init_empty_weights():
        model = LlamaForCausalLM(cfg)
    assert 68.9e9 < sum(p.numel() for p in model.parameters()) < 69.1e9  # CodeLlama-70B: 68.98B parameters


def test_bad_head_counts_are_refused(gpu_bench) -> None:
    with pytest.raises(SystemExit):
        gpu_bench.parse_args(["--heads", "64", "--kv-heads", "7"])


def test_bandwidth_table_prefers_specific_names(gpu_bench) -> None:
    table = dict(gpu_bench.BANDWIDTH_GBS)
    assert table["H100"] == 3350.0 and table["H100 PCIe"] == 2000.0
    names = [frag for frag, _ in gpu_bench.BANDWIDTH_GBS]
    assert names.index("H100 PCIe") < names.index("H100") and names.index("A100-SXM4-80GB") < names.index("A100")


@pytest.mark.slow
def test_scaled_down_run_on_cpu(gpu_bench, capsys: pytest.CaptureFixture[str]) -> None:
    import bitsandbytes as bnb
    import torch

    torch.set_num_threads(1)
    code = gpu_bench.main(["--device", "cpu", "--dtype", "float32", "--layers", "2", "--hidden", "128",
                           "--heads", "4", "--kv-heads", "2", "--intermediate", "256", "--vocab", "512",
                           "--prompt-tokens", "48", "--new-tokens", "3", "--repeats", "1", "--bandwidth-gbs", "10"])
    assert code == 0
    lines = {ln.split()[1]: float(ln.split()[2]) for ln in capsys.readouterr().out.splitlines()
             if ln.startswith("BENCH ")}
    assert set(lines) == {"gpu70b_weight_gib", "gpu70b_prefill_tokens_per_s",
                          "gpu70b_prefill_tokens_per_s_bandwidth_bound", "gpu70b_decode_ms_per_token_batch1",
                          "gpu70b_decode_ms_per_token_beams4", "gpu70b_decode_floor_ms_per_token"}
    assert all(v > 0 for v in lines.values())
    # nf4 layers really are 4-bit: 2 layers of 4*128*128 + ... weights at half a byte, far below float32.
    model = gpu_bench.build_nf4_model(gpu_bench.model_config(gpu_bench.parse_args(
        ["--layers", "1", "--hidden", "128", "--heads", "4", "--kv-heads", "2", "--intermediate", "256",
         "--vocab", "512"])), "cpu", "float32")
    linears = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(linears) == 7 and all(m.weight.dtype == torch.uint8 for m in linears)
