"""`bookrec refresh` (engine/models/refresh.py): new ratings served without retraining.

Known answers on the planted-block data: a refit run equals a fit on every rating; a fold-in
run keeps the vectors / lists of readers whose books did not change and gives changed and new
readers what engine.foldin computes from the run's item vectors or item weights.
"""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner
from conftest import load_ratings_db, planted_ratings

from engine import db, foldin, pipeline, query
from engine.cli import cli
from engine.evaluate import leaderboard
from engine.models import refresh, runs, stage
from engine.models.base import build
from engine.models.data import load_interactions

NEW_READER = 77_777


def _add_ratings(con, rows: list[tuple[int, str, int]]) -> None:
    """What `ingest --append` leaves behind: more ratings and a new ingest fingerprint."""
    frame = pl.DataFrame(
        rows, schema={"user_id": pl.Int32, "isbn": pl.Utf8, "rating": pl.Int8}, orient="row"
    )
    with db.transaction(con):
        db.append_table(con, "ratings", frame)
        pipeline.record(con, "ingest", f"append-{len(rows)}-{rows[0]}", {}, {}, {})


@pytest.fixture()
def trained(tmp_path):
    path = tmp_path / "r.duckdb"
    con = load_ratings_db(path, planted_ratings())
    for name, settings in (
        ("popularity", {}),
        ("itemknn", {}),
        ("mf", {"epochs": 2, "dim": 8, "batch_size": 256}),
        ("ease", {"reg": 50.0}),
        ("ncf", {"epochs": 1, "dim": 8, "batch_size": 256}),
    ):
        stage.train(con, name, settings, db_path=path)
    yield con, path
    con.close()


def _vectors(con, run_id: str) -> dict[int, np.ndarray]:
    ids, vecs = runs.read_embeddings(con, run_id, "user")
    return {int(u): v for u, v in zip(ids.tolist(), vecs, strict=True)}


def _lists(con, run_id: str) -> dict[int, list[str]]:
    rows = con.execute(
        "SELECT user_id, list(isbn ORDER BY rank) FROM recommendations WHERE run_id = ? "
        "GROUP BY user_id",
        [run_id],
    ).fetchall()
    return {int(u): list(i) for u, i in rows}


def test_nothing_new_is_up_to_date(trained):
    con, path = trained
    before = runs.current_runs(con)["run_id"].sort().to_list()
    done = refresh.refresh(con, ("itemknn", "mf"), db_path=path)
    assert [r.method for r in done] == ["up to date", "up to date"]
    assert runs.current_runs(con)["run_id"].sort().to_list() == before


def test_refit_equals_a_fit_on_every_rating(trained):
    con, path = trained
    _add_ratings(con, [(NEW_READER, "B00001", 9), (NEW_READER, "B00002", 7), (1000, "B05003", 8)])
    source = runs.current_run(con, "itemknn")
    (done,) = refresh.refresh(con, ("itemknn",), db_path=path)
    assert done.method == "refit" and done.counts["readers_new"] == 1
    assert done.counts["readers_changed"] == 1
    new = runs.current_run(con, "itemknn")
    assert new.run_id == done.run_id != source.run_id
    assert new.params["protocol"] == "refresh" and new.params["refreshed_from"] == source.run_id
    assert new.metrics == source.metrics  # judged runs only: never re-scored on seen data
    # the same settings fitted directly on every rating give the same top-N
    model = build("itemknn", {k: v for k, v in source.params["model"].items()})
    rows = load_interactions(con).with_columns(part=pl.lit("train"))
    data, maps = stage.dataset_from_rows(con, model, rows)
    model.fit(data)
    user = int(np.searchsorted(maps.user_ids, NEW_READER))
    scores = model.score(__import__("torch").tensor([user]))[0].numpy()
    scores[data.train[user].indices] = -np.inf
    want = np.sort(scores[np.isfinite(scores)])[::-1][:10]
    got = con.execute(
        "SELECT list(isbn ORDER BY rank), list(score ORDER BY rank) FROM recommendations "
        "WHERE run_id = ? AND user_id = ?",
        [new.run_id, NEW_READER],
    ).fetchall()[0]
    assert np.allclose(np.array(got[1][:10]), want, atol=1e-5)  # the same scores, ties aside
    at = {i: n for n, i in enumerate(maps.isbns.tolist())}
    assert np.allclose([scores[at[i]] for i in got[0][:10]], want, atol=1e-5)
    # a second refresh with no new data does nothing
    (again,) = refresh.refresh(con, ("itemknn",), db_path=path)
    assert again.method == "up to date" and runs.current_run(con, "itemknn").run_id == new.run_id


def test_fold_in_keeps_unchanged_readers_and_solves_the_others(trained):
    con, path = trained
    source = runs.current_run(con, "mf")
    old = _vectors(con, source.run_id)
    isbns, items = runs.read_embeddings(con, source.run_id, "item")
    picks = ["B00001", "B00002", "B00003"]
    _add_ratings(con, [(NEW_READER, i, 8) for i in picks] + [(1001, "B00004", 0)])
    (done,) = refresh.refresh(con, ("mf",), db_path=path)
    assert done.method == "fold-in"
    new = _vectors(con, done.run_id)
    assert set(new) == set(old) | {NEW_READER}
    unchanged = [u for u in old if u not in (1001,)]
    assert all(np.array_equal(new[u], old[u]) for u in unchanged)
    row = {str(i): n for n, i in enumerate(isbns.tolist())}
    want, _ = foldin.user_vector(
        "mf", source.params["model"], items, np.array([row[i] for i in picks])
    )
    assert np.allclose(new[NEW_READER], want, atol=1e-5)
    assert not np.allclose(new[1001], old[1001])
    # item vectors and neighbours are the source's (its own payload is pruned: not current)
    _, items_new = runs.read_embeddings(con, done.run_id, "item")
    assert np.array_equal(items_new, items)
    n = con.execute(
        "SELECT count(*) FROM item_neighbours WHERE run_id = ?", [done.run_id]
    ).fetchall()[0]
    assert n[0] > 0


def test_item_weight_fold_in_for_dense_models(trained):
    con, path = trained
    source = runs.current_run(con, "ease")
    old = _lists(con, source.run_id)
    n_weights = db.query(con, "refresh_item_weights", {"run_id": source.run_id}).height
    _add_ratings(con, [(NEW_READER, "B01001", 8), (NEW_READER, "B01002", 8)])
    (done,) = refresh.refresh(con, ("ease",), db_path=path)
    assert done.method == "fold-in (item weights)"
    new = _lists(con, done.run_id)
    assert all(new[u] == old[u] for u in old)  # nobody else changed
    # the new reader's list is x W from the stored weights, best first, picks excluded
    w = db.query(con, "refresh_item_weights", {"run_id": done.run_id})
    score = (
        w.filter(pl.col("isbn").is_in(["B01001", "B01002"]))
        .group_by("neighbour")
        .agg(pl.col("weight").sum())
        .filter(~pl.col("neighbour").is_in(["B01001", "B01002"]) & (pl.col("weight") > 0))
        .sort(["weight", "neighbour"], descending=[True, False])
    )
    assert new[NEW_READER][:5] == score["neighbour"].to_list()[:5]
    # the weights were carried over to the new run (fold-in of the API keeps working)
    assert w.height == n_weights > 0


def test_ncf_is_not_refreshable_and_says_so(trained):
    con, path = trained
    _add_ratings(con, [(NEW_READER, "B00001", 9)])
    (done,) = refresh.refresh(con, ("ncf",), db_path=path)
    assert done.method == "not refreshable" and done.run_id is None
    assert "retrain" in done.note


def test_leaderboard_and_store_serve_the_refreshed_runs(trained):
    con, path = trained
    _add_ratings(con, [(NEW_READER, "B02001", 9), (NEW_READER, "B02002", 9)])
    refresh.refresh(con, ("itemknn", "mf"), db_path=path)
    entries = {e.model: e for e in leaderboard.evaluate(con, ["itemknn", "mf"])}
    assert "refresh of run" in entries["itemknn"].status
    con.close()
    store = query.Store(path)
    try:
        for model in ("itemknn", "mf"):
            recs = store.recommend(model, NEW_READER, k=5)
            assert recs["source"].unique().to_list() == ["model"]
            assert any(i.startswith("B02") for i in recs["isbn"].to_list())
    finally:
        store.close()


def test_cli_prints_a_table_and_errors_cleanly(trained, tmp_path):
    con, path = trained
    _add_ratings(con, [(NEW_READER, "B00001", 9)])
    con.close()
    out = CliRunner().invoke(cli, ["refresh", "--db", str(path), "--model", "popularity"])
    assert out.exit_code == 0, out.output
    assert "popularity" in out.output and "refit" in out.output
    con2 = db.connect(path)
    try:
        params = json.loads(
            con2.execute(
                "SELECT params FROM model_runs WHERE model = 'popularity' AND is_current"
            ).fetchall()[0][0]
        )
    finally:
        con2.close()
    assert params["refresh"]["readers_new"] == 1
    empty = tmp_path / "empty.duckdb"
    db.connect(empty).close()
    bad = CliRunner().invoke(cli, ["refresh", "--db", str(empty)])
    assert bad.exit_code != 0 and "no trained models" in str(bad.exception or bad.output)
