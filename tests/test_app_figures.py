"""Pure figure builders of the dashboard (no browser, no database)."""

from __future__ import annotations

import json

import polars as pl
import pytest

from app.figures import models as mfig
from app.figures import overview as ofig


def test_rating_distribution_splits_implicit_and_explicit():
    fig = ofig.rating_distribution(pl.DataFrame({"rating": [0, 1, 5, 10], "n": [70, 3, 4, 5]}))
    implicit, explicit = fig.data
    assert (
        list(implicit.y) == [70]
        and list(explicit.x) == ["1", "5", "10"]
        and list(explicit.y) == [3, 4, 5]
    )
    assert "implicit" in fig.layout.xaxis.categoryarray[0]
    assert (
        "no ratings"
        in ofig.rating_distribution(pl.DataFrame({"rating": [], "n": []}))
        .layout.annotations[0]
        .text
    )


def test_long_tail_rebuilds_the_rank_curve():
    # 1 book with 100 interactions, 2 with 10, 1000 with 1
    act = pl.DataFrame({"n": [100, 10, 1], "items": [1, 2, 1000]})
    fig = ofig.long_tail(act, what="book", points=50)
    x, y = list(fig.data[0].x), list(fig.data[0].y)
    assert x[0] == 1 and y[0] == 100 and x[-1] == 1003 and y[-1] == 1
    assert y == sorted(y, reverse=True) and len(x) <= 50
    assert dict(zip(x, y, strict=True)).get(3) == 10
    assert fig.layout.xaxis.type == "log" and "top 20% of books" in fig.layout.title.text
    # top 20% = 201 books: 100 + 20 + 198 of 1120 interactions
    assert f"{(100 + 20 + 198) / 1120:.0%}" in fig.layout.title.text


def test_small_figures_and_empty_states():
    assert list(ofig.ages(pl.DataFrame({"age": [20, 30], "n": [1, 2]})).data[0].y) == [1, 2]
    fig = ofig.countries(pl.DataFrame({"country": ["usa", "spain"], "n": [5, 1]}))
    assert list(fig.data[0].y) == ["usa", "spain"] and fig.layout.yaxis.autorange == "reversed"
    rej = pl.DataFrame({"source": ["books", "ratings"], "reason": ["bad", "worse"], "n": [1, 2]})
    assert {t.name for t in ofig.rejected(rej).data} == {"books", "ratings"}
    for fn in (ofig.ages, ofig.countries, ofig.rejected):
        assert fn(pl.DataFrame()).layout.annotations


@pytest.mark.parametrize(
    ("key", "label"),
    [
        ("recall@20", "Recall@20"),
        ("ndcg@10", "NDCG@10"),
        ("hit@20", "HitRate@20"),
        ("sampled_hr@10", "HR@10 (sampled)"),
        ("sampled_ndcg@10", "NDCG@10 (sampled)"),
        ("coverage@20", "Coverage@20"),
    ],
)
def test_metric_labels_mark_sampled_metrics(key, label):
    assert mfig.metric_label(key) == label


def test_leaderboard_orders_runs_and_puts_sampled_last():
    runs = pl.DataFrame(
        {
            "run_id": ["a", "b", "c"],
            "model": ["mf", "lightgcn", "gfcf"],
            "is_current": [True, True, False],
            "finished_at": ["2026-01-01", "2026-01-02", None],
            "metrics": [
                json.dumps({"recall@20": 0.1, "sampled_hr@10": 0.9, "ndcg@20": 0.05}),
                json.dumps({"recall@20": 0.2, "sampled_hr@10": 0.8, "ndcg@20": 0.1, "note": "x"}),
                None,
            ],
        }
    )
    table, keys = mfig.leaderboard(runs)
    assert table["model"].to_list() == ["lightgcn", "mf", "gfcf"]
    assert keys == ["recall@20", "ndcg@20", "sampled_hr@10"]  # non-numbers dropped, sampled last


def test_learning_curves_have_loss_and_metric_panels():
    curves = pl.DataFrame(
        {
            "run_id": ["r"] * 4,
            "epoch": [1, 2, 1, 2],
            "part": ["train", "train", "valid", "valid"],
            "metric": ["loss", "loss", "recall", "recall"],
            "k": [None, None, 20, 20],
            "value": [0.5, 0.4, 0.1, 0.2],
        }
    )
    fig = mfig.learning_curves(curves, {"r": "lightgcn"})
    names = [t.name for t in fig.data]
    assert names == ["lightgcn loss", "lightgcn Recall@20"]
    assert fig.data[1].yaxis == "y2" and list(fig.data[1].y) == [0.1, 0.2]
    assert mfig.learning_curves(pl.DataFrame()).layout.annotations


def test_compare_flattens_and_flags_differences():
    diff = mfig.compare(
        {"params": {"lr": 0.001, "layers": 3}, "seed": 1}, {"params": {"lr": 0.01}, "seed": 1}
    )
    rows = {r["key"]: r for r in diff.iter_rows(named=True)}
    assert (
        rows["params.lr"]["differs"]
        and rows["params.layers"]["b"] == ""
        and not rows["seed"]["differs"]
    )
