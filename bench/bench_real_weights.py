"""Real pretrained weights (SmolLM2-135M-Instruct, python/sqlcoder_dev/smollm2.py) on each local backend.

Prints ``BENCH <name> <value> <unit>`` lines, every figure on this machine's CPU
with 2 threads, greedy, the repetition guard off (so that decoding runs to the
asked length):

- ``real_<backend>_prefill_tokens_per_s``: prompt tokens over the time of a
  1-token generate of the ~2,000-token schema prompt, prefix cache off;
  backends ``llama_cpp`` (the Q4_1 GGUF), ``transformers_fp32`` and
  ``transformers_nf4`` (the converted directory; nf4 through bitsandbytes on the CPU).
- ``real_<backend>_decode_tokens_per_s``: 31 extra tokens over the extra time of a
  32-token generate of a short prompt compared with a 1-token one.
- ``daemon_overhead_real_ratio``: the daemon's socket round trip for the schema
  prompt and 16 new tokens (llama.cpp) over calling the same backend, with the
  same threads and settings, directly; interleaved, medians. Goal: at most 1.05.
- ``real_<backend>_prefix_cache_speedup``: latency of the schema prompt with a new
  question and 16 new tokens, prefix cache off over on (the schema seen before).
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any

from bench_daemon import QUESTIONS, SCHEMA, bench, job, median_s
from sqlcoder_daemon.backends import create_backend
from sqlcoder_daemon.settings import load_settings
from sqlcoder_dev import smollm2
from sqlcoder_dev.daemonproc import Connection, DaemonProcess, socket_path

THREADS = "2"
SHORT = "-- PostgreSQL\nSELECT id, name FROM customers WHERE"


def make(kind: str, *extra: str) -> Any:
    if kind == "llama_cpp":
        args = ["--backend", "llama_cpp", "--model", str(smollm2.ensure_gguf())]
    else:
        args = ["--model", str(smollm2.ensure_transformers_dir()), "--device-map", "cpu", "--check-memory", "false",
                "--quantize", "nf4" if kind == "transformers_nf4" else "none"]
    b = create_backend(load_settings([*args, "--cpu-threads", THREADS, "--repetition-guard-tokens", "0", *extra]))
    b.load()
    return b


def speeds(kind: str) -> None:
    import torch

    torch.set_num_threads(int(THREADS))
    plain = make(kind, "--prefix-cache-bytes", "0")
    prompt = SCHEMA + QUESTIONS[0]
    n = plain.count_tokens([prompt])[0]
    plain.generate([job(prompt, 1, 1)])  # warm-up
    t_prefill = median_s(lambda: plain.generate([job(prompt, 1, 1)]), 3)
    t1 = median_s(lambda: plain.generate([job(SHORT, 1, 1)]), 3)
    t32 = median_s(lambda: plain.generate([job(SHORT, 32, 1)]), 3)
    print(f"# {kind}: {n}-token prompt prefilled in {t_prefill:.2f} s; short prompt 1 token {t1:.3f} s, "
          f"32 tokens {t32:.3f} s", flush=True)
    bench(f"real_{kind}_prefill_tokens_per_s", n / t_prefill, "tokens/s")
    bench(f"real_{kind}_decode_tokens_per_s", 31 / max(t32 - t1, 1e-9), "tokens/s")
    cached = make(kind)
    cached.generate([job(prompt, 16, 1)])  # the schema is now cached
    questions = iter(QUESTIONS[1:] * 3)
    t_cached = median_s(lambda: cached.generate([job(SCHEMA + next(questions), 16, 1)]), 3)
    t_plain = median_s(lambda: plain.generate([job(SCHEMA + next(questions), 16, 1)]), 3)
    print(f"# {kind}: 16 new tokens after the schema: uncached {t_plain:.2f} s, cached {t_cached:.2f} s", flush=True)
    bench(f"real_{kind}_prefix_cache_speedup", t_plain / t_cached, "x")
    for b in (plain, cached):
        b.close()


def daemon_overhead(n: int = 5) -> None:
    """The same prompt, threads and settings through the daemon's socket and through the backend itself."""
    gguf = smollm2.ensure_gguf()
    settings = ["--cpu-threads", THREADS, "--repetition-guard-tokens", "0", "--prefix-cache-bytes", "0"]
    direct = make("llama_cpp", "--prefix-cache-bytes", "0")
    prompt = SCHEMA + QUESTIONS[0]
    msg = {"v": 1, "id": "r", "op": "generate", "prompt": prompt, "max_new_tokens": 16, "num_beams": 1}
    via, own = [], []
    with DaemonProcess(gguf, socket_path(), ["--backend", "llama_cpp", "--log-level", "WARNING", *settings],
                       env=None) as daemon, Connection(daemon.socket_path) as c:
        c.send(msg)
        c.recv()  # warm-up
        direct.generate([job(prompt, 16, 1)])
        for _ in range(n):  # interleaved, so that load on the machine hits both alike
            t0 = time.perf_counter()
            c.send(msg)
            reply = c.recv()
            via.append(time.perf_counter() - t0)
            assert reply.get("ok"), reply
            t0 = time.perf_counter()
            direct.generate([job(prompt, 16, 1)])
            own.append(time.perf_counter() - t0)
    direct.close()
    print(f"# daemon {statistics.median(via):.3f} s, direct {statistics.median(own):.3f} s", flush=True)
    bench("daemon_overhead_real_ratio", statistics.median(via) / statistics.median(own), "x")


def main(argv: list[str]) -> int:
    kinds = argv or ["llama_cpp", "transformers_fp32", "transformers_nf4"]
    for kind in kinds:
        speeds(kind)
    if "llama_cpp" in kinds:
        daemon_overhead()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
