"""Splits: determinism, the can't-split rule, positives, k-core, storage in DuckDB, no leakage."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from conftest import planted_ratings
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import db
from engine.errors import ConfigError
from engine.models import split
from engine.models.data import kcore, select_positives, to_dataset
from engine.models.split import SplitSettings, assign_parts, make_split


def _ratings(counts: dict[int, int]) -> pl.DataFrame:
    rows = [(u, f"I{u}-{i}", i % 11) for u, n in counts.items() for i in range(n)]
    return pl.DataFrame(
        rows, schema={"user_id": pl.Int32, "isbn": pl.Utf8, "rating": pl.Int8}, orient="row"
    )


def test_split_is_deterministic_given_the_seed() -> None:
    r = planted_ratings()
    a = assign_parts(r, SplitSettings(seed=7)).sort("user_id", "isbn")
    b = assign_parts(r.sample(fraction=1.0, shuffle=True, seed=3), SplitSettings(seed=7)).sort(
        "user_id", "isbn"
    )
    c = assign_parts(r, SplitSettings(seed=8)).sort("user_id", "isbn")
    assert a.equals(b)  # input order does not matter
    assert not a["part"].equals(c["part"])


def test_holdout_rule_small_users_stay_train_only_and_are_counted() -> None:
    r = _ratings({1: 1, 2: 2, 3: 3, 4: 10, 5: 50})
    rows, summary = make_split(r, SplitSettings())
    per = (
        rows.group_by("user_id", "part")
        .len()
        .pivot(on="part", index="user_id", values="len")
        .fill_null(0)
    )
    per = {row["user_id"]: row for row in per.iter_rows(named=True)}
    assert per[1].get("test", 0) == 0 and per[2].get("test", 0) == 0  # < 3 positives: train only
    assert summary["train_only_users"] == 2 and summary["users"] == 5  # counted, not dropped
    assert (
        summary["interactions"]
        == r.height
        == sum(summary[f"{p}_interactions"] for p in ("train", "valid", "test"))
    )
    for u in (3, 4, 5):
        assert per[u]["test"] >= 1 and per[u]["valid"] >= 1 and per[u]["train"] >= 1
    assert per[5]["test"] == 10  # 20 % of 50
    assert per[5]["valid"] == 4  # 10 % of the remaining 40


def test_leave_one_out_holds_out_exactly_one_test_and_one_valid() -> None:
    r = _ratings({1: 2, 2: 5, 3: 30})
    rows, summary = make_split(r, SplitSettings(method="loo"))
    counts = rows.filter(pl.col("part") != "train").group_by("user_id", "part").len()
    assert counts.filter(pl.col("user_id") == 1).is_empty()
    assert counts.filter(pl.col("user_id") != 1)["len"].to_list() == [1, 1, 1, 1]
    assert summary["test_users"] == 2 and summary["train_only_users"] == 1


def test_positives_settings() -> None:
    r = pl.DataFrame({"user_id": [1] * 5, "isbn": list("abcde"), "rating": [0, 0, 1, 6, 10]})
    assert select_positives(r, "all").height == 5
    assert select_positives(r, "explicit")["isbn"].to_list() == [
        "c",
        "d",
        "e",
    ]  # prototype: rating >= 1
    assert select_positives(r, "threshold", 6)["isbn"].to_list() == ["d", "e"]
    _, summary = make_split(r, SplitSettings(positives="explicit"))
    assert summary["dropped_by_positives"] == 2


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 12), st.integers(0, 15)), max_size=120), st.integers(1, 4))
def test_kcore_reaches_the_fixed_point(pairs: list[tuple[int, int]], k: int) -> None:
    df = pl.DataFrame(pairs, schema={"user_id": pl.Int64, "isbn": pl.Int64}, orient="row").unique()
    out = kcore(df.with_columns(pl.col("isbn").cast(pl.Utf8)), k)
    if out.height:
        assert out.group_by("user_id").len()["len"].min() >= k
        assert out.group_by("isbn").len()["len"].min() >= k
    assert kcore(out, k).height == out.height  # idempotent


def test_no_leakage_between_parts_and_graph(planted_db) -> None:
    con, _ = planted_db
    info = split.run(con, SplitSettings(seed=1))
    data, maps = to_dataset(split.rows(con, info.split_id))
    train = data.train
    for held in (data.valid, data.test):
        assert held.nnz > 0
        assert train.multiply(held).nnz == 0  # no held-out pair in the training matrix
    assert data.valid.multiply(data.test).nnz == 0
    from engine.models.graph import normalized_adjacency

    adj = normalized_adjacency(train).tocsr()
    u, i = data.test.nonzero()
    assert np.all(
        np.asarray(adj[u, data.n_users + i]).ravel() == 0
    )  # no test edge in the LightGCN graph
    assert train.nnz + data.valid.nnz + data.test.nnz == info.summary["interactions"]


def test_split_is_stored_reused_and_current(planted_db) -> None:
    con, _ = planted_db
    a = split.run(con, SplitSettings(seed=1))
    b = split.run(con, SplitSettings(seed=1))
    assert a.created and not b.created and a.split_id == b.split_id
    c = split.run(con, SplitSettings(seed=2, method="loo"))
    assert split.current(con).split_id == c.split_id
    # the unreferenced old split is pruned, the current one stays complete
    assert (
        db.fetch(con, "SELECT count(DISTINCT split_id) AS n FROM split_interactions")["n"][0] == 1
    )
    assert split.rows(con, c.split_id).height == planted_ratings().height
    assert split.ensure(con).split_id == c.split_id
    assert split.ensure(con, {"method": "holdout", "seed": 1}).split_id == a.split_id


def test_split_without_testable_users_is_a_clear_error(tmp_path) -> None:
    from conftest import load_ratings_db

    con = load_ratings_db(tmp_path / "x.duckdb", _ratings({1: 2, 2: 1}))
    with pytest.raises(ConfigError, match="no test interactions"):
        split.run(con, SplitSettings())
