"""``sqlcoder-eval check``: gold and perturbation checks on a throwaway cluster, as ``EVAL`` lines.

Gold answers must score 100% and every perturbed answer 0%: together they show
that loading, execution and comparison work on the data before any model is
judged with them. Questions with no result-changing perturbation are listed
apart and not counted.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import TextIO

from .dataset import Dataset
from .load import load_database
from .predictors import GoldPredictor, PerturbedPredictor
from .report import Summary, categories_of, summarize
from .runner import RunOptions, run

__all__ = ["eval_lines", "run_checks"]


def eval_lines(gold: Summary, perturbed: Summary) -> list[str]:
    """``EVAL <run> <category> <percent>`` for both runs, the two overall lines last."""
    lines = []
    for s in (gold, perturbed):
        lines += [f"EVAL {s.run} {c} {s.percent(c):.1f}" for c in categories_of([s])]
    lines += [f"EVAL {s.run} overall {(s.percent() or 0.0):.1f}" for s in (gold, perturbed)]
    return lines


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
            load_database(conninfo, db, extension=False)
        summaries = {}
        for predictor in (GoldPredictor(), PerturbedPredictor()):
            opts = RunOptions(conninfo=conninfo, run_name=predictor.name, parallel=parallel,
                              timeout_s=timeout_s, policy=policy, progress=progress)
            records = run(questions, predictor, out_dir / f"{predictor.name}.jsonl", opts)
            summaries[predictor.name] = summarize(records)[predictor.name]
            for r in records:
                if r["error"] or (predictor.name == "gold" and not r["correct"]) or (
                        predictor.name == "perturbed" and r["correct"] and not r["skipped"]):
                    print(f"FAIL {predictor.name} #{r['id']} {r['db_name']}/{r['category']}: "
                          f"{r['error'] or r['note'] or 'wrong verdict'}", file=stdout)
    gold, perturbed = summaries["gold"], summaries["perturbed"]
    for line in eval_lines(gold, perturbed):
        print(line, file=stdout)
    if perturbed.skipped:
        print(f"NOTE perturbed: {len(perturbed.skipped)} questions have no result-changing perturbation"
              f" and are not counted: {' '.join('#' + str(i) for i in perturbed.skipped)}", file=stdout)
    print(f"NOTE results: {out_dir}", file=stdout)
    ok = gold.percent() == 100.0 and perturbed.counted > 0 and perturbed.correct == 0
    return 0 if ok else 1
