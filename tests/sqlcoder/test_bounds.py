"""Cutting other roles' text: the marker, the per-line and total limits, the caller's instructions first."""

from __future__ import annotations

from sqlcoder import bounds


def test_short_text_is_left_alone() -> None:
    assert bounds.cut("fine", 10) == ("fine", False)


def test_long_text_is_cut_with_a_marker_saying_how_much() -> None:
    text, was_cut = bounds.cut("x" * 25, 10)
    assert was_cut and text == "x" * 10 + "…[cut by sqlcoder: 15 more characters]"


def test_each_owner_line_is_cut_and_named() -> None:
    lines, names = bounds.bound_instructions([("instruction 1", "a" * 50, 5_000_000)], [], 50, 1000)
    assert lines == ["a" * 50 + "…[cut by sqlcoder: 4999950 more characters]"]
    assert names == ["instruction 1"]


def test_owners_cannot_crowd_out_the_callers_instructions() -> None:
    owners = [(f"instruction {i}", "o" * 40, 40) for i in range(10)]
    lines, names = bounds.bound_instructions(owners, ["caller's own line"], 100, 120)
    assert lines[-1] == "caller's own line"
    assert sum(len(line.split("…")[0]) for line in lines[:-1]) == 120 - len("caller's own line")
    assert lines[2].startswith("o" * 23) and "[cut by sqlcoder: the rest]" in lines[2]
    assert names == ["instruction 2", "7 more instruction(s) left out (max_instructions_chars)"]


def test_nothing_to_cut_names_nothing() -> None:
    assert bounds.bound_instructions([("instruction 1", "short", 5)], ["mine"], 1000, 4000) == (["short", "mine"], [])
