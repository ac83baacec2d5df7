"""sql-eval's gold query expansion: ``;`` alternatives, ``{a, b}`` column sets, ``GROUP BY {}``."""

from sqlcoder_eval.goldsql import expand_gold, split_alternatives


def test_alternatives_split_on_semicolons_and_empty_parts_dropped():
    assert split_alternatives("SELECT 1; SELECT 2 ;;") == ["SELECT 1", "SELECT 2"]
    assert expand_gold("SELECT a FROM t;SELECT b FROM t;") == ["SELECT a FROM t", "SELECT b FROM t"]


def test_query_without_braces_is_its_own_only_variant():
    assert expand_gold("SELECT count(*) FROM t WHERE x > 1;") == ["SELECT count(*) FROM t WHERE x > 1"]


def test_column_set_expands_to_every_non_empty_subset_in_order():
    assert expand_gold("SELECT {t.a, t.b}, n FROM t") == [
        "SELECT t.a, n FROM t", "SELECT t.b, n FROM t", "SELECT t.a, t.b, n FROM t"]
    three = expand_gold("SELECT {a,b,c} FROM t")
    assert len(three) == 7 and three[-1] == "SELECT a, b, c FROM t"


def test_group_by_braces_take_the_same_columns():
    variants = expand_gold("SELECT {a.id, a.name}, count(*) FROM a GROUP BY {} ORDER BY 2")
    assert variants == [
        "SELECT a.id, count(*) FROM a GROUP BY a.id ORDER BY 2",
        "SELECT a.name, count(*) FROM a GROUP BY a.name ORDER BY 2",
        "SELECT a.id, a.name, count(*) FROM a GROUP BY a.id, a.name ORDER BY 2",
    ]


def test_each_alternative_expands_separately():
    variants = expand_gold("SELECT {a, b} FROM t;SELECT c FROM u")
    assert variants == ["SELECT a FROM t", "SELECT b FROM t", "SELECT a, b FROM t", "SELECT c FROM u"]


def test_only_the_first_column_set_of_an_alternative_expands():
    # sql-eval expands one set per alternative; a second set is left as written.
    assert expand_gold("SELECT {a, b}, {c, d} FROM t")[0] == "SELECT a, {c, d} FROM t"
