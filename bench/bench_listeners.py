"""Slow clients against the daemon's listeners and the page: what a flood costs everyone else.

Prints ``BENCH <name> <value> <unit>`` lines, each flood figure beside its quiet baseline from the same run:

- ``socket_generate_ms_quiet`` / ``_openai_drip_flood``: median of 20 ``generate`` requests (2 tokens,
  greedy, a random tiny model on the CPU) over the Unix socket, alone and while 520 connections drip a
  completion request into the OpenAI-compatible listener (one byte per 2 s each, closed ones replaced).
- ``metrics_ms_openai_drip_flood``: median ``GET /metrics`` during the same flood.
- ``openai_flood_refused``: flood connections the OpenAI listener answered 503 at once (its cap is 64).
- ``login_guesses_per_s_200_concurrent``: wrong passwords checked per second when 200 are sent at once for
  one role from one address (each check is a real scram login; the rest are refused with 429), with
  ``login_guesses_checked_200_concurrent`` and ``login_200_concurrent_s``, the time for all 200 answers.
- ``page_load_ms_quiet`` / ``_body_drip_flood_2500``: median of 10 loads of the login page, alone, and of
  20 while 2,500 connections each hold a login POST with one body byte (replaced when closed);
  ``page_load_failures_body_drip_flood_2500``: of those 20, how many got no page.
"""

from __future__ import annotations

import asyncio
import http.client
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from sqlcoder_dev.daemonproc import DaemonProcess, request, socket_path
from sqlcoder_dev.drip import DripFlood, http_request_bytes, tcp_connector
from sqlcoder_dev.pgcluster import Cluster
from sqlcoder_dev.tiny import build_random_llama
from sqlcoder_dev.web_demo import require_password

KEY = "bench-listeners"
ROLE, PASSWORD, DB = "bench_listeners_role", "bench-pass", "bench_listeners"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def _generate_ms(d: DaemonProcess, n: int = 20) -> float:
    samples = []
    for i in range(n):
        started = time.perf_counter()
        reply = request(d.socket_path, {"v": 1, "id": f"b{i}", "op": "generate", "prompt": "SELECT count(*) FROM",
                                        "max_new_tokens": 2, "num_beams": 1}, timeout=60)
        samples.append(time.perf_counter() - started)
        assert reply["ok"], reply
    return _ms(samples)


def _metrics_ms(port: int, n: int = 20) -> float:
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/metrics")
        assert conn.getresponse().status == 200
        conn.close()
        samples.append(time.perf_counter() - started)
    return _ms(samples)


def bench_daemon() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        model = build_random_llama(Path(tmp) / "random")
        openai_port, metrics_port = _port(), _port()
        with DaemonProcess(model, socket_path(), ["--quantize", "none", "--device-map", "cpu",
                                                  "--openai-listen", f"127.0.0.1:{openai_port}",
                                                  "--openai-listen-api-key", KEY,
                                                  "--metrics-listen", f"127.0.0.1:{metrics_port}"]) as d:
            _generate_ms(d, 3)  # warm
            quiet = _generate_ms(d)
            body = b'{"prompt": "SELECT 1"'
            req = http_request_bytes("POST", "/v1/completions", {"Authorization": f"Bearer {KEY}",
                                                                  "Content-Length": "40"}, body)
            with DripFlood(tcp_connector("127.0.0.1", openai_port), req, count=520, interval_s=2.0, rounds=30):
                time.sleep(3)
                flooded = _generate_ms(d)
                metrics = _metrics_ms(metrics_port)
            refused = d.request({"v": 1, "id": "s", "op": "status"})["status"]["connections"]["openai"]["refused"]
    print(f"BENCH socket_generate_ms_quiet {quiet:.1f} ms", flush=True)
    print(f"BENCH socket_generate_ms_openai_drip_flood {flooded:.1f} ms", flush=True)
    print(f"BENCH metrics_ms_openai_drip_flood {metrics:.1f} ms", flush=True)
    print(f"BENCH openai_flood_refused {refused} connections", flush=True)


async def _guesses(base: str, n: int) -> tuple[int, float]:
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=httpx.Limits(max_connections=n + 10)) as client:
        token = re.search(r'name="csrf" value="([^"]+)"', (await client.get("/login")).text).group(1)
        started = time.perf_counter()
        replies = await asyncio.gather(*(client.post("/login", data={"csrf": token, "role": ROLE,
                                                                     "password": "wrong"}) for _ in range(n)))
        took = time.perf_counter() - started
    return sum(1 for r in replies if r.status_code == 401), took


def _page_ms(port: int, n: int = 10) -> tuple[float, int]:
    """Median time of the loads that worked, and how many did not (a status other than 200, or no answer)."""
    samples, failed = [], 0
    for _ in range(n):
        started = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)  # a new connection each time
        try:
            conn.request("GET", "/login")
            reply = conn.getresponse()
            ok = reply.status == 200 and b'name="csrf"' in reply.read()
        except OSError:
            ok = False
        finally:
            conn.close()
        if ok:
            samples.append(time.perf_counter() - started)
        else:
            failed += 1
        time.sleep(0.2)
    return (_ms(samples) if samples else float("nan")), failed


def bench_web() -> None:
    with Cluster() as pg:
        pg.createdb(DB)
        pg.psql("CREATE EXTENSION sqlcoder CASCADE", dbname=DB)
        pg.psql(f"CREATE ROLE {ROLE} LOGIN")
        require_password(pg, ROLE, PASSWORD)
        port = _port()
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "python"))
        proc = subprocess.Popen([sys.executable, "-m", "sqlcoder_web", "--port", str(port), "--conninfo",
                                 f"host={pg.sockdir} port={pg.port} dbname={DB}"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(100):
                try:
                    httpx.get(base + "/login", timeout=2)
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            checked, took = asyncio.run(_guesses(base, 200))
            _page_ms(port, 3)
            quiet, _ = _page_ms(port)
            head = http_request_bytes("POST", "/login", {"Content-Type": "application/x-www-form-urlencoded",
                                                         "Content-Length": "1000"})
            with DripFlood(tcp_connector("127.0.0.1", port), b"", count=2500, interval_s=1.0, rounds=60,
                           prefix=head + b"r"):
                time.sleep(3)
                flooded, failed = _page_ms(port, 20)
        finally:
            proc.terminate()
            proc.wait(30)
    print(f"BENCH login_guesses_per_s_200_concurrent {checked / took:.2f} guesses/s", flush=True)
    print(f"BENCH login_guesses_checked_200_concurrent {checked} guesses", flush=True)
    print(f"BENCH login_200_concurrent_s {took:.1f} s", flush=True)
    print(f"BENCH page_load_ms_quiet {quiet:.1f} ms", flush=True)
    print(f"BENCH page_load_ms_body_drip_flood_2500 {flooded:.1f} ms", flush=True)
    print(f"BENCH page_load_failures_body_drip_flood_2500 {failed} of 20", flush=True)


if __name__ == "__main__":
    bench_daemon()
    bench_web()
