"""Measure the weight memory of SQLCoder-shaped models per quantization, without their weights.

Memory depends on a model's shapes, not on the values of its weights, so this
builds random Llama models with the published architectures of SQLCoder's base
models (1 and 2 decoder layers), loads each through the daemon's own
quantization config (bitsandbytes, which quantizes on CPU too), measures
``get_memory_footprint()``, and extrapolates linearly to the full depth.
The figures feed docs/operations.md, "Sizing".

    PYTHONPATH=python .venv/bin/python scripts/measure_weight_memory.py [--models sqlcoder-7b-2 ...]

Prints one ``BENCH weights_<model>_<quantization> <GiB> GiB`` line per pair.
``--analytic`` computes the same figures from the shapes (agreeing with the
measurement to 0.01 GiB for sqlcoder-7b-2) without loading anything.
"""

from __future__ import annotations

import argparse
import gc
import tempfile
from types import SimpleNamespace
from typing import Any

__all__ = ["ARCHITECTURES", "analytic", "footprint", "measure", "main"]

# Shapes of the base models' published config.json files (the fine-tunes keep them).
ARCHITECTURES: dict[str, dict[str, Any]] = {
    # defog/sqlcoder-7b-2: fine-tuned CodeLlama-7B
    "sqlcoder-7b-2": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                          num_attention_heads=32, num_key_value_heads=32, vocab_size=32016),
    # defog/llama-3-sqlcoder-8b: fine-tuned Llama-3-8B
    "llama-3-sqlcoder-8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                                num_attention_heads=32, num_key_value_heads=8, vocab_size=128256),
    # defog/sqlcoder-34b-alpha: fine-tuned CodeLlama-34B
    "sqlcoder-34b-alpha": dict(hidden_size=8192, intermediate_size=22016, num_hidden_layers=48,
                               num_attention_heads=64, num_key_value_heads=8, vocab_size=32000),
    # defog/sqlcoder-70b-alpha: fine-tuned CodeLlama-70B
    "sqlcoder-70b-alpha": dict(hidden_size=8192, intermediate_size=28672, num_hidden_layers=80,
                               num_attention_heads=64, num_key_value_heads=8, vocab_size=32016),
}


def _quant_state_bytes(model: Any) -> int:
    """What ``get_memory_footprint`` leaves out: bitsandbytes' scales (nf4 absmax, int8 SCB), kept off-parameter."""
    total = 0
    for module in model.modules():
        weight = getattr(module, "weight", None)
        state = getattr(weight, "quant_state", None)
        while state is not None:
            total += sum(t.nbytes for t in (state.absmax, state.code, getattr(state, "offset", None))
                         if t is not None)
            state = getattr(state, "state2", None)
        scb = getattr(weight, "SCB", None)
        if scb is not None:
            total += scb.nbytes
    return total


def footprint(shape: dict[str, Any], layers: int, quantize: str) -> int:
    """Bytes of a random model of ``shape`` cut to ``layers`` decoder layers, loaded as the daemon loads it."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    from sqlcoder_daemon.backends.transformers_backend import TransformersBackend

    config = LlamaConfig(**{**shape, "num_hidden_layers": layers}, torch_dtype="bfloat16")
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        model = LlamaForCausalLM(config).to(torch.bfloat16)
        model.save_pretrained(tmp)
        del model
        gc.collect()
        kwargs: dict[str, Any] = {"dtype": torch.bfloat16, "device_map": "cpu"}
        if quantize != "none":
            # The daemon's own BitsAndBytesConfig (nf4 with double quantization, or LLM.int8).
            backend = SimpleNamespace(settings=SimpleNamespace(quantize=quantize))
            kwargs["quantization_config"] = TransformersBackend.quantization_config(backend, torch.bfloat16)
        model = AutoModelForCausalLM.from_pretrained(tmp, **kwargs)
        size = model.get_memory_footprint() + _quant_state_bytes(model)
        del model
        gc.collect()
    return size


def measure(name: str, quantize: str) -> int:
    """Full-depth bytes: the 1-layer model plus (depth - 1) times what the second layer added."""
    shape = ARCHITECTURES[name]
    one, two = footprint(shape, 1, quantize), footprint(shape, 2, quantize)
    return one + (shape["num_hidden_layers"] - 1) * (two - one)


def analytic(name: str, quantize: str) -> int:
    """The same bytes by arithmetic, instantly: quantized linear layers plus bf16 embeddings, head and norms.

    bitsandbytes packs nf4 as 4 bits per weight plus one 8-bit absmax per
    64-weight block and, with double quantization, one fp32 per 256 blocks;
    int8 stores 1 byte per weight plus one fp32 scale per output row.
    """
    c = ARCHITECTURES[name]
    h, i, n, v = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"], c["vocab_size"]
    kv = h * c["num_key_value_heads"] // c["num_attention_heads"]
    linear_in_out = [(h, h), (h, kv), (h, kv), (h, h), (h, i), (h, i), (i, h)]  # q k v o gate up down
    quantized = n * sum(a * b for a, b in linear_in_out)
    rows = n * sum(b for _, b in linear_in_out)
    other = 2 * v * h + (2 * n + 1) * h  # embeddings, untied head, norms
    per_weight = {"none": 2.0, "int8": 1.0, "nf4": 0.5 + 1 / 64 + 4 / (64 * 256)}[quantize]
    scales = 4 * rows if quantize == "int8" else 0
    return int(quantized * per_weight + scales + 2 * other)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(ARCHITECTURES), choices=list(ARCHITECTURES))
    parser.add_argument("--quantize", nargs="+", default=["none", "int8", "nf4"], choices=["none", "int8", "nf4"])
    parser.add_argument("--analytic", action="store_true",
                        help="compute instead of loading models (minutes each for the 34B and 70B shapes)")
    args = parser.parse_args(argv)
    how = analytic if args.analytic else measure
    for name in args.models:
        for quantize in args.quantize:
            print(f"BENCH weights_{name}_{quantize} {how(name, quantize) / 2**30:.2f} GiB", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
