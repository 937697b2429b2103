"""checker/table.py: a CSV parsed once, its columns' figures, and the tables shared by content."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from checker import table
from checker.errors import Invalid
from checker.table import Column, parse

CSV = (
    b"id,name,score,flag\n1,ann,0.5,True\n2,,inf,False\n3,bob,,True\n4,ann,2.5,\n5,Ann,-inf,True\n"
)


@pytest.fixture(autouse=True)
def empty_cache():
    table.clear_cache()
    yield
    table.clear_cache()


def frame() -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(CSV))


def test_columns_count_what_pandas_counts() -> None:
    t, df = parse(CSV, "data/x.csv"), frame()
    for name in df.columns:
        assert t.column(name).missing == int(df[name].isna().sum()), name
    assert t.column("score").numeric and t.column("id").numeric
    assert not t.column("name").numeric
    assert not t.column("flag").numeric  # booleans are categories


def test_text_counts_leave_missing_values_out() -> None:
    t = parse(CSV, "data/x.csv")
    assert t.column("name").counts == {"ann": 2, "bob": 1, "Ann": 1}
    counts = pd.Series(frame()["flag"]).value_counts()
    assert t.column("flag").counts == {str(k): int(v) for k, v in counts.items()}


def test_numeric_figures_separate_missing_from_infinite() -> None:
    score = parse(CSV, "data/x.csv").column("score")
    assert score.finite.tolist() == [0.5, 2.5]  # sorted, infinities out
    assert score.present.tolist() == [0.5, np.inf, 2.5, -np.inf]  # file order, NaN out
    with pytest.raises(ValueError, match="read-only"):
        score.finite[0] = 1.0


def test_distinct_values_are_numbers_or_text() -> None:
    t = parse(CSV, "data/x.csv")
    assert t.column("id").distinct.tolist() == [1, 2, 3, 4, 5]
    assert t.column("name").distinct.tolist() == ["Ann", "ann", "bob"]
    assert Column(pd.Series([2, 1, 2, None])).distinct.tolist() == [1.0, 2.0]


def test_the_same_bytes_parse_once() -> None:
    first = parse(CSV, "learner-a/data/x.csv")
    assert parse(CSV, "learner-b/data/x.csv") is first
    assert parse(CSV, "data/x.csv", "other options") is not first
    assert parse(CSV + b"6,cy,1.0,True\n", "data/x.csv") is not first


def test_derived_figures_are_computed_once() -> None:
    t, calls = parse(CSV, "data/x.csv"), []
    for _ in range(3):
        assert t.derive("n", lambda: calls.append(1) or len(t)) == 5
    assert calls == [1]


def test_a_refusal_names_each_learners_own_file() -> None:
    bad = b'a,b\n"unclosed,1\n'
    with pytest.raises(Invalid, match="^learner-a/data/x.csv: expected a readable CSV"):
        parse(bad, "learner-a/data/x.csv")
    with pytest.raises(Invalid, match="^learner-b/data/x.csv: expected a readable CSV"):
        parse(bad, "learner-b/data/x.csv")


def test_decode_runs_only_for_unknown_bytes() -> None:
    decoded = []

    def decode(raw: bytes) -> bytes:
        decoded.append(raw)
        return raw

    parse(CSV, "data/x.csv", "plain", decode=decode)
    parse(CSV, "data/y.csv", "plain", decode=decode)
    assert len(decoded) == 1


def test_the_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(table, "CACHE_BYTES", 2 * (len(CSV) + 20))
    tables = [parse(CSV + f"{i},z,1.0,True\n".encode(), "data/x.csv") for i in range(6, 10)]
    assert len(table._CACHE) == 2  # the two most recent
    assert parse(CSV + b"9,z,1.0,True\n", "data/x.csv") is tables[-1]
    assert parse(CSV + b"6,z,1.0,True\n", "data/x.csv") is not tables[0]


def test_a_figure_of_two_columns_is_computed_once_per_pair() -> None:
    calls = []

    def gap(a: Column, b: Column) -> int:
        calls.append(1)
        return a.missing - b.missing

    t = parse(CSV, "data/x.csv")
    other = parse(CSV + b"6,,,\n", "data/y.csv")
    for _ in range(3):
        assert t.column("name").versus(other.column("name"), gap) == -1
    assert calls == [1]
    loose = Column(pd.Series(["a", None]))  # not from a file: never remembered
    t.column("name").versus(loose, gap)
    t.column("name").versus(loose, gap)
    assert len(calls) == 3
