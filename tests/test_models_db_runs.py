"""Write-back of runs (model_runs, run_metrics, embeddings, top-N), the leaderboard and the CLI doors."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import polars as pl
import pytest

from engine import db
from engine.cli import main
from engine.evaluate import leaderboard
from engine.evaluate.sampled import sample_negatives, sampled_ranking
from engine.models import runs, split, stage
from engine.models.data import IdMaps


def _record(model: str, run_id: str, metrics: dict | None = None) -> runs.RunRecord:
    now = datetime.now(UTC)
    return runs.RunRecord(
        run_id=run_id,
        model=model,
        params={"dim": 3, "seed": 1},
        split_id="split-x",
        data_fingerprint="fp",
        scoring="embedding",
        started_at=now,
        finished_at=now,
        metrics=metrics or {"recall@20": 0.25, "n_users": 4.0},
        timings={"fit_s": 1.5},
        history=[
            {"epoch": 1, "loss": 0.7, "metrics": {"recall@20": 0.2}},
            {"epoch": 2, "loss": 0.5, "metrics": {"recall@20": 0.3}},
        ],
        dim=3,
    )


def _payload(run_id: str, seed: int):
    rng = np.random.default_rng(seed)
    maps = IdMaps(np.array([5, 7, 9]), np.array(["0001", "0002", "000X", "0004"], dtype=object))
    u, v = (
        rng.standard_normal((3, 3)).astype(np.float32),
        rng.standard_normal((4, 3)).astype(np.float32),
    )
    return (
        maps,
        u,
        v,
        {
            "user_embeddings": runs.embedding_frame(run_id, "user_id", maps.user_ids, u),
            "item_embeddings": runs.embedding_frame(run_id, "isbn", maps.isbns, v),
        },
    )


def test_write_back_round_trip_and_one_current_run_per_model(tmp_path) -> None:
    con = db.connect(tmp_path / "r.duckdb")
    maps, u, v, payload = _payload("mf-a", 0)
    runs.write_run(con, _record("mf", "mf-a"), **payload)
    ids, got_u = runs.read_embeddings(con, "mf-a", "user")
    isbns, got_v = runs.read_embeddings(con, "mf-a", "item")
    assert ids.tolist() == [5, 7, 9] and isbns.tolist() == ["0001", "0002", "0004", "000X"]
    np.testing.assert_array_equal(got_u, u)  # float32 in, the same float32 out
    np.testing.assert_array_equal(got_v, v[[0, 1, 3, 2]])
    storage = db.fetch(con, "SELECT DISTINCT compression FROM pragma_storage_info('item_embeddings')"
                       " WHERE segment_type = 'FLOAT'")  # fmt: skip
    assert storage["compression"].to_list() == ["Uncompressed"]  # fast scans for recommend()
    history = db.query(con, "run_history", {"run_id": "mf-a"})
    assert history.filter(pl.col("part") == "train")["value"].to_list() == [0.7, 0.5]
    assert history.filter((pl.col("epoch") == -1) & (pl.col("metric") == "recall"))[
        "value"
    ].to_list() == [0.25]

    _, _, _, payload_b = _payload("mf-b", 1)
    runs.write_run(con, _record("mf", "mf-b"), **payload_b)
    current = runs.current_runs(con)
    assert current["run_id"].to_list() == ["mf-b"]
    row = current.row(0, named=True)
    assert json.loads(row["params"]) == {"dim": 3, "seed": 1} and json.loads(row["timings"]) == {
        "fit_s": 1.5
    }
    assert row["split_id"] == "split-x" and row["dim"] == 3
    # the old run keeps its row and metrics, its embeddings are dropped
    assert db.fetch(con, "SELECT count(*) AS n FROM model_runs")["n"][0] == 2
    assert db.fetch(con, "SELECT DISTINCT run_id FROM user_embeddings")["run_id"].to_list() == [
        "mf-b"
    ]
    # each item's nearest items are written with the run (and pruned with it): the macro's answer
    assert db.fetch(con, "SELECT DISTINCT run_id FROM item_neighbours")["run_id"].to_list() == [
        "mf-b"
    ]
    for isbn in maps.isbns:
        stored = db.fetch(
            con,
            "SELECT neighbour, score FROM item_neighbours WHERE isbn = $i ORDER BY rank",
            {"i": isbn},
        )
        want = db.fetch(
            con, "SELECT isbn, score FROM similar_books_run('mf-b', $i, k := 3)", {"i": isbn}
        )
        assert stored["neighbour"].to_list() == want["isbn"].to_list()
        assert stored["score"].to_list() == pytest.approx(want["score"].to_list(), abs=1e-6)
    con.close()


def test_write_back_is_all_or_nothing(tmp_path) -> None:
    con = db.connect(tmp_path / "r.duckdb")
    _, _, _, payload = _payload("mf-a", 0)
    runs.write_run(con, _record("mf", "mf-a"), **payload)
    _, _, _, bad = _payload("mf-b", 1)
    bad["recommendations"] = pl.DataFrame(
        {"user_id": [1], "rank": [1], "isbn": [None], "score": [1.0]}
    )  # NOT NULL isbn
    with pytest.raises(Exception):  # noqa: B017 - any DuckDB constraint error
        runs.write_run(con, _record("mf", "mf-b"), **bad)
    assert runs.current_runs(con)["run_id"].to_list() == ["mf-a"]
    assert db.fetch(con, "SELECT DISTINCT run_id FROM user_embeddings")["run_id"].to_list() == [
        "mf-a"
    ]
    con.close()


def test_train_then_leaderboard_rewrites_model_runs(planted_db) -> None:
    con, path = planted_db
    trained = stage.train(con, "popularity", {}, db_path=path).record
    assert trained.metrics["recall@20"] > 0 and "sampled_hr@10" in trained.metrics
    db.execute(con, "run_set_metrics", {"run_id": trained.run_id, "metrics": "{}"})
    entries = leaderboard.evaluate(con)
    assert [(e.model, e.status) for e in entries] == [("popularity", "evaluated")]
    stored = json.loads(runs.current_runs(con)["metrics"][0])
    assert stored["recall@20"] == pytest.approx(
        trained.metrics["recall@20"]
    )  # same split, same answer
    assert stored["sampled_hr@10"] == pytest.approx(trained.metrics["sampled_hr@10"])
    # a new split makes the run incomparable: listed, not re-scored on data it may have trained on
    split.run(con, split.SplitSettings(method="loo"))
    assert leaderboard.evaluate(con)[0].status.startswith("other split")


def test_sampled_metric_hand_computed() -> None:
    import scipy.sparse as sp
    import torch

    # 1 user, 6 items; seen = {0, 1}; test item 1; 3 negatives must be 3 distinct of {2, 3, 4, 5}
    seen = sp.csr_matrix(np.array([[1, 1, 0, 0, 0, 0]], dtype=np.float32))
    test = sp.csr_matrix(np.array([[0, 1, 0, 0, 0, 0]], dtype=np.float32))
    neg = sample_negatives(np.array([0]), seen, 3, seed=0)
    assert len(set(neg[0])) == 3 and set(neg[0]) <= {2, 3, 4, 5}
    scores = torch.tensor([[9.0, 5.0, 1.0, 2.0, 3.0, 4.0]])  # item 1 beats all of 2..5: rank 0
    out = sampled_ranking(lambda u: scores[u], test, seen, n_neg=3, k=1)
    assert out["sampled_hr@1"] == 1.0 and out["sampled_ndcg@1"] == 1.0
    scores = torch.tensor([[0.0, 0.0, 1.0, 1.0, 1.0, 1.0]])  # beaten by all three: rank 3
    out = sampled_ranking(lambda u: scores[u], test, seen, n_neg=3, k=10)
    assert out["sampled_hr@10"] == 1.0 and out["sampled_ndcg@10"] == pytest.approx(1 / np.log2(5))
    assert sampled_ranking(lambda u: scores[u], test, seen, n_neg=3, k=3)["sampled_hr@3"] == 0.0


def test_cli_recommend_unknown_user_prints_the_fallback(planted_db, capsys) -> None:
    con, path = planted_db
    stage.train(con, "lightgcn", {"epochs": 1, "progress": False, "dim": 8}, db_path=path)
    con.close()
    assert main(["recommend", "--user", "999999999", "--db", str(path), "--k", "3"]) == 0
    out = capsys.readouterr()
    assert "user 999999999 is unknown" in out.out and "popularity_fallback" in out.out
    assert "Traceback" not in out.out + out.err
    assert main(["recommend", "--user", "1000", "--db", str(path), "--k", "3"]) == 0
    out = capsys.readouterr().out
    assert "model lightgcn" in out and "popularity_fallback" not in out


def test_cli_errors_are_one_line(planted_db, capsys) -> None:
    con, path = planted_db
    con.close()
    assert main(["similar", "--isbn", "NOPE", "--db", str(path)]) == 4  # nothing trained yet
    assert main(["recommend", "--user", "1", "--model", "ncf", "--db", str(path)]) == 5
    assert main(["evaluate", "--db", str(path)]) == 4
    err = capsys.readouterr().err
    assert err.count("\n") == 3 and "Traceback" not in err and "bookrec train --model ncf" in err


def test_training_is_skipped_when_up_to_date(planted_db) -> None:
    con, path = planted_db
    first = stage.train(con, "popularity", {}, db_path=path)
    again = stage.train(con, "popularity", {}, db_path=path)
    assert not first.skipped and again.skipped and again.record.run_id == first.record.run_id
    forced = stage.train(con, "popularity", {}, db_path=path, force=True)
    assert not forced.skipped and forced.record.run_id != first.record.run_id
    other = stage.train(con, "popularity", {"by": "bayes"}, db_path=path)
    assert not other.skipped
    assert runs.current_runs(con)["run_id"].to_list() == [other.record.run_id]


def test_popularity_bayes_matches_the_popular_books_formula() -> None:
    import scipy.sparse as sp

    from engine.models.popularity import bayes_scores

    # item 0: ratings 10, 10 and one implicit 0; item 1: one 4; item 2: no rating
    r = sp.csr_matrix(np.array([[10, 4, 0], [10, 0, 0], [0, 0, 0]], dtype=np.float32))
    r = sp.csr_matrix(
        (np.r_[r.data, 0.0], np.r_[r.indices, 0], [0, 2, 3, 4]), shape=(3, 3)
    )  # + implicit 0 of user 2
    c = (10 + 10 + 4) / 3
    got = bayes_scores(r, m=2.0)
    assert got == pytest.approx([2 / 4 * 10 + 2 / 4 * c, 1 / 3 * 4 + 2 / 3 * c, c])


def test_cli_split_train_evaluate(planted_db, capsys) -> None:
    con, path = planted_db
    con.close()
    db_arg = ["--db", str(path)]
    assert main(["split", "--method", "loo", "--seed", "3", *db_arg]) == 0
    assert "train_only_users" in capsys.readouterr().out
    assert main(["train", "--model", "popularity", *db_arg]) == 0
    assert "now current" in capsys.readouterr().out
    assert main(["train", "--model", "popularity", *db_arg]) == 0
    assert "up to date" in capsys.readouterr().out
    assert main(["train", "--model", "popularity", "--force", *db_arg]) == 0
    assert (
        main(["train", "--model", "popularity", "--epochs", "3", *db_arg]) == 2
    )  # not a popularity setting
    assert main(["evaluate", "--all", *db_arg]) == 0
    out = capsys.readouterr().out
    assert "sampled" in out and "popularity" in out and "loo" in out


def test_ncf_trains_with_age_and_genre_side_features(planted_db) -> None:
    """With side_features on, the stage hands NCF each reader's age bucket and each book's biggest
    genre facet; a run without ages or facets trains without them, new facets make it stale."""
    from engine import pipeline
    from engine.models.data import AGE_EDGES, id_maps, side_features

    con, path = planted_db
    fast = {"epochs": 1, "dim": 8, "batch_size": 256, "progress": False, "side_features": True}
    bare = stage.train(con, "ncf", fast, db_path=path).record
    assert json.loads(json.dumps(bare.params))["side_features"] == []
    ratings = db.fetch(con, "SELECT DISTINCT user_id FROM ratings ORDER BY user_id")
    users = ratings.with_columns(
        age=pl.when(pl.col("user_id") % 4 == 0).then(None).otherwise(10 + pl.col("user_id") % 60)
    ).with_columns(pl.col("age").cast(pl.Int16))
    isbns = db.fetch(con, "SELECT isbn FROM books ORDER BY isbn")["isbn"].to_list()
    facets = pl.DataFrame(
        {
            "isbn": isbns + isbns[:5],
            "field": "genre",
            "label": ["Poetry" if i.startswith("POP") else "Fiction" for i in isbns]
            + ["Zines"] * 5,
        }
    )
    with db.transaction(con):
        db.replace_table(con, "users", users)
        db.replace_table(con, "book_facets", facets)
        pipeline.record(con, "facets", "fp-test", {}, {}, {})
    maps = id_maps(db.fetch(con, "SELECT user_id, isbn FROM ratings"))
    got = side_features(con, maps)
    want_ages = users.filter(pl.col("age").is_not_null())
    first = int(want_ages["user_id"][0])
    bucket = int(np.searchsorted(AGE_EDGES, int(want_ages["age"][0]), side="right"))
    assert got["user_features"][maps.user_index(np.array([first]))[0]] == bucket
    assert (got["user_features"] == -1).sum() == users["age"].null_count()
    # the first five books also carry the small 'Zines' genre: the biggest genre wins
    assert set(got["item_features"].tolist()) == {0, 1}  # Fiction, Poetry (sorted)
    rich = stage.train(con, "ncf", fast, db_path=path)
    assert not rich.skipped  # the facets changed: the old run is stale
    assert rich.record.params["side_features"] == ["item_features", "user_features"]


def test_lightgcn_trains_with_facet_nodes_from_book_facets(planted_db) -> None:
    from engine import pipeline

    con, path = planted_db
    isbns = db.fetch(con, "SELECT isbn FROM books ORDER BY isbn")["isbn"].to_list()
    facets = pl.DataFrame(
        {
            "isbn": isbns * 2,
            "field": ["genre"] * len(isbns) + ["tone"] * len(isbns),
            "label": [i[:3] for i in isbns] + ["Dark"] * len(isbns),
        }
    )
    with db.transaction(con):
        db.replace_table(con, "book_facets", facets)
        pipeline.record(con, "facets", "fp-test", {}, {}, {})
    fast = {"epochs": 1, "dim": 8, "batch_size": 256, "progress": False}
    genres = len({i[:3] for i in isbns})
    run = stage.train(con, "lightgcn", {**fast, "facet_nodes": ("genre",)}, db_path=path).record
    assert run.params["facet_nodes"] == genres
    both = stage.train(con, "lightgcn", {**fast, "facet_nodes": ("genre", "tone")}, db_path=path)
    assert both.record.params["facet_nodes"] == genres + 1
    plain = stage.train(con, "mf", {**fast, "facet_nodes": ("genre",)}, db_path=path).record
    assert "facet_nodes" not in plain.params  # no layers, no graph


def test_the_run_records_which_part_selected_the_epoch(planted_db) -> None:
    """Selected on valid when the split has one; otherwise the fixed epochs, judged on test once."""
    con, path = planted_db
    fast = {"epochs": 3, "eval_every": 1, "patience": 0, "dim": 8, "progress": False}

    def valid_rows(run_id: str) -> pl.DataFrame:
        history = db.query(con, "run_history", {"run_id": run_id})
        return history.filter(pl.col("part") == "valid")

    run = stage.train(con, "mf", fast, db_path=path).record
    assert run.params["selected_by"] == "valid" and 1 <= run.params["best_epoch"] <= 3
    assert sorted(set(valid_rows(run.run_id)["epoch"].to_list())) == [1, 2, 3]

    bare = stage.train(con, "mf", fast, split_overrides={"valid_fraction": 0.0}, db_path=path)
    assert bare.split.split_id != run.split_id
    params = bare.record.params
    assert params["selected_by"] == "none: fixed epochs" and params["best_epoch"] == 3
    assert valid_rows(bare.record.run_id).is_empty()  # no per-epoch scores taken from test
    assert bare.record.metrics["recall@20"] > 0  # judged on test once, after training
    pop = stage.train(con, "popularity", {}, db_path=path).record
    assert pop.params["selected_by"] == "none: fixed epochs"


def test_top_n_rows_are_appended_in_slices(tmp_path, monkeypatch) -> None:
    """xl's 21 M top-N rows as one Arrow copy were ~2 GB more at the write's peak: they go in
    slices of WRITE_ROWS, and every row arrives once."""
    con = db.connect(tmp_path / "r.duckdb")
    monkeypatch.setattr(runs, "WRITE_ROWS", 4)
    sizes = []
    append = db.append_table

    def spy(c, table, frame):
        if table == "recommendations":
            sizes.append(frame.height)
        return append(c, table, frame)

    monkeypatch.setattr(db, "append_table", spy)
    top = pl.DataFrame(
        {
            "user_id": np.repeat(np.array([5, 7, 9], np.int32), 3),
            "rank": np.tile(np.arange(1, 4, dtype=np.int32), 3),
            "isbn": ["0001", "0002", "0004"] * 3,
            "score": np.linspace(1, 0, 9),
        }
    )
    record = _record("itemknn", "knn-a")
    record.scoring = "topn"
    runs.write_run(con, record, recommendations=top)
    assert sizes == [4, 4, 1]
    got = db.fetch(con, "SELECT user_id, rank, isbn, score FROM recommendations ORDER BY ALL")
    assert got.equals(top.sort(pl.all()))
    con.close()
