"""Fold-in (engine/foldin.py, Store.fold_in): known answers for item-based and embedding models.

Item-based: a training reader's history folded in as if new gives back the run's stored top-N
(exact for item-kNN and RP3beta, whose stored W is the model's own). Embedding: ridge recovers a
known reader vector on a toy matrix, and ALS's user step equals a direct least-squares solve.
"""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp
import torch
from conftest import load_ratings_db, planted_ratings

from engine import db, foldin, query
from engine.models import split, stage
from engine.models.base import Dataset, build


def test_ridge_recovers_a_known_vector():
    """Targets made by a known vector are solved back exactly when reg -> 0 (and almost with reg)."""
    rng = np.random.default_rng(0)
    items = rng.standard_normal((40, 6))
    truth = rng.standard_normal(6)
    got = foldin.ridge_user(items, 1e-9, items @ truth)
    assert np.allclose(got, truth, atol=1e-6)
    # with a reg the answer is the closed form of the regularised problem
    reg = 0.5
    want = np.linalg.solve(items.T @ items + reg * np.eye(6), items.T @ (items @ truth))
    assert np.allclose(foldin.ridge_user(items, reg, items @ truth), want)
    # the default target (1 per picked book) ranks the picked direction first
    picked = items[:3]
    u = foldin.ridge_user(picked, foldin.ridge_reg(items))
    assert (picked @ u > 0).all()


def test_als_user_step_is_weighted_least_squares():
    """The ALS step minimises sum_i c_i (p_i - u.y_i)^2 + reg |u|^2 over all items (p=1 picked)."""
    rng = np.random.default_rng(1)
    y = rng.standard_normal((30, 4))
    picked, reg, alpha = [2, 7, 11], 0.3, 5.0
    c = np.ones(30)
    c[picked] = alpha
    p = np.zeros(30)
    p[picked] = 1.0
    want = np.linalg.solve((y.T * c) @ y + reg * np.eye(4), (y.T * c) @ p)
    assert np.allclose(foldin.als_user(y.T @ y, y[picked], reg, alpha), want)


def test_prune_rows_keeps_the_largest_per_row():
    w = sp.csr_matrix(np.array([[0, 3, 1, 2], [5, 0, 0, 0], [1, 1, 4, 0]], dtype=np.float32))
    got = foldin.prune_rows(w, 2).toarray()
    assert got.tolist() == [[0, 3, 0, 2], [5, 0, 0, 0], [1, 0, 4, 0]]


@pytest.mark.parametrize(
    "name,settings",
    [
        ("itemknn", {"topk": 30}),
        ("rp3beta", {"topk": 30}),
        ("ease", {"reg": 50.0}),
        ("gfcf", {"svd_k": 8, "svd_method": "arpack"}),
        ("chebycf", {"ideal_k": 8, "svd_method": "arpack"}),
    ],
)
def test_item_item_reproduces_the_models_scores(name, settings):
    """x W from item_item (no pruning: topk = all items) equals the model's own score(u)."""
    rng = np.random.default_rng(2)
    x = sp.random(60, 45, density=0.12, random_state=3, format="csr", dtype=np.float32)
    x.data[:] = 1.0
    model = build(name, settings)
    model.fit(Dataset(60, 45, x))
    w = model.item_item(45)
    assert w is not None
    users = rng.choice(60, 10, replace=False)
    want = model.score(torch.from_numpy(users)).numpy()
    got = np.vstack([foldin.item_scores(w, x[u].indices) for u in users])
    off = x[users].toarray() == 0  # dense models leave the picked books out of W's rows
    assert np.allclose(got[off], want[off], atol=1e-4)


def test_rows_complete_says_whether_a_picked_row_was_pruned():
    """A row cut to topk entries makes the fold-in approximate; shorter rows are whole."""
    w = sp.csr_matrix(np.array([[0, 3, 1, 2], [5, 0, 0, 0], [1, 1, 4, 0]], dtype=np.float32))
    pruned = foldin.prune_rows(w, 2)  # rows 0 and 2 had 3 entries: cut; row 1 had 1: whole
    assert foldin.rows_complete(pruned, np.array([1]), "hybrid", topk=2)
    assert not foldin.rows_complete(pruned, np.array([1, 2]), "hybrid", topk=2)
    assert not foldin.rows_complete(pruned, np.array([0]), "ease", topk=2)
    assert foldin.rows_complete(pruned, np.array([0]), "rp3beta", topk=2)  # its W is its own
    assert foldin.rows_complete(w, np.array([0, 2]), "hybrid", topk=4)


def test_hybrid_with_pruned_rows_says_approximate(tmp_path, monkeypatch):
    """With TOPK below a group's size the hybrid's stored rows are cut: exact is False, and the
    stored weights are each row's largest (the pruned tail only lowers scores)."""
    path = tmp_path / "small.duckdb"
    con = _planted_with_authors(path)
    monkeypatch.setattr(foldin, "TOPK", 10)
    stage.train(con, "hybrid", {"topk": 5, "author": 1.0}, db_path=path)
    con.close()
    store = query.Store(path)
    try:
        picks = [f"B00{i:03d}" for i in range(4)]
        got, info = store.fold_in("hybrid", picks, k=5)
        assert info["used"] == picks and info["exact"] is False
        ids, row, w = store._item_weights(store.run_of("hybrid")["run_id"])
        assert np.diff(w.indptr).max() == 10
    finally:
        store.close()


def test_a_large_w_is_stored_capped_and_written_in_blocks(monkeypatch):
    """xl's item-kNN W (288 M entries) took over 24 GB to write as one frame: a W over
    MAX_WEIGHTS keeps each row's largest MAX_WEIGHTS // rows, and the rows are built in blocks."""
    w = sp.random(40, 40, density=0.3, random_state=5, format="csr", dtype=np.float32)
    assert foldin.capped(w, w.nnz)[1] is None and foldin.capped(w, w.nnz)[0].nnz == w.nnz
    small, cut = foldin.capped(w, 160)
    assert cut == 4 and np.diff(small.indptr).max() == 4 and small.nnz <= 160
    assert (small != foldin.prune_rows(w, 4, block=1 << 30)).nnz == 0  # blocks change nothing
    assert (foldin.prune_rows(w, 4, block=7) != foldin.prune_rows(w, 4, block=1 << 30)).nnz == 0
    isbns = np.array([f"I{i:02d}" for i in range(40)])
    monkeypatch.setattr(foldin, "WRITE_BLOCK", 25)
    frames = list(foldin.weight_frames("run-1", w, isbns))
    assert len(frames) > 5 and max(f.height for f in frames) <= 25
    rows = pl.concat(frames)
    assert rows.height == w.nnz and set(rows["run_id"]) == {"run-1"}
    at = {i: n for n, i in enumerate(isbns)}
    back = sp.csr_matrix(
        (
            rows["weight"].to_numpy(),
            ([at[i] for i in rows["isbn"]], [at[i] for i in rows["neighbour"]]),
        ),
        shape=(40, 40),
    )
    assert abs(back - w).max() == 0
    # a cut row of an exact model's W makes its fold-in approximate; a shorter one stays exact
    lengths = np.diff(small.indptr)
    short, full = np.flatnonzero(lengths < 4)[:1], np.flatnonzero(lengths == 4)[:1]
    assert foldin.rows_complete(small, short, "itemknn", cut=4)
    assert not foldin.rows_complete(small, full, "itemknn", cut=4)
    assert foldin.rows_complete(small, full, "itemknn")  # stored whole: its own W


def test_an_item_knn_run_over_the_weight_cap_says_its_fold_in_is_approximate(tmp_path, monkeypatch):
    path = tmp_path / "small.duckdb"
    con = _planted_with_authors(path)
    stage.train(con, "itemknn", {"topk": 30}, db_path=path)
    whole = con.execute("SELECT count(*) FROM item_weights").fetchall()[0][0]
    books = con.execute("SELECT count(DISTINCT isbn) FROM item_weights").fetchall()[0][0]
    monkeypatch.setattr(foldin, "MAX_WEIGHTS", whole // 2)
    stage.train(con, "itemknn", {"topk": 30}, db_path=path, force=True)
    stored = con.execute("SELECT count(*) FROM item_weights").fetchall()[0][0]
    params = con.execute(
        "SELECT params FROM model_runs WHERE model = 'itemknn' AND is_current"
    ).fetchall()[0][0]
    con.close()
    cut = json.loads(params)["item_weights_per_row"]
    assert stored <= whole // 2 < whole and cut >= 1
    store = query.Store(path)
    try:
        ids, row, w = store._item_weights(store.run_of("itemknn")["run_id"])
        long_row = int(np.argmax(np.diff(w.indptr)))
        assert np.diff(w.indptr).max() == cut and books >= len(ids) // 2
        _, info = store.fold_in("itemknn", [str(ids[long_row])], k=5)
        assert info["exact"] is False
    finally:
        store.close()


def test_models_without_a_linear_score_have_no_item_item():
    x = sp.random(20, 15, density=0.2, random_state=0, format="csr", dtype=np.float32)
    model = build("mf", {"epochs": 1, "dim": 4})
    model.fit(Dataset(20, 15, x))
    assert model.item_item(10) is None


def _planted_with_authors(path):
    """The planted ratings, each taste block's books by one author (B00..., B01..., POP...)."""
    con = load_ratings_db(path, planted_ratings())
    con.execute("UPDATE books SET author = 'Author ' || substr(isbn, 1, 3)")
    return con


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The planted ratings with rp3beta, hybrid, itemknn and ALS runs (written by stage.train)."""
    path = tmp_path_factory.mktemp("foldin") / "foldin.duckdb"
    con = _planted_with_authors(path)
    stage.train(con, "rp3beta", {"topk": 40}, db_path=path)
    stage.train(con, "hybrid", {"topk": 40, "author": 1.0}, db_path=path)
    stage.train(con, "itemknn", {"topk": 40}, db_path=path)
    stage.train(con, "als", {"dim": 8, "epochs": 5}, db_path=path)
    weights = db.query(con, "api_item_weight_ids", {"run_id": "x"})  # the query runs
    assert weights.is_empty()
    con.close()
    store = query.Store(path)
    yield store
    store.close()


def _split_items(store: query.Store) -> pl.DataFrame:
    with store.cursor() as cur:
        return split.rows(cur, split.current(cur).split_id).select("user_id", "isbn", "part")


@pytest.mark.parametrize("model", ["rp3beta", "hybrid", "itemknn"])
def test_item_based_fold_in_equals_the_stored_top_n(trained, model):
    """Fold-in of a training reader's train books, their valid/test books also excluded, gives the
    run's stored top-N for them: same books, same scores (where the scores are not tied)."""
    run = trained.run_of(model)
    rows = _split_items(trained)
    checked = 0
    for user_id in sorted(set(rows["user_id"].to_list()))[::15]:
        mine = rows.filter(pl.col("user_id") == user_id)
        train = mine.filter(pl.col("part") == "train")["isbn"].to_list()
        other = mine.filter(pl.col("part") != "train")["isbn"].to_list()
        got, info = trained.fold_in(model, train, k=20, exclude=other)
        assert info["exact"] and info["used"] == train
        stored = trained.frame("app_topn", {"run_id": run["run_id"], "user_id": user_id}).head(20)
        positive = stored.filter(pl.col("score") > 1e-6)
        assert got["source"].unique().to_list() == ["model"]
        assert np.allclose(got["score"].head(positive.height), positive["score"], rtol=1e-5)
        # the same books (ties in score may be ordered differently: compare as sets per score)
        want = {(round(s, 5), i) for s, i in zip(positive["score"], positive["isbn"], strict=True)}
        have = {(round(s, 5), i) for s, i in zip(got["score"], got["isbn"], strict=True)}
        cut = min(s for s, _ in want)
        assert {p for p in want if p[0] > cut} <= have
        checked += 1
    assert checked >= 5


def test_item_weights_are_stored_for_item_based_runs_only(trained):
    h = {r["model"]: r for r in trained.health()["runs"]}
    assert h["rp3beta"]["has_item_weights"] and h["itemknn"]["has_item_weights"]
    assert h["hybrid"]["has_item_weights"]
    assert not h["als"]["has_item_weights"]


def test_als_fold_in_is_close_to_the_trained_vectors(trained):
    """ALS's own user step from a training reader's train books recommends mostly what the trained
    user vector recommends (implicit trains with a few CG steps, so not to the last digit)."""
    rows = _split_items(trained)
    overlaps = []
    for user_id in sorted(set(rows["user_id"].to_list()))[::10]:
        mine = rows.filter(pl.col("user_id") == user_id)
        train = mine.filter(pl.col("part") == "train")["isbn"].to_list()
        got, info = trained.fold_in("als", train, k=10)
        assert info["method"].startswith("ALS user step")
        want = trained.recommend_reader("als", user_id, k=10 + len(train), exclude_read=False)
        want = [i for i in want["isbn"].to_list() if i not in set(train)][:10]
        overlaps.append(len(set(got["isbn"]) & set(want)) / 10)
    assert np.mean(overlaps) >= 0.7, overlaps


def test_empty_or_unknown_picks_get_popularity(trained):
    got, info = trained.fold_in("rp3beta", ["NOSUCHBOOK"], k=5)
    assert info["ignored"] == ["NOSUCHBOOK"] and info["used"] == []
    assert got["source"].unique().to_list() == ["popularity_fallback"]
    pop = trained.popular(k=5)
    assert got["isbn"].to_list() == pop["isbn"].to_list()
    empty, _ = trained.fold_in("als", [], k=5)
    assert empty["isbn"].to_list() == pop["isbn"].to_list()


def test_hybrid_through_the_http_api(trained):
    """POST /recommendations, a known reader and similar books for the hybrid over real HTTP: the
    fold-in equals Store.fold_in, similar books are the book's largest stored weights."""
    import json
    import threading
    import urllib.request

    import flask
    from werkzeug.serving import make_server

    from app import api, data

    data.init(trained.path)
    app = flask.Flask("foldin-api")
    api.install(app)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}/api/v1"

    def get(path, body=None):
        req = urllib.request.Request(
            base + path,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="GET" if body is None else "POST",
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())

    try:
        picks = ["B01000", "B01001", "B01002"]
        body = get("/recommendations", {"isbns": picks, "k": 8, "model": "hybrid"})
        want, _ = trained.fold_in("hybrid", picks, k=8)
        assert body["model"] == "hybrid" and body["exact"] is True and body["used"] == picks
        assert [r["isbn"] for r in body["recommendations"]] == want["isbn"].to_list()
        assert all(r["isbn"].startswith("B01") for r in body["recommendations"])  # the block
        user = trained.frame(
            "app_topn", {"run_id": trained.run_of("hybrid")["run_id"], "user_id": 1030}
        )
        recs = get("/readers/1030/recommendations?k=5&model=hybrid")["recommendations"]
        assert [r["isbn"] for r in recs] == user["isbn"].head(5).to_list()
        sim = get("/books/B01000/similar?k=5&model=hybrid")
        ids, row, w = trained._item_weights(trained.run_of("hybrid")["run_id"])
        line = w[row["B01000"]].toarray().ravel()
        line[row["B01000"]] = 0
        best = sorted(np.flatnonzero(line > 0), key=lambda j: (-line[j], ids[j]))[:5]
        assert [b["isbn"] for b in sim["similar"]] == [ids[j] for j in best]
        assert sim["source"] == "hybrid" and len(sim["similar"]) == 5
    finally:
        server.shutdown()


def test_warm_loads_the_fold_in_data_before_duckdb_is_capped(trained):
    """`bookrec serve` caps DuckDB at 256 MB after warm(): the item weights (millions of rows at
    Book-Crossing size) and ALS's Gram matrix must be in memory by then; health stays cheap."""
    trained.warm()
    for model in ("rp3beta", "hybrid", "itemknn"):
        assert ("item_weights", trained.run_of(model)["run_id"]) in trained._memo
    assert ("als_gram", trained.run_of("als")["run_id"]) in trained._memo
    runs = {r["model"]: r["has_item_weights"] for r in trained.health()["runs"]}
    assert runs == {"rp3beta": True, "hybrid": True, "itemknn": True, "als": False}
