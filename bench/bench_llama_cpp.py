"""The CPU backend (llama.cpp) and the openai backend against a third-party server, each ratio measured side by side.

Prints ``BENCH <name> <value> <unit>`` lines:

- ``llama_cpp_prefix_cache_speedup``: latency without over with prefix reuse
  (llama.cpp's KV cache), for a ~2,000-token schema prompt and a 20-token
  answer, greedy; the schema was seen before, the question is new. The same
  model shape and prompts as ``prefix_cache_speedup`` in bench_daemon.py.
- ``llama_cpp_saved_state_speedup``: the same when another schema came in
  between, so the prefix comes back from a saved KV state (``--prefix-cache-bytes``).
- ``openai_backend_overhead_ms``: a generate through the daemon's socket and
  its openai backend to llama-cpp-python's OpenAI-compatible server on
  loopback, minus the same (streamed) completion asked of that server directly.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench_daemon import QUESTIONS, SCHEMA, bench, job, median_s
from sqlcoder_daemon.backends.llama_cpp_backend import LlamaCppBackend
from sqlcoder_daemon.backends.openai_remote import read_events
from sqlcoder_daemon.settings import load_settings
from sqlcoder_dev.daemonproc import Connection, DaemonProcess, socket_path
from sqlcoder_dev.gguf_export import ensure_gguf
from sqlcoder_dev.llama_server import LlamaServer
from sqlcoder_dev.tiny import build_random_llama


def backend(gguf: Path, *extra: str) -> LlamaCppBackend:
    b = LlamaCppBackend(load_settings(["--backend", "llama_cpp", "--model", str(gguf), "--cpu-threads", "1",
                                       "--prefix-cache-min-tokens", "16", *extra]))
    b.load()
    return b


def prefix_cache(gguf: Path) -> None:
    cached = backend(gguf)
    plain = backend(gguf, "--prefix-cache-bytes", "0")
    other = "".join(f"CREATE TABLE u{i} (id bigint, name text, price numeric);\n" for i in range(60))
    print(f"# schema prompt: {cached.count_tokens([SCHEMA + QUESTIONS[0]])[0]} tokens", flush=True)
    cached.generate([job(SCHEMA + QUESTIONS[0], 20, 1)])  # the schema is now in the KV cache (and saved)
    plain.generate([job(SCHEMA + QUESTIONS[0], 20, 1)])
    questions = iter(QUESTIONS[1:] * 4)
    t_cached = median_s(lambda: cached.generate([job(SCHEMA + next(questions), 20, 1)]), 5)
    t_plain = median_s(lambda: plain.generate([job(SCHEMA + next(questions), 20, 1)]), 5)

    def after_another_schema() -> float:
        cached.generate([job(other + QUESTIONS[0], 1, 1)])  # displaces the live KV cache
        t0 = time.perf_counter()
        cached.generate([job(SCHEMA + next(questions), 20, 1)])
        return time.perf_counter() - t0

    t_saved = statistics.median(after_another_schema() for _ in range(5))
    print(f"# greedy: uncached {t_plain * 1000:.0f} ms, live KV prefix {t_cached * 1000:.0f} ms, "
          f"restored saved state {t_saved * 1000:.0f} ms; {cached.stats()['prefix_cache']}", flush=True)
    bench("llama_cpp_prefix_cache_speedup", t_plain / t_cached, "x")
    bench("llama_cpp_saved_state_speedup", t_plain / t_saved, "x")
    cached.close()
    plain.close()


def openai_overhead(gguf: Path, n: int = 31) -> None:
    """Interleaved, so that load on the machine hits both paths alike."""
    server = LlamaServer(gguf)
    prompt = "SELECT count(*) FROM orders WHERE"
    # The request the daemon sends: streamed, so that both paths pay the server's event-stream costs alike.
    body = json.dumps({"prompt": prompt, "max_tokens": 8, "temperature": 0, "top_k": 1, "repeat_penalty": 1.0,
                       "n": 1, "stream": True, "stream_options": {"include_usage": True}}).encode()
    msg = {"v": 1, "id": "o", "op": "generate", "prompt": prompt, "max_new_tokens": 8, "num_beams": 1}
    try:
        with DaemonProcess(None, socket_path(), ["--backend", "openai", "--openai-url", server.url,
                                                 "--log-level", "WARNING"]) as daemon, \
                Connection(daemon.socket_path) as c:
            t_daemon, t_direct = [], []
            for i in range(n + 3):
                t0 = time.perf_counter()
                reply = c.ask(msg)
                t1 = time.perf_counter()
                req = urllib.request.Request(f"{server.url}/completions", data=body,
                                             headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(req) as r:
                    direct = "".join(e["choices"][0]["text"] for e in read_events(r) if e.get("choices"))
                t2 = time.perf_counter()
                assert reply["ok"] and reply["text"] == direct, (reply, direct)
                if i >= 3:
                    t_daemon.append(t1 - t0)
                    t_direct.append(t2 - t1)
    finally:
        server.close()
    d, s = statistics.median(t_daemon), statistics.median(t_direct)
    print(f"# through the daemon {d * 1000:.2f} ms, server directly {s * 1000:.2f} ms", flush=True)
    bench("openai_backend_overhead_ms", (d - s) * 1000, "ms")


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="bench-llama-cpp-") as tmp:
        # The shape of bench_daemon.py's prefix-cache model: prefill cost dwarfs the KV cache width.
        gguf = ensure_gguf(build_random_llama(Path(tmp) / "model", hidden_size=512, num_layers=2, seed=1))
        prefix_cache(gguf)
        openai_overhead(ensure_gguf(build_random_llama(Path(tmp) / "small", seed=2)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
