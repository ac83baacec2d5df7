"""sqlcoder-7b-2 on the CPU through llama.cpp, Q4_K_M, with random weights of the real shape (not in `make bench`).

The real weights cannot be downloaded here, and speed and memory do not
depend on the weights' values. Writing and quantizing all 32 layers (13.5 GB
of float16 first) is too much for a small machine, so this script builds the
real shape with fewer layers, quantizes it with llama.cpp's own Q4_K_M
recipe, measures it, and scales to 32 layers: the model's bytes from the
measured per-layer sizes (Q4_K_M gives some layers' attn_v and ffn_down
Q6_K; the 32-layer mix is computed with llama.cpp's rule), decoding by bytes
read per token (it streams every weight once), prefill by layers (compute).
Rounds alternate the thread counts and the fastest round counts (others on
a shared machine only slow it down).

    PYTHONPATH=python .venv/bin/python bench/cpu_7b_shape.py --layers 4 --threads 1 2

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


def _more_bits(i: int, n: int) -> bool:
    """llama.cpp's use_more_bits: Q4_K_M stores these layers' attn_v and ffn_down as Q6_K."""
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def full_model_bytes(measured: int, layers: int) -> float:
    """The 32-layer size from a ``layers``-layer file: its layers' bytes re-weighted to the 32-layer Q6_K mix."""
    h, ff = SHAPE["hidden_size"], SHAPE["intermediate_size"]
    plain = (3 * h * h + 2 * ff * h) * 4.5 / 8  # Q4_K: 144 bytes per 256 weights
    v_down = (h * h + ff * h)
    q4, q6 = v_down * 4.5 / 8, v_down * 6.5625 / 8  # Q6_K: 210 bytes per 256 weights
    rest = measured - sum(plain + (q6 if _more_bits(i, layers) else q4) for i in range(layers))
    full = SHAPE["num_hidden_layers"]
    return rest + sum(plain + (q6 if _more_bits(i, full) else q4) for i in range(full))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--layers", type=int, default=4, help="layers to build and measure (the real model has 32)")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--prompt-tokens", type=int, default=512)
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--dir", default=None, help="working directory (default: a temporary one)")
    args = p.parse_args(argv)
    from sqlcoder_dev.gguf_export import write_random_gguf

    with tempfile.TemporaryDirectory(prefix="cpu-7b-", dir=args.dir) as tmp:
        f16, q4 = Path(tmp) / "f16.gguf", Path(tmp) / "q4km.gguf"
        t0 = time.perf_counter()
        write_random_gguf(f16, dict(SHAPE, num_hidden_layers=args.layers))
        quantize(f16, q4, max(args.threads))
        f16.unlink()
        print(f"# {args.layers} layers: built and quantized in {time.perf_counter() - t0:.0f} s", flush=True)
        best: dict[int, dict] = {}
        for _ in range(args.rounds):
            for threads in args.threads:
                m = measure(q4, threads, args.prompt_tokens, args.new_tokens)
                print(f"# {threads} threads: {m}", flush=True)
                if threads not in best or m["decode_s"] < best[threads]["decode_s"]:
                    best[threads] = dict(m, prefill_s=min(m["prefill_s"], best.get(threads, m)["prefill_s"]))
                else:
                    best[threads]["prefill_s"] = min(m["prefill_s"], best[threads]["prefill_s"])
    measured = best[args.threads[0]]["model_bytes"]
    full = full_model_bytes(measured, args.layers)
    print(f"BENCH cpu_7b_q4km_model_gib {full / 2**30:.3f} GiB", flush=True)
    for threads, m in best.items():
        decode = m["decode_s"] * full / measured
        prefill = m["prefill_s"] * SHAPE["num_hidden_layers"] / args.layers
        print(f"BENCH cpu_7b_q4km_decode_tokens_per_s_{threads}t {1 / decode:.3f} tokens/s", flush=True)
        print(f"BENCH cpu_7b_q4km_prefill_tokens_per_s_{threads}t {args.prompt_tokens / prefill:.3f} tokens/s",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
