"""``sqlcoder-eval check``: gold and perturbation checks on a throwaway cluster, as ``EVAL`` lines.

Every answer is scored by both judges (``EVAL <judge>/<run> <category> <percent>``).
Gold answers must score 100% under both, and every perturbed answer 0% under the
``strict`` judge: together they show that loading, execution and comparison work
on the data before any model is judged with them. Under the ``sql-eval`` judge a
perturbation can score correct (``LIMIT 1`` to ``LIMIT 0`` matches by broadcasting):
those are listed, not failed. Questions with no result-changing perturbation are
listed apart and not counted.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any, TextIO

from .dataset import Dataset
from .load import load_database
from .predictors import GoldPredictor, PerturbedPredictor
from .report import Summary, categories_of, summarize
from .runner import RunOptions, run

__all__ = ["eval_lines", "run_checks"]


JUDGE_ORDER = ("strict", "sql-eval")


def eval_lines(*summaries: Summary) -> list[str]:
    """``EVAL <run> <category> <percent>`` for each run, the overall lines last."""
    lines = []
    for s in summaries:
        lines += [f"EVAL {s.run} {c} {s.percent(c):.1f}" for c in categories_of([s])]
    lines += [f"EVAL {s.run} overall {(s.percent() or 0.0):.1f}" for s in summaries]
    return lines


def as_judged_by(records: list[dict[str, Any]], judge: str) -> list[dict[str, Any]]:
    """The records with ``judge``'s verdict in place, under the run name ``judge/run``."""
    out = []
    for r in records:
        v = r.get("verdicts", {}).get(judge)
        r = dict(r, run=f"{judge}/{r['run']}", judge=judge)
        if v is not None:
            r.update(exact=v["exact"], correct=v["correct"], error=v["error"])
        out.append(r)
    return out


def run_checks(data: Path, out_dir: Path | None = None, parallel: int = 2, timeout_s: float = 10.0,
               policy: str = "sql-eval", stdout: TextIO | None = None, progress: bool = True) -> int:
    """Start a cluster, load ``data`` without the extension, run both checks; 0 when both pass."""
    stdout = stdout or sys.stdout
    from sqlcoder_dev.pgcluster import Cluster  # developer tooling: only the checks need a private cluster

    dataset = Dataset(data)
    questions = dataset.questions()
    out_dir = Path(out_dir or tempfile.mkdtemp(prefix="sqlcoder-eval-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    with Cluster() as pg:
        conninfo = pg.conninfo("postgres")
        for db in dataset.databases(sorted({q.db_name for q in questions})):
            for unplaced in load_database(conninfo, db, extension=False).unplaced:
                print(f"NOTE load {db.name}: description not placed: {unplaced}", file=stdout)
        summaries: dict[str, Summary] = {}
        notes: list[str] = []
        for predictor in (GoldPredictor(), PerturbedPredictor()):
            opts = RunOptions(conninfo=conninfo, run_name=predictor.name, parallel=parallel,
                              timeout_s=timeout_s, policy=policy, judges=JUDGE_ORDER, progress=progress)
            records = run(questions, predictor, out_dir / f"{predictor.name}.jsonl", opts)
            for judge in JUDGE_ORDER:
                judged = as_judged_by(records, judge)
                summaries[f"{judge}/{predictor.name}"] = summarize(judged)[f"{judge}/{predictor.name}"]
                for r in judged:
                    wrongly_right = predictor.name == "perturbed" and r["correct"] and not r["skipped"]
                    if wrongly_right and judge == "sql-eval":
                        notes.append(f"NOTE sql-eval/perturbed #{r['id']} {r['db_name']}/{r['category']} scored "
                                     f"correct by sql-eval's rules: {r['note']}")
                    elif ((r["error"] and (predictor.name == "gold" or judge == "strict"))
                          or (predictor.name == "gold" and not r["correct"]) or wrongly_right):
                        print(f"FAIL {r['run']} #{r['id']} {r['db_name']}/{r['category']}: "
                              f"{r['error'] or r['note'] or 'wrong verdict'}", file=stdout)
    for line in eval_lines(*(summaries[f"{j}/{r}"] for j in JUDGE_ORDER for r in ("gold", "perturbed"))):
        print(line, file=stdout)
    perturbed = summaries["strict/perturbed"]
    if perturbed.skipped:
        print(f"NOTE perturbed: {len(perturbed.skipped)} questions have no result-changing perturbation"
              f" and are not counted: {' '.join('#' + str(i) for i in perturbed.skipped)}", file=stdout)
    for note in notes:
        print(note, file=stdout)
    print(f"NOTE results: {out_dir}", file=stdout)
    ok = (all(summaries[f"{j}/gold"].percent() == 100.0 for j in JUDGE_ORDER)
          and perturbed.counted > 0 and perturbed.correct == 0)
    return 0 if ok else 1
