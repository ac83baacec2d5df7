"""Write sqlcoder-eval judge cases from sql-eval question files.

For each question: its gold query, every gold variant and every perturbation of
each variant, as answers to judge. With ``--rewrites``, instead, answers that
stress the judges' edges, built from the first two variants of each question:
LIMIT 0/1 around the variant, an extra or a NULL column, DISTINCT, duplicated
rows (UNION ALL), ORDER BY in several spellings, an ORDER BY split over lines,
a statement before the query, lower case, and the variant reflowed over lines
the way a formatter would (deterministic: seeded)::

    .venv/bin/python scripts/sql_eval_cases.py DATA/questions_gen_postgres.csv > cases.csv
    .venv/bin/python scripts/sql_eval_cases.py --rewrites DATA/questions_gen_postgres.csv > rewrites.csv

The cases feed both ``sqlcoder-eval judge`` and sql-eval's own comparison code
(scripts/sql_eval_reference.py), so the judges can be compared verdict for verdict.
"""

from __future__ import annotations

import argparse
import csv
import random
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))

from sqlcoder_eval.dataset import read_questions  # noqa: E402
from sqlcoder_eval.goldsql import expand_gold  # noqa: E402
from sqlcoder_eval.perturb import FALLBACKS, KINDS  # noqa: E402

_CLAUSE = re.compile(r" (FROM|WHERE|GROUP BY|ORDER BY|LIMIT|JOIN|AND|DESC|ASC) ")


def perturbed_answers(gold: str) -> list[str]:
    answers = [gold.split(";")[0].strip()] + expand_gold(gold)
    for variant in expand_gold(gold):
        for kind in [*KINDS.values(), *FALLBACKS.values()]:
            answers += [p.sql for p in kind(variant)]
    return list(dict.fromkeys(answers))


def rewritten_answers(gold: str, rnd: random.Random) -> list[str]:
    answers = []
    for v in expand_gold(gold)[:2]:
        answers += [
            f"SELECT * FROM ({v}) s LIMIT 1", f"SELECT * FROM ({v}) s LIMIT 0",
            f"SELECT s.*, 1 AS extra FROM ({v}) s", f"SELECT DISTINCT * FROM ({v}) s",
            f"SELECT * FROM ({v}) s ORDER BY 1 DESC", f"SELECT * FROM ({v}) s ORDER BY 1",
            f"SELECT * FROM ({v}) s\nORDER BY 1\nDESC", f"SELECT * FROM ({v}) s ORDER BY 1 ASC\nLIMIT 100",
            f"SELECT 1 AS x; {v}", v.lower(),
            _CLAUSE.sub(lambda m: "\n" + m.group(1) + " ", v),
            " ".join(w if rnd.random() > 0.15 else w + "\n" for w in v.split(" ")),
            f"SELECT *, NULL AS n FROM ({v}) s", f"SELECT * FROM ({v}) s UNION ALL SELECT * FROM ({v}) t",
        ]
    return answers


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rewrites", action="store_true", help="edge-case rewrites instead of perturbations")
    ap.add_argument("files", nargs="+", help="sql-eval question files")
    args = ap.parse_args(argv)
    rnd = random.Random(13)
    w = csv.writer(sys.stdout)
    w.writerow(["db_name", "question", "gold", "answer", "query_category"])
    for path in args.files:
        for q in read_questions(Path(path)):
            answers = rewritten_answers(q.gold, rnd) if args.rewrites else perturbed_answers(q.gold)
            for answer in answers:
                w.writerow([q.db_name, q.question, q.gold, answer, q.category])


if __name__ == "__main__":
    main(sys.argv[1:])
