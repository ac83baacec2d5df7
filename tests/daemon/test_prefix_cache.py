"""The prefix KV cache: LRU bounded in bytes, and generation identical with and without it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sqlcoder_daemon.backends.transformers_backend import TransformersBackend
from sqlcoder_daemon.jobs import Job
from sqlcoder_daemon.prefix_cache import PrefixCache
from sqlcoder_daemon.protocol import GenerateRequest
from sqlcoder_daemon.settings import load_settings


def layers(n_tokens: int, n_layers: int = 2) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Fake per-layer (keys, values): 1 x 1 head x n_tokens x 4 floats = 16 bytes per token per tensor."""
    return [(torch.zeros(1, 1, n_tokens, 4), torch.zeros(1, 1, n_tokens, 4)) for _ in range(n_layers)]


def test_lookup_finds_the_longest_common_prefix() -> None:
    pc = PrefixCache(max_bytes=1 << 20, min_tokens=4)
    pc.store(torch.arange(10), layers(10))
    pc.store(torch.tensor([0, 1, 2, 3, 4, 5, 99, 98]), layers(8))
    n, entry = pc.lookup(torch.tensor([0, 1, 2, 3, 4, 5, 99, 7, 7]), limit=8)
    assert n == 7 and entry.tokens.tolist()[:7] == [0, 1, 2, 3, 4, 5, 99]
    n, _ = pc.lookup(torch.arange(20), limit=19)
    assert n == 10
    n, _ = pc.lookup(torch.arange(20), limit=6)  # never more than the caller can use
    assert n == 6
    assert pc.lookup(torch.tensor([5, 5, 5, 5, 5]), limit=5) == (0, None)  # shares nothing
    assert pc.lookup(torch.tensor([0, 1, 2, 9]), limit=4) == (0, None)  # shares 3 < min_tokens
    st = pc.stats()
    assert (st["hits"], st["misses"], st["tokens_reused"]) == (3, 2, 23) and st["hit_rate"] == 0.6


def test_lru_is_bounded_in_bytes() -> None:
    per_entry = 2 * 2 * 10 * 16  # layers x (k, v) x tokens x bytes per token
    pc = PrefixCache(max_bytes=2 * per_entry, min_tokens=2)
    a, b, c = (torch.arange(10) + 100 * i for i in range(3))
    pc.store(a, layers(10))
    pc.store(b, layers(10))
    pc.lookup(a, 10)  # a is now the most recently used
    pc.store(c, layers(10))
    assert pc.bytes == 2 * per_entry and pc.stats()["evictions"] == 1
    assert pc.lookup(b, 10) == (0, None)  # b was evicted, a and c stay
    assert pc.lookup(a, 10)[0] == 10 and pc.lookup(c, 10)[0] == 10
    pc.store(torch.arange(5000), layers(5000))  # larger than the whole budget: not stored
    assert pc.stats()["entries"] == 2


def test_a_longer_prompt_replaces_its_own_prefix() -> None:
    pc = PrefixCache(max_bytes=1 << 20, min_tokens=2)
    pc.store(torch.arange(10), layers(10))
    pc.store(torch.arange(15), layers(15))
    assert pc.stats()["entries"] == 1 and pc.bytes == 2 * 2 * 15 * 16


@pytest.fixture(scope="module")
def long_prompt_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sqlcoder_dev.tiny import build_random_llama

    return build_random_llama(tmp_path_factory.mktemp("llama-pc"), hidden_size=64, seed=3)


SCHEMA = "".join(f"CREATE TABLE t{i} (id integer PRIMARY KEY, name text, total numeric(12,2));\n" for i in range(80))
QUESTIONS = ["How many orders were placed last month?", "Which customers spent the most?",
             "How many orders were placed last month?"]


def _run(backend: TransformersBackend, prompt: str, beams: int):
    req = GenerateRequest(id="t", op="generate", prompt=prompt, max_new_tokens=12, num_beams=beams,
                          timeout_ms=600_000)
    return backend.generate([Job(req)])[0]


@pytest.mark.slow
@pytest.mark.parametrize("quantize, beams", [("none", 1), ("none", 4), ("nf4", 1), ("nf4", 4)])
def test_output_identical_with_and_without_cache(long_prompt_model: Path, quantize: str, beams: int) -> None:
    torch.set_num_threads(1)
    args = ["--model", str(long_prompt_model), "--quantize", quantize, "--device-map", "cpu"]
    cached = TransformersBackend(load_settings(args + ["--prefix-cache-min-tokens", "16"]))
    plain = TransformersBackend(load_settings(args + ["--prefix-cache-bytes", "0"]))
    cached.load()
    plain.load()
    prompts = [f"{SCHEMA}-- {q}\nSELECT" for q in QUESTIONS]
    assert cached.count_tokens([SCHEMA])[0] > 1500
    reused = []
    for prompt in prompts:
        a, b = _run(cached, prompt, beams), _run(plain, prompt, beams)
        assert (a.text, a.finish_reason, a.completion_tokens) == (b.text, b.finish_reason, b.completion_tokens)
        assert a.completion_tokens > 0
        reused.append(a.cached_tokens)
        assert b.cached_tokens == 0
    n_schema = cached.count_tokens([SCHEMA])[0]
    # First prompt: a miss. Second: the schema (and the template) is reused. Third: repeats the first prompt.
    assert reused[0] == 0 and n_schema <= reused[1] < reused[2] == cached.count_tokens([prompts[2]])[0]
    assert cached.stats()["prefix_cache"]["hits"] == 2


@pytest.mark.slow
@pytest.mark.parametrize("beams", [1, 4])
def test_a_batch_shares_the_cached_schema(long_prompt_model: Path, beams: int) -> None:
    """Prompts of different lengths batched over one cached prefix answer as they do alone and uncached."""
    torch.set_num_threads(1)
    args = ["--model", str(long_prompt_model), "--quantize", "none", "--device-map", "cpu"]
    cached = TransformersBackend(load_settings(args + ["--prefix-cache-min-tokens", "16"]))
    plain = TransformersBackend(load_settings(args + ["--prefix-cache-bytes", "0"]))
    cached.load()
    plain.load()
    questions = ["How many?", "Which customers spent the most money last year?", "List t7 rows by total"]

    def jobs(qs: list[str]) -> list[Job]:
        return [Job(GenerateRequest(id=str(i), op="generate", prompt=f"{SCHEMA}-- {q}\nSELECT", max_new_tokens=12,
                                    num_beams=beams, timeout_ms=600_000)) for i, q in enumerate(qs)]

    alone = [plain.generate([j])[0] for j in jobs(questions)]
    first = cached.generate(jobs(questions))  # computes and stores the shared prefix once
    again = cached.generate(jobs(questions[::-1]))  # reuses it
    for a, b in zip(alone, first):
        assert (a.text, a.finish_reason, a.completion_tokens) == (b.text, b.finish_reason, b.completion_tokens)
    for a, b in zip(alone[::-1], again):
        assert (a.text, a.completion_tokens) == (b.text, b.completion_tokens)
    assert all(r.cached_tokens == 0 for r in first)
    assert all(r.cached_tokens >= cached.count_tokens([SCHEMA])[0] for r in again)
