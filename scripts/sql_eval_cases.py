"""Write sqlcoder-eval judge cases from a data folder's questions: for each question its gold
query, every gold variant and every perturbation of each variant, as answers to judge.

    .venv/bin/python scripts/sql_eval_cases.py DATA/questions_gen_postgres.csv > cases.csv

The cases feed both ``sqlcoder-eval judge`` and sql-eval's own comparison code
(scripts/sql_eval_reference.py), so the two judges can be compared verdict for verdict.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))

from sqlcoder_eval.dataset import read_questions  # noqa: E402
from sqlcoder_eval.goldsql import expand_gold  # noqa: E402
from sqlcoder_eval.perturb import FALLBACKS, KINDS  # noqa: E402


def main(paths: list[str]) -> None:
    w = csv.writer(sys.stdout)
    w.writerow(["db_name", "question", "gold", "answer", "query_category"])
    for path in paths:
        for q in read_questions(Path(path)):
            answers = [q.gold.split(";")[0].strip()] + expand_gold(q.gold)
            for variant in expand_gold(q.gold):
                for kind in [*KINDS.values(), *FALLBACKS.values()]:
                    answers += [p.sql for p in kind(variant)]
            for answer in dict.fromkeys(answers):
                w.writerow([q.db_name, q.question, q.gold, answer, q.category])


if __name__ == "__main__":
    main(sys.argv[1:])
