"""SQLCoder-70B's speed limits on this GPU, without downloading it: a CodeLlama-70B-shaped model
(80 layers, hidden 8192, 64 heads, 8 KV heads, intermediate 28672, vocab 32016) with random weights,
quantized to nf4 layer by layer directly on the GPU (peak memory: the nf4 model plus one bf16 matrix).

Prints ``BENCH`` lines, each measured figure beside its memory-bandwidth floor
(weight bytes / GPU bandwidth: every decode step reads every weight once):

- ``gpu70b_weight_gib``: bytes of the nf4 weights (with quantization state).
- ``gpu70b_prefill_tokens_per_s`` (and ``..._bandwidth_bound``) for a 2,000-token prompt.
- ``gpu70b_decode_ms_per_token_batch1`` and ``..._beams4`` (transformers' generate,
  as the daemon runs it), and ``gpu70b_decode_floor_ms_per_token``.

Not part of ``make bench`` (needs a CUDA GPU with about 40 GiB free). Run
``python bench/gpu_70b_shape.py`` and keep the figures in docs/performance.md.
The test suite runs it on the CPU with a scaled-down shape (tests/daemon/test_gpu_bench.py).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["BANDWIDTH_GBS", "build_nf4_model", "main", "model_config", "parse_args", "weight_bytes"]

#: Peak memory bandwidth (GB/s) by device-name fragment; the first match wins. --bandwidth-gbs overrides.
BANDWIDTH_GBS = (
    ("H200", 4800.0),
    ("H100 PCIe", 2000.0),
    ("H100", 3350.0),  # SXM5
    ("A100-SXM4-80GB", 2039.0),
    ("A100 80GB PCIe", 1935.0),
    ("A100", 1555.0),
    ("L40S", 864.0),
    ("A10G", 600.0),
    ("L4", 300.0),
)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], prog="gpu_70b_shape.py")
    p.add_argument("--layers", type=int, default=80)
    p.add_argument("--hidden", type=int, default=8192)
    p.add_argument("--heads", type=int, default=64)
    p.add_argument("--kv-heads", type=int, default=8)
    p.add_argument("--intermediate", type=int, default=28672)
    p.add_argument("--vocab", type=int, default=32016)
    p.add_argument("--context", type=int, default=16384, help="max positions (CodeLlama: 16384)")
    p.add_argument("--prompt-tokens", type=int, default=2000)
    p.add_argument("--new-tokens", type=int, default=64, help="decode steps timed per measurement")
    p.add_argument("--beams", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cuda", help="cuda, cuda:N, or cpu (only for checking the script)")
    p.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float16", "float32"),
                   help="compute dtype of the nf4 layers and dtype of the unquantized ones")
    p.add_argument("--bandwidth-gbs", type=float, default=None,
                   help="GPU memory bandwidth in GB/s (default: looked up from the device name)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.hidden % args.heads or args.heads % args.kv_heads:
        p.error("--hidden must be a multiple of --heads, and --heads of --kv-heads")
    return args


def model_config(args: argparse.Namespace) -> Any:
    """The LlamaConfig of the shape asked for (CodeLlama-70B's by default)."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=args.intermediate,
        num_hidden_layers=args.layers, num_attention_heads=args.heads, num_key_value_heads=args.kv_heads,
        max_position_embeddings=args.context, rope_theta=1_000_000.0, rms_norm_eps=1e-5,
        bos_token_id=1, eos_token_id=2, pad_token_id=2, tie_word_embeddings=False,
    )


def build_nf4_model(config: Any, device: str, dtype_name: str, seed: int = 0,
                    progress: Callable[[str], None] = lambda s: None) -> Any:
    """A random-weight LlamaForCausalLM whose decoder linear layers are bitsandbytes nf4, built on ``device``.

    The skeleton is created on the meta device (no memory); each linear layer
    then gets a random matrix in ``dtype`` on the device, quantized at once, so
    the full-precision model never exists. The output head stays unquantized,
    as transformers' bitsandbytes integration leaves it.
    """
    import bitsandbytes as bnb
    import torch
    from accelerate import init_empty_weights
    from accelerate.utils import set_module_tensor_to_device
    from transformers import GenerationConfig, LlamaForCausalLM

    dtype = getattr(torch, dtype_name)
    gen = torch.Generator(device=device).manual_seed(seed)
    std = config.initializer_range
    with init_empty_weights(include_buffers=False):
        model = LlamaForCausalLM(config)
    for i, layer in enumerate(model.model.layers):
        for parent in (layer.self_attn, layer.mlp):
            for name, child in list(parent.named_children()):
                if not isinstance(child, torch.nn.Linear):
                    continue
                q = bnb.nn.Linear4bit(child.in_features, child.out_features, bias=False, compute_dtype=dtype,
                                      compress_statistics=True, quant_type="nf4", device="meta")
                w = torch.empty(child.out_features, child.in_features, dtype=dtype, device=device)
                w.normal_(0.0, std, generator=gen)
                q.weight = bnb.nn.Params4bit(w, requires_grad=False, compress_statistics=True, quant_type="nf4",
                                             module=q).to(device)
                del w
                setattr(parent, name, q)
        if i % 10 == 0:
            progress(f"quantized layer {i + 1}/{config.num_hidden_layers}")
    for name, param in list(model.named_parameters()):
        if param.device.type != "meta":
            continue
        if name.endswith("norm.weight"):
            value = torch.ones(param.shape, dtype=dtype, device=device)
        else:
            value = torch.empty(param.shape, dtype=dtype, device=device).normal_(0.0, std, generator=gen)
        set_module_tensor_to_device(model, name, device, value=value)
    for name, buf in list(model.named_buffers()):
        set_module_tensor_to_device(model, name, device, value=buf.to(device))
    model.generation_config = GenerationConfig(bos_token_id=1, eos_token_id=2, pad_token_id=2)
    return model.eval()


def weight_bytes(model: Any) -> int:
    """Bytes read per decode step: all parameters (packed nf4 counted as stored) plus the nf4 block scales."""
    import bitsandbytes as bnb

    total = sum(p.numel() * p.element_size() for p in model.parameters())
    for m in model.modules():
        if isinstance(m, bnb.nn.Linear4bit) and m.weight.quant_state is not None:
            qs = m.weight.quant_state
            total += qs.absmax.numel() * qs.absmax.element_size()
            if getattr(qs, "state2", None) is not None:
                total += qs.state2.absmax.numel() * qs.state2.absmax.element_size()
    return total


def bandwidth_gbs(device: str, override: float | None) -> float | None:
    if override:
        return override
    import torch

    if not device.startswith("cuda"):
        return None
    name = torch.cuda.get_device_name(torch.device(device))
    return next((bw for frag, bw in BANDWIDTH_GBS if frag in name), None)


def _timed(fn: Callable[[], Any], device: str, repeats: int) -> float:
    import torch

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize(torch.device(device))

    fn()  # warm-up (kernels, allocator)
    samples = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def bench(name: str, value: float, unit: str) -> None:
    print(f"BENCH {name} {value:.3f} {unit}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    import torch

    args = parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_70b_shape.py: no CUDA GPU here (use --device cpu with a small shape to check the script)",
              file=sys.stderr)
        return 2
    config = model_config(args)
    t0 = time.perf_counter()
    model = build_nf4_model(config, args.device, args.dtype, args.seed,
                            progress=lambda s: print(f"# {s} ({time.perf_counter() - t0:.0f} s)", flush=True))
    wbytes = weight_bytes(model)
    bw = bandwidth_gbs(args.device, args.bandwidth_gbs)
    floor_s = wbytes / (bw * 1e9) if bw else None
    name = torch.cuda.get_device_name(torch.device(args.device)) if args.device.startswith("cuda") else "cpu"
    print(f"# device {args.device} ({name})"
          f", bandwidth {bw or 'unknown'} GB/s, built in {time.perf_counter() - t0:.0f} s", flush=True)
    bench("gpu70b_weight_gib", wbytes / 2**30, "GiB")

    gen = torch.Generator(device="cpu").manual_seed(args.seed)
    prompt = torch.randint(3, args.vocab, (1, args.prompt_tokens), generator=gen).to(args.device)
    mask = torch.ones_like(prompt)

    with torch.inference_mode():
        t_prefill = _timed(lambda: model(input_ids=prompt, attention_mask=mask, use_cache=True), args.device,
                           args.repeats)
        bench("gpu70b_prefill_tokens_per_s", args.prompt_tokens / t_prefill, "tok/s")
        if floor_s:
            bench("gpu70b_prefill_tokens_per_s_bandwidth_bound", args.prompt_tokens / floor_s, "tok/s")

        def generate(new: int, beams: int) -> Callable[[], Any]:
            # min_new_tokens keeps random weights from stopping early at EOS.
            return lambda: model.generate(input_ids=prompt, attention_mask=mask, max_new_tokens=new,
                                          min_new_tokens=new, num_beams=beams, do_sample=False, pad_token_id=2,
                                          eos_token_id=2)

        for beams, name in ((1, "batch1"), (args.beams, f"beams{args.beams}")):
            t_long = _timed(generate(args.new_tokens + 1, beams), args.device, args.repeats)
            t_short = _timed(generate(1, beams), args.device, args.repeats)
            bench(f"gpu70b_decode_ms_per_token_{name}", (t_long - t_short) / args.new_tokens * 1000, "ms")
    if floor_s:
        bench("gpu70b_decode_floor_ms_per_token", floor_s * 1000, "ms")
    if args.device.startswith("cuda"):
        bench("gpu70b_peak_memory_gib", torch.cuda.max_memory_allocated(torch.device(args.device)) / 2**30, "GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
