"""The grammar never refuses the SQL users ask for: every gold query of every question file, over its own
database's schema, as the extension builds the grammar inside PostgreSQL (the caller's catalog, the functions
the policy allows). The suite's own data (tests/eval/data, demo/) always; the shared sql-eval folder
(``--sql-eval-data``, ``$SQL_EVAL_DATA``, or ``../shared/sql-eval`` next to the checkout) too when it is there.

Both forms are checked: the Lark form with llguidance over a byte tokenizer, as the transformers backend reads
it; the GBNF form with llama.cpp's own grammar sampler over SmolLM2's vocabulary (tokens as a model writes
them), as the llama_cpp backend reads it. Exceptions, each with its reason, are listed in :data:`EXCEPTIONS`
(none today)."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import subprocess
from pathlib import Path

import pytest

import sqlcoder
from helpers.paths import ROOT
from sqlcoder_dev.pgcluster import Cluster

SMALL = ROOT / "tests" / "eval" / "data"
DEFAULT_DATA = ROOT.parent / "shared" / "sql-eval"
#: gold query variant -> why the grammar refuses it (an SQL form left out on purpose).
EXCEPTIONS: dict[str, str] = {}


def _data_dir(config: pytest.Config) -> Path | None:
    chosen = config.getoption("--sql-eval-data", default=None) or os.environ.get("SQL_EVAL_DATA")
    path = Path(chosen) if chosen else DEFAULT_DATA
    return path if (path / "databases").is_dir() else None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "question_file" in metafunc.fixturenames:
        roots = [SMALL] + [r for r in [_data_dir(metafunc.config)] if r is not None]
        metafunc.parametrize("question_file", [pytest.param(r, id=r.name) for r in roots])


class _Bytes:
    """A tokenizer of single bytes: the grammar is checked on the text, not on one model's tokens."""

    tokens = [bytes([i]) for i in range(256)] + [b"<eos>"]
    eos_token_id, bos_token_id, special_token_ids = 256, None, [256]

    def __call__(self, s: str | bytes) -> list[int]:
        return list(s if isinstance(s, bytes) else s.encode())


@pytest.fixture(scope="module")
def accepts():
    import llguidance

    tok = llguidance.LLTokenizer(llguidance.TokenizerWrapper(_Bytes()))

    def check(lark: str, sql: str) -> str | None:
        """None when ``sql`` (as a model writes it: a space before, ``;`` after) is accepted, else the error."""
        matcher = llguidance.LLMatcher(tok, llguidance.LLMatcher.grammar_from_lark(lark), log_level=0)
        if matcher.consume_tokens(list(f" {sql};\n".encode())) and matcher.is_accepting():
            return None
        return matcher.get_error().split("<state>")[0].strip() or "not a complete query"
    return check


@pytest.fixture(scope="module")
def gbnf_accepts(smollm2_gguf: Path):
    """``check(gbnf, sql)``: None when llama.cpp's grammar sampler takes every token of ``sql`` (as
    :func:`accepts` writes it) and then the end of text, else what it refused."""
    import llama_cpp as lc

    llm = lc.Llama(model_path=str(smollm2_gguf), vocab_only=True, verbose=False)
    vocab = lc.llama_model_get_vocab(llm.model)
    cell = (lc.llama_token_data * 1)()

    def allowed(sampler, token: int) -> bool:
        cell[0] = lc.llama_token_data(id=token, logit=0.0, p=0.0)
        array = lc.llama_token_data_array(data=cell, size=1, selected=-1, sorted=False)
        lc.llama_sampler_apply(sampler, lc.ctypes.byref(array))
        return cell[0].logit == 0.0

    def check(gbnf: str, sql: str) -> str | None:
        sampler = lc.llama_sampler_init_grammar(vocab, gbnf.encode(), b"root")
        assert sampler, "llama.cpp cannot parse the GBNF form"
        try:
            tokens = llm.tokenize(f" {sql};\n".encode(), add_bos=False, special=False)
            for i, token in enumerate(tokens):
                if not allowed(sampler, token):
                    return f"refused at {llm.detokenize(tokens[:i + 1]).decode(errors='replace')[-60:]!r}"
                lc.llama_sampler_accept(sampler, token)
            return None if allowed(sampler, llm.token_eos()) else "not a complete query"
        finally:
            lc.llama_sampler_free(sampler)

    yield check
    llm.close()


def _grammar_in_database(pg: Cluster, dbname: str) -> tuple[str, str]:
    """The call's grammar (Lark, GBNF) as the extension builds it, inside PostgreSQL, for the whole schema on
    the path."""
    share = subprocess.run(["pg_config", "--sharedir"], capture_output=True, text=True, check=True).stdout.strip()
    with pg.connect(dbname) as conn:
        conn.execute(f"""
            CREATE FUNCTION pg_temp.call_grammar() RETURNS text[] LANGUAGE plpython3u AS $$
            import sys
            sys.path.insert(0, "{share}/extension/sqlcoder_python/{sqlcoder.__version__}")
            from sqlcoder import config, grammar, schema_cache
            path = plpy.execute("SELECT current_schemas(true)::text[] AS p")[0]["p"]
            settings = config.load(plpy)
            cached = schema_cache.get(plpy, path, None, settings.max_comment_chars)
            made = grammar.for_prompt(plpy, cached, range(len(cached.schema.tables)), path,
                                      settings.allowed_functions, settings.denied_functions)
            return [made.lark, made.gbnf]
            $$""")
        lark, gbnf = conn.execute("SELECT pg_temp.call_grammar()").fetchone()[0]
        return lark, gbnf


def _questions(root: Path) -> list[dict[str, str]]:
    with open(root / "questions_gen_postgres.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_every_gold_query_is_accepted(pg: Cluster, question_file: Path, accepts, gbnf_accepts) -> None:
    from sqlcoder_eval.dataset import Dataset
    from sqlcoder_eval.goldsql import expand_gold
    from sqlcoder_eval.load import load_database

    questions = _questions(question_file)
    refused: list[str] = []
    checked = 0
    for name in sorted({q["db_name"] for q in questions}):
        db = dataclasses.replace(Dataset(question_file).database(name), name=f"grammar_{name}")
        load_database(pg.conninfo(), db, replace=True)
        try:
            lark, gbnf = _grammar_in_database(pg, db.name)
        finally:
            pg.psql(f'DROP DATABASE "{db.name}" WITH (FORCE)')
        for q in (q for q in questions if q["db_name"] == name):
            for variant in expand_gold(q["query"]):
                checked += 1
                for form, error in (("lark", accepts(lark, variant)), ("gbnf", gbnf_accepts(gbnf, variant))):
                    if error is not None and variant not in EXCEPTIONS:
                        refused.append(f"{name} ({form}): {variant}\n    {error[:200]}")
    print(f"grammar acceptance: {question_file}: {checked} gold variants, {len(refused)} refused")
    assert checked and not refused, "\n".join(refused)


def test_the_demo_questions_are_accepted(pg: Cluster, accepts, gbnf_accepts) -> None:
    """demo/questions.json over the sample shop schema (the database template the suite's calls use)."""
    from plugins.postgres import SHOP_TEMPLATE

    items = json.loads((ROOT / "demo" / "questions.json").read_text())
    lark, gbnf = _grammar_in_database(pg, SHOP_TEMPLATE)
    refused = [f"{i['sql']}: {e}" for i in items for check, form in ((accepts, lark), (gbnf_accepts, gbnf))
               if (e := check(form, i["sql"].rstrip(";"))) is not None]
    assert len(items) >= 4 and not refused, "\n".join(refused)
