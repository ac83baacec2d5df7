"""sqlcoder-7b-2 on the CPU through llama.cpp, Q4_K_M, with random weights of the real shape (not in `make bench`).

The real weights cannot be downloaded here, and speed and memory do not
depend on the weights' values. Writing and quantizing all 32 layers (13.5 GB
of float16 first) is too much for a small machine, so this script builds the
real shape with fewer layers (two runs, e.g. 2 and 4), measures each, and
extrapolates linearly to 32 layers: per-layer cost from the difference, the
rest (embeddings, output head) from the intercept.

    PYTHONPATH=python .venv/bin/python bench/cpu_7b_shape.py --layers 2 4 --threads 1 2

Prints ``BENCH cpu_7b_q4km_<what> <value> <unit>`` lines and the measurements.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

#: CodeLlama-7B, the base of defog/sqlcoder-7b-2 (its config.json).
SHAPE = {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32,
         "num_key_value_heads": 32, "vocab_size": 32016, "max_position_embeddings": 16384, "rms_norm_eps": 1e-5,
         "rope_theta": 1_000_000.0}


def quantize(src: Path, dst: Path, threads: int) -> None:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M
    params.nthread = threads
    if llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), params) != 0:
        raise RuntimeError("quantization failed")


def rss() -> int:
    from sqlcoder_daemon.memory import proc_bytes

    return proc_bytes("/proc/self/status", "VmRSS") or 0


def measure(gguf: Path, threads: int, prompt_tokens: int, new_tokens: int) -> dict:
    """Load, prefill ``prompt_tokens``, then decode ``new_tokens`` one at a time; seconds and bytes."""
    import llama_cpp

    before = rss()
    llm = llama_cpp.Llama(model_path=str(gguf), n_ctx=prompt_tokens + new_tokens + 8, n_threads=threads,
                          n_threads_batch=threads, verbose=False, use_mmap=False)
    tokens = [1] + [300 + (i * 7919) % 30000 for i in range(prompt_tokens - 1)]
    t0 = time.perf_counter()
    llm.eval(tokens)
    prefill = time.perf_counter() - t0
    steps = []
    for i in range(new_tokens):
        t0 = time.perf_counter()
        llm.eval([500 + i])
        steps.append(time.perf_counter() - t0)
    out = {"model_bytes": int(llama_cpp.llama_model_size(llm.model)), "rss_bytes": rss() - before,
           "prefill_s": prefill, "decode_s": statistics.median(steps)}
    llm.close()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--layers", type=int, nargs=2, default=[2, 4], help="two layer counts to build and measure")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--prompt-tokens", type=int, default=512)
    p.add_argument("--new-tokens", type=int, default=16)
    p.add_argument("--dir", default=None, help="working directory (default: a temporary one)")
    args = p.parse_args(argv)
    from sqlcoder_dev.gguf_export import write_random_gguf

    full = SHAPE["num_hidden_layers"]
    with tempfile.TemporaryDirectory(prefix="cpu-7b-", dir=args.dir) as tmp:
        results: dict[int, dict[int, dict]] = {}
        for layers in args.layers:
            f16, q4 = Path(tmp) / f"l{layers}-f16.gguf", Path(tmp) / f"l{layers}-q4km.gguf"
            t0 = time.perf_counter()
            write_random_gguf(f16, dict(SHAPE, num_hidden_layers=layers))
            quantize(f16, q4, max(args.threads))
            f16.unlink()
            print(f"# {layers} layers: built and quantized in {time.perf_counter() - t0:.0f} s, "
                  f"{q4.stat().st_size / 2**20:.0f} MiB", flush=True)
            results[layers] = {}
            for threads in args.threads:
                m = measure(q4, threads, args.prompt_tokens, args.new_tokens)
                results[layers][threads] = m
                print(f"# {layers} layers, {threads} threads: {m}", flush=True)
            q4.unlink()
    lo, hi = args.layers

    def extrapolate(key: str, threads: int) -> float:
        a, b = results[lo][threads][key], results[hi][threads][key]
        return a + (b - a) / (hi - lo) * (full - lo)

    t = args.threads[0]
    print(f"BENCH cpu_7b_q4km_model_gib {extrapolate('model_bytes', t) / 2**30:.3f} GiB", flush=True)
    for threads in args.threads:
        decode = extrapolate("decode_s", threads)
        prefill = extrapolate("prefill_s", threads)
        print(f"BENCH cpu_7b_q4km_decode_tokens_per_s_{threads}t {1 / decode:.3f} tokens/s", flush=True)
        print(f"BENCH cpu_7b_q4km_prefill_tokens_per_s_{threads}t {args.prompt_tokens / prefill:.3f} tokens/s",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
