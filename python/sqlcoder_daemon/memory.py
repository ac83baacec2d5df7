"""Estimate a model's memory before loading it, so an impossible load fails fast with advice."""

from __future__ import annotations

import logging
import os
from typing import Any

__all__ = ["InsufficientMemory", "available_bytes", "check_fits", "estimate_weight_bytes", "format_bytes", "proc_bytes"]

log = logging.getLogger(__name__)

# Bytes per parameter of a quantized linear layer: nf4 packs two weights per byte plus
# one float32 absmax per 64-weight block (double quantization shrinks it; we stay conservative).
_QUANT_BYTES = {"nf4": 0.5 + 4 / 64, "int8": 1.0 + 4 / 4096}
_DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
#: Room for activations, the KV cache of a few requests and the CUDA context.
OVERHEAD_FRACTION = 0.10
OVERHEAD_MIN = 1 << 30


class InsufficientMemory(RuntimeError):
    """The model cannot fit in the memory it would be loaded into."""


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    raise AssertionError


def estimate_weight_bytes(config: Any, quantize: str, dtype: str) -> int:
    """Weight bytes of ``config``'s model: quantized linear layers plus everything else in ``dtype``.

    The model is built on the meta device (no memory), so any architecture
    transformers knows is counted exactly; bitsandbytes leaves the output
    head unquantized, as counted here.
    """
    import torch
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(config)
    full = _DTYPE_BYTES.get(dtype, 2)
    quantized_params = other_params = 0
    out_emb = model.get_output_embeddings()
    for module in model.modules():
        if isinstance(module, torch.nn.Linear) and module is not out_emb:
            quantized_params += module.weight.numel()
            other_params += module.bias.numel() if module.bias is not None else 0
        else:
            other_params += sum(p.numel() for p in module.parameters(recurse=False))
    per_q = _QUANT_BYTES.get(quantize, full)
    return int(quantized_params * per_q + other_params * full)


def available_bytes(device_map: Any, max_memory: dict[int | str, str] | None) -> tuple[int, str]:
    """Memory the model would be loaded into, and a description of it: GPUs if used, else RAM."""
    import torch

    use_gpu = device_map != "cpu" and torch.cuda.is_available()
    if use_gpu:
        total, names = 0, []
        for i in range(torch.cuda.device_count()):
            free, _ = torch.cuda.mem_get_info(i)
            cap = max_memory.get(i) if max_memory else None
            limit = min(free, _parse_size(cap)) if cap else free
            total += limit
            names.append(f"cuda:{i} {format_bytes(limit)}")
        return total, "GPU memory (" + ", ".join(names) + ")"
    cap = (max_memory or {}).get("cpu")
    avail = _mem_available()
    if cap:
        avail = min(avail, _parse_size(cap))
    return avail, "available RAM"


def _parse_size(text: str | int) -> int:
    if isinstance(text, int):
        return text
    t = text.strip().upper().replace(" ", "")
    for suffix, mult in (("GIB", 1 << 30), ("MIB", 1 << 20), ("KIB", 1 << 10), ("GB", 10**9), ("MB", 10**6),
                         ("KB", 10**3), ("B", 1)):
        if t.endswith(suffix):
            return int(float(t[: -len(suffix)]) * mult)
    return int(t)


def proc_bytes(path: str, key: str) -> int | None:
    """A ``Key:   N kB`` line of a Linux /proc file (meminfo, PID/status) in bytes; None if absent."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _mem_available() -> int:
    available = proc_bytes("/proc/meminfo", "MemAvailable")
    if available is None:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    return available


def check_fits(config: Any, *, quantize: str, dtype: str, device_map: Any, max_memory: dict[int | str, str] | None,
               model_name: str, extra_bytes: int = 0) -> dict[str, Any]:
    """Raise :class:`InsufficientMemory` with advice when the weights plus headroom (and ``extra_bytes``,
    the prefix cache's budget) exceed available memory."""
    weights = estimate_weight_bytes(config, quantize, dtype)
    need = weights + max(OVERHEAD_MIN, int(weights * OVERHEAD_FRACTION)) + extra_bytes
    have, where = available_bytes(device_map, max_memory)
    report = {"weights_bytes": weights, "needed_bytes": need, "available_bytes": have, "where": where,
              "prefix_cache_bytes": extra_bytes}
    log.info("memory estimate for %s (%s): weights %s, with headroom %s; %s: %s", model_name, quantize,
             format_bytes(weights), format_bytes(need), where, format_bytes(have))
    if need > have:
        advice = []
        if quantize != "nf4":
            nf4 = estimate_weight_bytes(config, "nf4", dtype)
            advice.append(f"--quantize nf4 (weights about {format_bytes(nf4)})")
        advice.append("a smaller model (e.g. defog/sqlcoder-7b-2 instead of a 70B one)")
        if extra_bytes:
            advice.append("a smaller --prefix-cache-bytes")
        advice.append("more GPUs or a larger --max-memory")
        raise InsufficientMemory(
            f"{model_name} needs about {format_bytes(need)} ({format_bytes(weights)} of weights with "
            f"--quantize {quantize}) but only {format_bytes(have)} of {where} is free. "
            f"Try {'; or '.join(advice)}. (--check-memory false skips this check.)"
        )
    return report
