"""Write the prompts defog-ai/sql-eval's own builder makes for a question file, as JSON lines.

The reference for ``tests/eval/test_sql_eval_prompt.py``: run once against a
checkout of sql-eval at the commit the ``sql-eval`` profile follows, in a
virtual environment with sql-eval's requirements (pandas, numpy), e.g.::

    git --git-dir=MIRROR archive aa8f04566a136b6ba455f41f0a36b0184e25e7b0 | tar x -C /tmp/sql-eval-aa8f045
    /tmp/sqleval-ref/bin/python scripts/sql_eval_reference_prompts.py --sql-eval /tmp/sql-eval-aa8f045 \\
        --data tests/eval/data --out tests/eval/data/sql_eval_prompts.jsonl

sql-eval reads its databases' metadata from the ``defog_data`` package; this
script stands in a ``defog_data`` built from the data folder (``NAME.json``'s
``table_metadata`` and ``glossary``; ``NAME.joins.json``'s pairs grouped by
their two tables, in file order, as defog-data's ``columns_join`` holds them).
The prompt is sql-eval's ``generate_prompt`` with ``prompts/prompt.md`` and
``--num_columns 0`` (the whole schema, no pruning), after its
``prepare_questions_df``: nothing of sql-eval is copied here, it is imported.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

_SHIM = '''import json, pathlib
_root = pathlib.Path({root!r})
dbs = {{}}
columns_join = {{}}
for _d in sorted(p for p in (_root / "databases").iterdir() if (p / f"{{p.name}}.json").is_file()):
    _meta = json.loads((_d / f"{{_d.name}}.json").read_text())
    dbs[_d.name] = {{"table_metadata": _meta["table_metadata"], "glossary": _meta.get("glossary", "")}}
    _joins = {{}}
    _file = _d / f"{{_d.name}}.joins.json"
    for _left, _right in (json.loads(_file.read_text())["join_hints"] if _file.is_file() else []):
        _joins.setdefault((_left.rsplit(".", 1)[0], _right.rsplit(".", 1)[0]), []).append((_left, _right))
    columns_join[_d.name] = _joins
'''


def _shim(root: Path, into: Path) -> None:
    package = into / "defog_data"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "_data.py").write_text(_SHIM.format(root=str(root.resolve())))
    (package / "metadata.py").write_text("from ._data import dbs\n")
    (package / "supplementary.py").write_text("from ._data import columns_join\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sql-eval", required=True, type=Path, help="a checkout of defog-ai/sql-eval")
    ap.add_argument("--data", required=True, type=Path, help="a folder with questions_gen_postgres.csv and databases/")
    ap.add_argument("--questions", type=Path, help="the question file (default: DATA/questions_gen_postgres.csv)")
    ap.add_argument("--out", required=True, type=Path)
    args = ap.parse_args(argv)
    questions = args.questions or args.data / "questions_gen_postgres.csv"
    with tempfile.TemporaryDirectory() as tmp:
        _shim(args.data, Path(tmp))
        sys.path[:0] = [tmp, str(args.sql_eval.resolve())]
        from utils.gen_prompt import generate_prompt  # type: ignore[import-not-found]
        from utils.questions import prepare_questions_df  # type: ignore[import-not-found]

        df = prepare_questions_df(str(questions), "postgres", None, False)
        with open(args.out, "w", encoding="utf-8") as out:
            for row in df.to_dict("records"):
                prompt = generate_prompt(str(args.sql_eval / "prompts" / "prompt.md"), row["question"],
                                         row["db_name"], row["instructions"], row["k_shot_prompt"], row["glossary"],
                                         row["table_metadata_string"], row["prev_invalid_sql"], row["prev_error_msg"],
                                         row["question_0"], row["query_0"], row["question_1"], row["query_1"],
                                         True, 0, False)
                out.write(json.dumps({"db_name": row["db_name"], "question": row["question"], "prompt": prompt})
                          + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
