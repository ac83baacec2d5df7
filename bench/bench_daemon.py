"""The model daemon's costs and gains on a tiny CPU model, each ratio measured side by side in this one run.

Prints ``BENCH <name> <value> <unit>`` lines:

- ``daemon_overhead_ms``: a generate over the Unix socket (JSON, queue,
  scheduler, reply) minus the same generate called in-process.
- ``prefix_cache_speedup`` (and ``_greedy``): latency without over with the
  prefix KV cache, for a ~2,000-token schema prompt and a 20-token answer,
  4 beams (the daemon's default) and greedy; the schema was seen before, the question is new.
- ``batching_throughput_gain_8``: requests per second with 8 concurrent
  clients over the same requests sent one at a time.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

from sqlcoder_daemon.backends.transformers_backend import TransformersBackend
from sqlcoder_daemon.jobs import Job
from sqlcoder_daemon.protocol import GenerateRequest
from sqlcoder_daemon.settings import load_settings
from sqlcoder_dev.daemonproc import Connection, DaemonProcess, socket_path
from sqlcoder_dev.tiny import build_random_llama

SCHEMA = "".join(
    f"CREATE TABLE t{i} (id integer PRIMARY KEY, customer_id integer REFERENCES customers(id), "
    f"total numeric(12,2), status text, ordered_on date);\n" for i in range(45))
QUESTIONS = [f"-- Question {i}: how many orders had status {s} in month {i}?\nSELECT"
             for i, s in enumerate(["open", "paid", "shipped", "lost", "new", "late", "held", "void"])]


def bench(name: str, value: float, unit: str) -> None:
    print(f"BENCH {name} {value:.3f} {unit}", flush=True)


def job(prompt: str, new: int, beams: int) -> Job:
    return Job(GenerateRequest(id="b", op="generate", prompt=prompt, max_new_tokens=new, num_beams=beams,
                               timeout_ms=3_600_000))


def backend(model: Path, *extra: str) -> TransformersBackend:
    b = TransformersBackend(load_settings(["--model", str(model), "--quantize", "none", "--device-map", "cpu",
                                           *extra]))
    b.load()
    return b


def median_s(fn, n: int) -> float:
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def overhead(model: Path, daemon: DaemonProcess, n: int = 31) -> None:
    """Socket round trip vs in-process generate, interleaved so that load on the machine hits both alike."""
    prompt = "SELECT count(*) FROM orders WHERE"
    inproc = backend(model, "--prefix-cache-bytes", "0")
    msg = {"v": 1, "id": "o", "op": "generate", "prompt": prompt, "max_new_tokens": 8, "num_beams": 1}
    t_sock, t_in, t_served = [], [], []
    with Connection(daemon.socket_path) as c:
        for i in range(n + 3):
            t0 = time.perf_counter()
            reply = c.ask(msg)
            t1 = time.perf_counter()
            inproc.generate([job(prompt, 8, 1)])
            t2 = time.perf_counter()
            if i >= 3:  # the first calls warm both paths
                t_sock.append(t1 - t0)
                t_in.append(t2 - t1)
                t_served.append(t1 - t0 - reply["timings"]["generate_ms"] / 1000)
    print(f"# socket {statistics.median(t_sock) * 1000:.2f} ms, in-process {statistics.median(t_in) * 1000:.2f} ms; "
          f"round trip minus the daemon's own generate_ms: {statistics.median(t_served) * 1000:.2f} ms", flush=True)
    bench("daemon_overhead_ms", (statistics.median(t_sock) - statistics.median(t_in)) * 1000, "ms")


def _asker(b: TransformersBackend, beams: int):
    """A call asking a new question about the same schema each time."""
    questions = iter(QUESTIONS[1:] * 2)
    return lambda: b.generate([job(SCHEMA + next(questions), 20, beams)])


def prefix_cache(model: Path) -> None:
    cached = backend(model, "--prefix-cache-min-tokens", "16")
    plain = backend(model, "--prefix-cache-bytes", "0")
    print(f"# schema prompt: {cached.count_tokens([SCHEMA + QUESTIONS[0]])[0]} tokens", flush=True)
    for beams, name in ((4, "prefix_cache_speedup"), (1, "prefix_cache_speedup_greedy")):
        cached.prefix_cache.clear()
        cached.generate([job(SCHEMA + QUESTIONS[0], 20, beams)])  # the schema is now cached
        plain.generate([job(SCHEMA + QUESTIONS[0], 20, beams)])
        t_cached = median_s(_asker(cached, beams), 5)
        t_plain = median_s(_asker(plain, beams), 5)
        print(f"# beams={beams}: uncached {t_plain * 1000:.0f} ms, cached {t_cached * 1000:.0f} ms", flush=True)
        bench(name, t_plain / t_cached, "x")


def batching(daemon: DaemonProcess, clients: int = 8, per_client: int = 6) -> None:
    prompts = [f"SELECT name FROM customers WHERE id = {i}" for i in range(clients * per_client)]

    def ask(c: Connection, p: str) -> None:
        r = c.ask({"v": 1, "id": "b", "op": "generate", "prompt": p, "max_new_tokens": 20, "num_beams": 4})
        assert r and r["ok"], r

    with Connection(daemon.socket_path) as c:
        ask(c, "warm up")
        t0 = time.perf_counter()
        for p in prompts:
            ask(c, p)
        serial = len(prompts) / (time.perf_counter() - t0)

    def client(k: int) -> None:
        with Connection(daemon.socket_path) as c:
            for p in prompts[k::clients]:
                ask(c, p)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    concurrent = len(prompts) / (time.perf_counter() - t0)
    print(f"# serial {serial:.2f} req/s, {clients} clients {concurrent:.2f} req/s", flush=True)
    bench(f"batching_throughput_gain_{clients}", concurrent / serial, "x")


def main() -> int:
    torch.set_num_threads(1)  # as the daemon subprocess (DaemonProcess sets OMP_NUM_THREADS=1)
    with tempfile.TemporaryDirectory(prefix="bench-daemon-") as tmp:
        # Wide and shallow: like the 70B model, prefill cost (hidden^2) dwarfs the KV cache width.
        model = build_random_llama(Path(tmp) / "model", hidden_size=512, num_layers=2, seed=1)
        with DaemonProcess(model, socket_path(), ["--quantize", "none", "--device-map", "cpu",
                                                   "--log-level", "WARNING"]) as daemon:
            overhead(model, daemon)
            batching(daemon)
        prefix_cache(model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
