"""``sqlcoder-eval report``: the model card's table from results files, per-question exports, deltas."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .dataset import CATEGORY_ORDER

__all__ = ["MixedJudges", "Summary", "compare_runs", "format_by_file", "format_table", "judge_of", "percentile",
           "summarize", "write_csv", "write_json"]

CSV_FIELDS = ("run", "judge", "source", "id", "db_name", "category", "question", "correct", "exact", "skipped", "error",
              "latency_ms", "exec_ms", "note", "generated", "gold", "instructions", "predictions")


@dataclass
class Summary:
    """One run's score: ``categories`` maps a category to (correct, counted); skipped ones are apart."""

    run: str
    judge: str = "strict"
    categories: dict[str, tuple[int, int]] = field(default_factory=dict)
    skipped: list[int] = field(default_factory=list)
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def correct(self) -> int:
        return sum(c for c, _ in self.categories.values())

    @property
    def counted(self) -> int:
        return sum(n for _, n in self.categories.values())

    def percent(self, category: str | None = None) -> float | None:
        c, n = self.categories.get(category, (0, 0)) if category else (self.correct, self.counted)
        return 100.0 * c / n if n else None


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (numpy's default), or None for no values."""
    if not values:
        return None
    s = sorted(values)
    pos = (len(s) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def judge_of(record: dict[str, Any]) -> str:
    """The judge that scored a record; records written before there were two judges used ``strict``'s rules."""
    return record.get("judge") or "strict"


def summarize(records: Iterable[dict[str, Any]]) -> dict[str, Summary]:
    """Per-run summaries, runs in first-seen order; a run scored by several judges says ``mixed``."""
    out: dict[str, Summary] = {}
    for r in sorted(records, key=lambda r: r["id"]):
        s = out.setdefault(r["run"], Summary(r["run"], judge_of(r)))
        if s.judge != judge_of(r):
            s.judge = "mixed"
        if r.get("skipped"):
            s.skipped.append(r["id"])
            continue
        c, n = s.categories.get(r["category"], (0, 0))
        s.categories[r["category"]] = (c + bool(r["correct"]), n + 1)
        s.errors += r.get("error") is not None
        if r.get("latency_ms") is not None:
            s.latencies_ms.append(float(r["latency_ms"]))
    return out


def categories_of(summaries: Iterable[Summary]) -> list[str]:
    seen = {c for s in summaries for c in s.categories}
    return [c for c in CATEGORY_ORDER if c in seen] + sorted(seen - set(CATEGORY_ORDER))


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def _secs(v: float | None) -> str:
    return "-" if v is None else f"{v / 1000:.2f}"


def format_table(summaries: Sequence[Summary]) -> str:
    """One row per run, one column per category, then overall, counts and latency (seconds)."""
    cats = categories_of(summaries)
    header = ["run", "judge", *cats, "overall", "n", "errors", "skipped", "p50_s", "p95_s"]
    rows = [[s.run, s.judge, *(_pct(s.percent(c)) for c in cats), _pct(s.percent()), str(s.counted), str(s.errors),
             str(len(s.skipped)), _secs(percentile(s.latencies_ms, 50)), _secs(percentile(s.latencies_ms, 95))]
            for s in summaries]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(row: list[str]) -> str:
        return "  ".join(v.ljust(w) if i < 2 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths)))

    return "\n".join([line(header), *(line(r) for r in rows)])


def format_by_file(records: Sequence[dict[str, Any]]) -> str:
    """One table per question file, when the records come from more than one ('' otherwise)."""
    sources = list(dict.fromkeys(r.get("source") or "" for r in sorted(records, key=lambda r: r["id"])))
    if len(sources) < 2:
        return ""
    parts = []
    for source in sources:
        mine = [r for r in records if (r.get("source") or "") == source]
        parts.append(f"file {source or '?'}: {len(mine)} questions\n" + format_table(list(summarize(mine).values())))
    return "\n\n".join(parts)


class MixedJudges(ValueError):
    """Two runs scored by different judges: their numbers are not on one scale."""


def compare_runs(a: list[dict[str, Any]], b: list[dict[str, Any]], mixed_judges: bool = False) -> str:
    """Per-category deltas from run ``a`` to run ``b`` and the questions whose correctness changed.
    Runs scored by different judges are refused (:class:`MixedJudges`) unless ``mixed_judges``."""
    sa, sb = _single(summarize(a), "A"), _single(summarize(b), "B")
    if sa.judge != sb.judge and not mixed_judges:
        raise MixedJudges(f"run A ({sa.run}) was scored by the {sa.judge} judge and run B ({sb.run}) by the "
                          f"{sb.judge} judge; rerun one with --judge, or pass --mixed-judges to compare anyway")
    lines = [f"A = {sa.run} (judge {sa.judge}), B = {sb.run} (judge {sb.judge})",
             f"{'category':<16}{'A':>8}{'B':>8}{'delta':>8}"]
    for c in [*categories_of([sa, sb]), None]:
        pa, pb = sa.percent(c), sb.percent(c)
        delta = "-" if pa is None or pb is None else f"{pb - pa:+.1f}"
        lines.append(f"{c or 'overall':<16}{_pct(pa):>8}{_pct(pb):>8}{delta:>8}")
    by_id = {r["id"]: r for r in a}
    changed = [(by_id[r["id"]], r) for r in sorted(b, key=lambda r: r["id"])
               if r["id"] in by_id and bool(by_id[r["id"]]["correct"]) != bool(r["correct"])]
    lines.append(f"{len(changed)} questions changed:")
    for _ra, rb in changed:
        arrow = "wrong -> right" if rb["correct"] else "right -> wrong"
        lines.append(f"  #{rb['id']} {rb['db_name']}/{rb['category']} {arrow}: {rb['question'][:90]}")
    return "\n".join(lines)


def _single(summaries: dict[str, Summary], label: str) -> Summary:
    if len(summaries) != 1:
        raise ValueError(f"--compare {label} must hold exactly one run, found {sorted(summaries) or 'none'}")
    return next(iter(summaries.values()))


def write_csv(records: Iterable[dict[str, Any]], path: str | Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        w.writeheader()
        for r in sorted(records, key=lambda r: (r["run"], r["id"])):
            w.writerow(r)


def write_json(records: Iterable[dict[str, Any]], path: str | Path) -> None:
    Path(path).write_text(json.dumps(sorted(records, key=lambda r: (r["run"], r["id"])), indent=1, default=str),
                          encoding="utf-8")
