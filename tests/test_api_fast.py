"""The JSON API's hot paths (issue 13 speed) give the answers of the frame paths they replace:
row dicts instead of Polars frames, in-memory top-N lists instead of a query per reader, plain
dicts serialised as the schema models would serialise them."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from engine import query


def _rows(frame: pl.DataFrame) -> list[dict]:
    return list(frame.iter_rows(named=True))


def _readers(store) -> list[int]:
    users, _ = store._ratings_by_user()
    return sorted(set(users.tolist()))[:40] + [0, 123456789]


def test_rows_equal_frames(app_store):
    store = app_store
    models = store.models()["model"].to_list()
    for model in [None, *models]:
        for uid in _readers(store):
            for k, excl in ((5, True), (20, False)):
                want = _rows(store.recommend_reader(model, uid, k, exclude_read=excl))
                assert store.recommend_rows(model, uid, k, exclude_read=excl) == want
        picks = store.user_ratings(_readers(store)[3])["isbn"].to_list()
        for chosen, facets in (
            (picks, None),
            (picks[:1] + ["NOPE"], None),
            ([], {"genre": ("Mystery",)}),
        ):
            frame, info = store.fold_in(model, chosen, 15, facets)
            rows, info2 = store.fold_in_rows(model, chosen, 15, facets)
            assert rows == _rows(frame) and info2 == info
    isbns = store.book_table()["isbn"].to_list()[:30] + ["NOPE"]
    for model in [None, *models]:
        for isbn in isbns:
            try:
                want = _rows(store.similar_model(isbn, model, 7))
            except (query.StageNotReadyError, query.UnknownEntityError):
                continue
            assert store.similar_rows(isbn, model, 7) == want


def test_top_lists_equal_the_query(app_store):
    """The in-memory lists of a 'topn' run answer as app_topn does, the shared list included."""
    store = app_store
    runs = store.models().filter(pl.col("scoring") == "topn").to_dicts()
    assert runs
    for run in runs:
        lists = store._top_lists(run["run_id"])
        try:
            for uid in _readers(store):
                rated = set(store.user_ratings(uid)["isbn"].to_list()[:3])
                for k in (1, 10, 100):
                    fast = store._model_top(run, uid, rated, k)
                    del store._memo[("top_lists", run["run_id"])]
                    try:
                        slow = store._model_top(run, uid, rated, k)
                    finally:
                        store._memo[("top_lists", run["run_id"])] = lists
                    assert fast == slow
                    whole = store.frame("app_topn", {"run_id": run["run_id"], "user_id": uid})
                    whole = whole.filter(~pl.col("isbn").is_in(list(rated))).head(k)
                    assert fast == (whole["isbn"].to_list(), whole["score"].to_list())
                    for limit in (1, k, k + 3):
                        assert lists.of(uid, limit) == lists.of(uid)[:limit]
        finally:
            store._memo.pop(("top_lists", run["run_id"]), None)


def test_run_lookup_and_existence_checks(app_store):
    store = app_store
    runs = store.models()
    assert store._run(None) == runs.row(0, named=True)
    for model in runs["model"].to_list():
        assert store._run(model) == runs.filter(pl.col("model") == model).row(0, named=True)
    with pytest.raises(query.UnknownEntityError):
        store._run("no-such-model")
    for uid in [*_readers(store), -1, 2**31, 2**40]:
        assert store.has_user(uid) == (store.user(uid) is not None)
    isbn = store.book_table()["isbn"][0]
    assert store.has_book(f" {isbn.lower()} ") == isbn
    with pytest.raises(query.UnknownEntityError):
        store.has_book("NOPE")


@pytest.mark.parametrize("n", [300, 5000])
def test_top_k_breaks_a_large_tie_by_isbn(n):
    """A tie at the k-th score wider than the candidates kept still goes by ISBN (most fold-in
    scores of a reader with few co-read books are 0)."""
    rng = np.random.default_rng(n)
    scores = np.zeros(n)
    scores[rng.choice(n, 7, replace=False)] = rng.random(7) + 1
    scores[rng.choice(n, 20, replace=False)] = -np.inf
    isbns = np.array([f"{i:010d}" for i in rng.permutation(n)])
    for k in (5, 7, 8, 30, 100):
        ok = [i for i in range(n) if np.isfinite(scores[i])]
        want = sorted(ok, key=lambda i: (-scores[i], isbns[i]))[:k]
        assert query._top(scores, isbns, k).tolist() == want


def test_plain_responses_are_the_schema_models_bytes(app_db):
    """ok_plain's dicts serialise to the bytes the pydantic response models gave."""
    from app import data
    from app.api import _book, _recommendations, _recommendations_plain, ok_plain
    from app.api import schemas as s
    from app.main import create_app

    app = create_app(app_db)
    store = data.store()
    uid = _readers(store)[0]
    with app.server.app_context():
        frame = store.recommend_reader(None, uid, 10)
        run = store.run_of(None)
        model = s.RecommendationsResponse(
            user_id=uid,
            model=run["model"],
            run_id=run["run_id"],
            k=10,
            recommendations=_recommendations(frame),
        )
        plain = {
            "user_id": uid,
            "model": run["model"],
            "run_id": run["run_id"],
            "k": 10,
            "recommendations": _recommendations_plain(store.recommend_rows(None, uid, 10)),
        }
        assert ok_plain(plain).get_data() == model.model_dump_json().encode()
        isbn = store.book_table()["isbn"][0]
        frame = store.similar_model(isbn, None, 5)
        items = [_book(r, s.Neighbour, rank=r["rank"], score=r["score"]) for r in _rows(frame)]
        got = client_get(app, f"/api/v1/books/{isbn}/similar?k=5")
        want = s.SimilarResponse(isbn=isbn, by="model", source=frame["source"][0], similar=items)
        assert got == want.model_dump_json().encode()
        assert json.loads(got)["similar"]


def client_get(app, path: str) -> bytes:
    resp = app.server.test_client().get(path)
    assert resp.status_code == 200, resp.data
    return resp.data
