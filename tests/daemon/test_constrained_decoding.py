"""Grammar-constrained decoding in the transformers backend: every token a constrained answer holds is one its
grammar allowed, with greedy and beam search (4 beams), batched jobs with and without grammars, and the prefix
cache; the same answers with the cache as without."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sqlcoder import grammar
from sqlcoder.catalog import Column, Table
from sqlcoder_daemon.backends.transformers_backend import TransformersBackend
from sqlcoder_daemon.jobs import Job
from sqlcoder_daemon.protocol import GenerateRequest, Grammar
from sqlcoder_daemon.settings import load_settings

TABLES = [Table(1, "public", "orders", columns=[Column("id", "integer"), Column("total", "numeric"),
                                                 Column("ordered_at", "timestamp with time zone")]),
          Table(2, "public", "customers", columns=[Column("id", "integer"), Column("name", "text")])]
GRAMMAR = grammar.build(TABLES, grammar.function_names(["count", "sum", "avg", "date_trunc", "now"]))
SCHEMA = "".join(f"CREATE TABLE t{i} (id integer PRIMARY KEY, name text, total numeric(12,2));\n" for i in range(40))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sqlcoder_dev.tiny import build_random_llama

    return build_random_llama(tmp_path_factory.mktemp("llama-grammar"), hidden_size=64, seed=5)


def _backend(model_dir: Path, *extra: str) -> TransformersBackend:
    backend = TransformersBackend(load_settings(["--model", str(model_dir), "--quantize", "none",
                                                 "--device-map", "cpu", *extra]))
    backend.load()
    return backend


def _job(prompt: str, beams: int, constrained: bool = True, new: int = 16) -> Job:
    return Job(GenerateRequest(id="t", op="generate", prompt=prompt, max_new_tokens=new, num_beams=beams,
                               timeout_ms=600_000, grammar=Grammar(lark=GRAMMAR.lark) if constrained else None))


def _allowed_throughout(backend: TransformersBackend, text: str) -> bool:
    """Whether a fresh matcher of the grammar takes every token of ``text`` (the answer may stop mid-query)."""
    matcher = backend._grammars.matcher(GRAMMAR.lark)  # type: ignore[union-attr]
    ids = backend.tokenizer(text, add_special_tokens=False)["input_ids"]
    return matcher.consume_tokens(ids) and not matcher.is_error()


@pytest.mark.parametrize("beams", [1, 4])
def test_constrained_answers_take_only_tokens_the_grammar_allows(model_dir: Path, beams: int) -> None:
    torch.set_num_threads(1)
    backend = _backend(model_dir, "--prefix-cache-bytes", "0")
    free = backend.generate([_job(f"{SCHEMA}-- how many orders?\n", beams, constrained=False)])[0]
    result = backend.generate([_job(f"{SCHEMA}-- how many orders?\n", beams)])[0]
    assert result.constrained and not free.constrained
    assert result.completion_tokens > 0
    assert _allowed_throughout(backend, result.text), result.text
    assert not _allowed_throughout(backend, free.text), free.text  # random weights write no SQL on their own
    assert backend.grammar_support()["supported"] is True


@pytest.mark.parametrize("beams", [1, 4])
def test_batches_mix_grammars_and_the_prefix_cache_changes_nothing(model_dir: Path, beams: int) -> None:
    torch.set_num_threads(1)
    cached = _backend(model_dir, "--prefix-cache-min-tokens", "16")
    plain = _backend(model_dir, "--prefix-cache-bytes", "0")
    prompts = [f"{SCHEMA}-- {q}\n" for q in ("how many orders?", "total per customer", "names")]
    flags = [True, False, True]
    alone = [plain.generate([_job(p, beams, f)])[0] for p, f in zip(prompts, flags)]
    batched = cached.generate([_job(p, beams, f) for p, f in zip(prompts, flags)])
    again = cached.generate([_job(p, beams, f) for p, f in zip(prompts, flags)])
    for a, b, c, f in zip(alone, batched, again, flags):
        assert (a.text, a.constrained) == (b.text, b.constrained) == (c.text, c.constrained)
        assert a.constrained is f
        if f:
            assert _allowed_throughout(plain, a.text), a.text
    assert all(r.cached_tokens > 0 for r in again)


def test_llama_cpp_answers_under_its_native_gbnf_grammar(model_dir: Path) -> None:
    """The same tiny model as GGUF: llama.cpp's own grammar sampler keeps greedy decoding inside the GBNF form,
    which llguidance (reading the Lark form) confirms token by token."""
    pytest.importorskip("llama_cpp", reason="the llama-cpp extra is part of make setup")
    from sqlcoder_daemon.backends.llama_cpp_backend import LlamaCppBackend
    from sqlcoder_dev.gguf_export import ensure_gguf

    llama = LlamaCppBackend(load_settings(["--backend", "llama_cpp", "--model", str(ensure_gguf(model_dir)),
                                           "--prefix-cache-bytes", "0"]))
    llama.load()
    try:
        req = GenerateRequest(id="t", op="generate", prompt=f"{SCHEMA}-- how many orders?\n", max_new_tokens=24,
                              num_beams=1, timeout_ms=600_000, grammar=Grammar(gbnf=GRAMMAR.gbnf))
        result = llama.generate([Job(req)])[0]
        free = llama.generate([_job(f"{SCHEMA}-- how many orders?\n", 1, constrained=False, new=24)])[0]
    finally:
        llama.close()
    assert result.constrained and not free.constrained and result.completion_tokens > 0
    hf = _backend(model_dir, "--prefix-cache-bytes", "0")
    hf._matchers([_job("x", 1)])  # compiles the Lark form
    assert _allowed_throughout(hf, result.text), result.text
    assert not _allowed_throughout(hf, free.text), free.text
    assert llama.grammar_support() == {"supported": True, "format": "gbnf", "library": "llama.cpp",
                                       "beam_search": False}
