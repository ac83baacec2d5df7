"""``sqlcoder-eval check`` end to end: a throwaway cluster, load, gold 100%, perturbed 0%, EVAL lines.

Runs on the suite's small data, and also on the folder ``SQL_EVAL_DATA`` names when it is set."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from sqlcoder_eval.cli import main

SMALL = Path(__file__).parent / "data"
FOLDERS = [SMALL] + ([Path(os.environ["SQL_EVAL_DATA"])] if os.environ.get("SQL_EVAL_DATA") else [])
CATEGORIES = ["date_functions", "group_by", "order_by", "ratio", "table_join", "instruct"]


@pytest.mark.slow
@pytest.mark.parametrize("data", FOLDERS, ids=[str(f) for f in FOLDERS])
def test_check_prints_eval_lines_and_passes(data, tmp_path, capsys):
    assert main(["check", "--data", str(data), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("EVAL ")]
    runs = ["strict/gold", "strict/perturbed", "sql-eval/gold", "sql-eval/perturbed"]
    assert [line.rsplit(" ", 1)[0] for line in lines] == (
        [f"EVAL {r} {c}" for r in runs for c in CATEGORIES] + [f"EVAL {r} overall" for r in runs])
    assert all(re.fullmatch(r"EVAL \S+ \S+ \d+\.\d", line) for line in lines)
    assert lines[-4:-1] == ["EVAL strict/gold overall 100.0", "EVAL strict/perturbed overall 0.0",
                            "EVAL sql-eval/gold overall 100.0"]
    # sql-eval's judge may score a perturbation correct (an empty answer to a one-row gold): listed, not failed.
    assert lines[-1].startswith("EVAL sql-eval/perturbed overall ")
    assert "FAIL" not in out
    assert (tmp_path / "gold.jsonl").exists() and (tmp_path / "perturbed.jsonl").exists()
    if data == SMALL:
        assert "NOTE load retail: description not placed: sales.OrderHeader.Discount (no column Discount)" in out
        assert "NOTE perturbed: 1 questions have no result-changing perturbation and are not counted: #18" in out


def test_check_without_data_says_how_to_give_it(monkeypatch, capsys):
    monkeypatch.delenv("SQL_EVAL_DATA", raising=False)
    assert main(["check"]) == 2
    assert "pass --data or set SQL_EVAL_DATA" in capsys.readouterr().err


def test_data_folder_from_the_environment(monkeypatch, tmp_path):
    from sqlcoder_eval.dataset import resolve_data_dir

    monkeypatch.setenv("SQL_EVAL_DATA", str(SMALL))
    assert resolve_data_dir(None) == SMALL
    with pytest.raises(FileNotFoundError):
        resolve_data_dir(tmp_path)
