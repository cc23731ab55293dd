"""engine.query, the dashboard's query layer, on the planted fixture database (tests/app_fixtures.py).

Known answers from the planted taste communities, and agreement with the public SQL macros the
fast in-memory paths stand in for (recommend_model, similar_books_model, similar_books_by_content,
facet_search, popular_books_m).
"""

from __future__ import annotations

import concurrent.futures as cf

import duckdb
import polars as pl
import pytest
from app_fixtures import (
    CONTENT_NEIGHBOURS,
    GENRES,
    ITEM_NEIGHBOURS,
    ODD_TITLE,
    UNKNOWN_USER_IN_RATINGS,
    USER_WITHOUT_RATINGS,
    build_app_db,
    genre_of_user,
    isbn_of,
)

from engine import db, query
from engine.errors import StageNotReadyError, UnknownEntityError
from engine.query import BrowseQuery


def macro(store: query.Store, sql: str, params: dict) -> pl.DataFrame:
    with store.cursor() as cur:
        return db.fetch(cur, sql, params)


def genre_of_isbn(isbn: str) -> str:
    return GENRES[int(isbn[1])]


def test_store_is_read_only_and_opened_once(app_db, app_store):
    assert query.open_store(app_db) is app_store
    with app_store.cursor() as cur, pytest.raises(duckdb.Error):
        cur.execute("DELETE FROM books").fetchall()
    assert app_store.sizes["books"] == 36


def test_readiness_of_a_full_database(app_store):
    for part in ("data", "facets", "models", "embeddings", "content", "ingest"):
        assert app_store.ready(part), part


def test_missing_stages_raise_stage_not_ready(tmp_path):
    path = build_app_db(tmp_path / "bare.duckdb", with_models=False, with_facets=False)
    store = query.Store(path)
    try:
        assert store.ready("data") and not store.ready("facets") and not store.ready("models")
        with pytest.raises(StageNotReadyError, match="bookrec train"):
            store.recommend("lightgcn", 1)
        with pytest.raises(StageNotReadyError, match="bookrec facets"):
            store.cooccurrence("genre", "tone")
        with pytest.raises(StageNotReadyError, match="bookrec content"):
            store.similar_content(isbn_of(0, 0))
        page, total = store.browse(BrowseQuery())  # browse works without facets
        assert total == 36 and page["genre"].to_list()[0] == []
    finally:
        store.close()


def test_browse_matches_popular_books_and_facet_search(app_store):
    page, total = app_store.browse(BrowseQuery(page_size=36, m=50))
    expected = macro(
        app_store, "SELECT isbn, score FROM popular_books_m(m := 50) ORDER BY rank", {}
    )
    assert total == 36
    assert page["isbn"].to_list() == expected["isbn"].to_list()
    assert page["score"].to_list() == pytest.approx(expected["score"].to_list())
    filters = [
        {"field": "genre", "label": "Romance"},
        {"field": "genre", "label": "Mystery"},
        {"field": "audience", "label": "Adult"},
    ]
    page, total = app_store.browse(
        BrowseQuery(
            facets={"genre": ("Romance", "Mystery"), "audience": ("Adult",)},
            min_ratings=1,
            year_min=1981,
            page_size=50,
            m=10,
        )
    )
    sql = (
        "SELECT isbn FROM facet_search(filters := $f, year_min := 1981, min_ratings := 1, k := 50, m := 10) "
        "ORDER BY rank"
    )
    assert page["isbn"].to_list() == macro(app_store, sql, {"f": filters})["isbn"].to_list()
    assert total == page.height > 0


def test_browse_m_changes_the_order(app_store):
    low, _ = app_store.browse(BrowseQuery(m=0, page_size=36))
    high, _ = app_store.browse(BrowseQuery(m=500, page_size=36))
    assert low["isbn"].to_list() != high["isbn"].to_list()
    # with m = 0 the score is the plain mean (unrated books fall back to the global mean)
    rated = low.filter(pl.col("n_explicit") > 0)
    assert rated["score"].to_list() == pytest.approx(rated["mean_rating"].to_list())


def test_browse_sort_page_and_text(app_store):
    first, total = app_store.browse(BrowseQuery(sort="title", desc=False, page_size=10))
    second, _ = app_store.browse(BrowseQuery(sort="title", desc=False, page_size=10, page=2))
    titles = first["title"].to_list() + second["title"].to_list()
    assert titles == sorted(titles, key=str.lower) and total == 36
    years, _ = app_store.browse(BrowseQuery(sort="year", desc=True, page_size=36))
    assert years["year"].to_list() == sorted(years["year"].to_list(), reverse=True)
    hits, n = app_store.browse(BrowseQuery(text="ROMANCE writer 2"))
    assert n == 3 and set(hits["author"]) == {"Romance Writer 2"}
    for text in ("%", "_", "'; DROP TABLE books; --", "\\", "Café <b>"):
        page, n = app_store.browse(BrowseQuery(text=text))
        assert n == (1 if text in ODD_TITLE else 0), text
    past, n = app_store.browse(BrowseQuery(page=99))
    assert past.is_empty() and n == 36


def test_recommend_known_answer_reason_and_macro_agreement(app_store):
    for user in (1, 12, 25):
        recs = app_store.recommend("lightgcn", user, 5)
        rated = set(app_store.user_ratings(user)["isbn"])
        assert recs["source"].unique().to_list() == ["model"]
        assert not set(recs["isbn"]) & rated
        assert {genre_of_isbn(i) for i in recs["isbn"]} == {genre_of_user(user)}
        # the reason is a book of the reader's own history, of the same genre
        assert set(recs["because_isbn"]) <= rated
        assert {genre_of_isbn(i) for i in recs["because_isbn"]} == {genre_of_user(user)}
        sql = "SELECT isbn, score FROM recommend_model('lightgcn', $u, k := 5) ORDER BY rank"
        expected = macro(app_store, sql, {"u": user})
        assert recs["isbn"].to_list() == expected["isbn"].to_list()
        assert recs["score"].to_list() == pytest.approx(expected["score"].to_list(), rel=1e-5)


def test_recommend_topn_model_and_default(app_store):
    recs = app_store.recommend("ncf", 12, 4)
    expected = macro(
        app_store, "SELECT isbn FROM recommend_model('ncf', 12, k := 4) ORDER BY rank", {}
    )
    assert recs["isbn"].to_list() == expected["isbn"].to_list()
    assert recs["because_isbn"].null_count() == 0  # reasons come from the LightGCN embeddings
    assert app_store.recommend(None, 12, 3)["model"].unique().to_list() == ["lightgcn"]
    with pytest.raises(UnknownEntityError, match="no current run"):
        app_store.recommend("nope", 12)


@pytest.mark.parametrize("user", [USER_WITHOUT_RATINGS, UNKNOWN_USER_IN_RATINGS, 123456789])
def test_unknown_readers_get_the_popularity_fallback(app_store, user):
    recs = app_store.recommend("lightgcn", user, 5)
    expected = macro(
        app_store,
        "SELECT isbn, source FROM recommend_model('lightgcn', $u, k := 5) ORDER BY rank",
        {"u": user},
    )
    assert recs["source"].unique().to_list() == ["popularity_fallback"]
    assert recs["isbn"].to_list() == expected["isbn"].to_list()
    assert expected["source"].unique().to_list() == ["popularity_fallback"]


def test_popular_within_facets_excludes_read_books(app_store):
    top = app_store.popular({"genre": ("Science Fiction",)}, k=5, exclude=[isbn_of(2, 0)])
    assert top.height == 5 and {genre_of_isbn(i) for i in top["isbn"]} == {"Science Fiction"}
    assert isbn_of(2, 0) not in top["isbn"].to_list()


def test_similar_books_agree_with_macros(app_store):
    book = isbn_of(1, 3)
    collab = app_store.similar_collab(book, "lightgcn", 5)
    expected = macro(
        app_store,
        "SELECT isbn, score FROM similar_books_model('lightgcn', $i, k := 5) ORDER BY rank",
        {"i": book},
    )
    assert collab["isbn"].to_list() == expected["isbn"].to_list()
    assert collab["score"].to_list() == pytest.approx(expected["score"].to_list(), rel=1e-5)
    assert {genre_of_isbn(i) for i in collab["isbn"]} == {"Romance"} and book not in collab[
        "isbn"
    ].to_list()
    content = app_store.similar_content(book, 5)
    expected = macro(
        app_store,
        "SELECT isbn FROM similar_books_by_content($i, k := 5) ORDER BY rank",
        {"i": book},
    )
    assert content["isbn"].to_list() == expected["isbn"].to_list()
    assert {genre_of_isbn(i) for i in content["isbn"]} == {"Romance"}
    assert app_store.similar_collab("NOT-AN-ISBN").is_empty()
    assert app_store.similar_content("'; DROP TABLE books; --").is_empty()


def test_lookups_and_type_ahead(app_store):
    assert app_store.book(isbn_of(0, 1).lower())["title"] == "Mystery Book 01"
    with pytest.raises(UnknownEntityError):
        app_store.book("0000000NOPE")
    hits = app_store.search_books("mystery book 0")
    assert hits.height == 10 and hits["title"][0].startswith("Mystery Book 0")
    assert app_store.search_books(isbn_of(2, 4))["isbn"].to_list() == [isbn_of(2, 4)]
    assert app_store.search_books("   ").is_empty()
    assert app_store.search_books("'; DROP TABLE books; --")["title"].to_list() == [ODD_TITLE]
    users = app_store.search_users("1")
    assert users["user_id"][0] == 1 and set(users["user_id"]) >= {1, 10, 11, 19}
    assert app_store.search_users("1; DROP").is_empty() and app_store.search_users("").is_empty()
    assert app_store.user(UNKNOWN_USER_IN_RATINGS)["n_ratings"] == 1
    assert app_store.user(USER_WITHOUT_RATINGS)["n_ratings"] == 0
    assert app_store.user(424242) is None and app_store.user(2**40) is None
    hist = app_store.user_history(1)
    assert hist.height == 8 and hist["rating"].to_list() == sorted(
        hist["rating"].to_list(), reverse=True
    )
    assert hist.filter(pl.col("isbn") == "0000000NOPE")["title"].to_list() == [None]


def test_overview_metadata_and_runs(app_store):
    assert app_store.dataset_stats()["n_books"] == 36
    dist = app_store.overview("rating_distribution")
    assert dist["n"].sum() == app_store.sizes["ratings"]
    books = app_store.activity("book")
    assert (books["n"] * books["items"]).sum() == app_store.sizes["ratings"]
    assert app_store.overview("rejected_by_reason")["n"].to_list() == [2, 1]
    pairs = app_store.cooccurrence("genre", "tone")
    assert set(zip(pairs["label_a"], pairs["label_b"], strict=True)) == {
        ("Mystery", "Dark"),
        ("Romance", "Romantic"),
        ("Science Fiction", "Suspenseful"),
    }
    assert app_store.facet_triples()["n_books"].sum() == 36
    assert app_store.facet_labels("genre").height == 6
    runs = app_store.runs()
    assert runs.height == 5 and runs["is_current"].sum() == 4
    curves = app_store.run_curves(["lightgcn-fixture"])
    assert curves["epoch"].min() == 1 and set(curves["metric"]) == {"loss", "recall"}


def test_concurrent_requests_on_cursors(app_store):
    """Answers from 8 threads at once equal the same calls made one after another."""

    def work(i: int) -> pl.DataFrame:
        kind = i % 5
        if kind == 0:
            return app_store.recommend("lightgcn", 1 + i % 30, 5)
        if kind == 1:
            q = BrowseQuery(m=float(i), facets={"genre": (GENRES[i % 3],)}, text="book"[: i % 5])
            frame, total = app_store.browse(q)
            return frame.with_columns(total=pl.lit(total))
        if kind == 2:
            return app_store.search_users(str(i % 9 + 1))
        if kind == 3:
            return app_store.similar_content(isbn_of(i % 3, i % 12), 5)
        return app_store.recommend("ncf", 1 + i % 30, 5)

    serial = [work(i) for i in range(60)]
    with cf.ThreadPoolExecutor(8) as pool:
        concurrent = list(pool.map(work, range(60)))
    assert all(f.height > 0 for f in serial)
    for i, (a, b) in enumerate(zip(serial, concurrent, strict=True)):
        assert a.equals(b), f"request {i} answered differently under concurrency"


@pytest.mark.parametrize("n", [5, 50, 5000])
def test_top_k_is_a_sorted_scan_without_non_finite_scores(n):
    """_top agrees with sorting every finite score (score desc, ISBN asc), whatever NaN/inf it meets."""
    import numpy as np

    rng = np.random.default_rng(n)
    scores = rng.integers(0, 40, n).astype(np.float32)  # many ties
    scores[rng.choice(n, n // 5, replace=False)] = np.nan
    scores[rng.choice(n, n // 5, replace=False)] = -np.inf  # excluded rows (read, the query book)
    scores[rng.choice(n, max(1, n // 50), replace=False)] = np.inf
    isbns = np.array([f"{i:010d}" for i in rng.permutation(n)])
    for k in (1, 3, 10):
        ok = [i for i in range(n) if np.isfinite(scores[i])]
        want = sorted(ok, key=lambda i: (-scores[i], isbns[i]))[:k]
        assert query._top(scores, isbns, k).tolist() == want
    scores[:] = np.nan  # nothing finite: nothing to return
    assert query._top(scores, isbns, 10).size == 0


def test_neighbours_from_lists_and_from_search_agree(app_db, app_store, tmp_path):
    """Precomputed lists (k <= their length) and the vector search (longer k, or a database whose
    lists are empty) give the macros' answers, for content and for every embedding run."""
    import shutil

    books = app_store.book_table()["isbn"].to_list()[::5]
    assert app_store._content_neighbours().k == CONTENT_NEIGHBOURS
    copy = tmp_path / "no_lists.duckdb"
    shutil.copy(app_db, copy)
    con = db.connect(copy)
    con.execute("DELETE FROM book_content_neighbours").fetchall()
    con.execute("DELETE FROM item_neighbours").fetchall()
    con.close()
    bare = query.Store(copy)
    models = app_store.models().filter(pl.col("has_item_embeddings"))["model"].to_list()
    assert models
    try:
        assert bare._content_neighbours() is None
        for isbn in books:
            for k in (3, CONTENT_NEIGHBOURS, CONTENT_NEIGHBOURS + 4):
                want = macro(
                    app_store,
                    "SELECT isbn, similarity FROM similar_books_by_content($i, k := $k) ORDER BY rank",
                    {"i": isbn, "k": k},
                )
                for store in (app_store, bare):
                    got = store.similar_content(isbn, k)
                    assert got["isbn"].to_list() == want["isbn"].to_list(), (isbn, k)
                    assert got["score"].to_list() == pytest.approx(
                        want["similarity"].to_list(), abs=1e-5
                    )
            for model in models:
                for k in (2, ITEM_NEIGHBOURS, ITEM_NEIGHBOURS + 3):
                    want = macro(
                        app_store,
                        "SELECT isbn, score FROM similar_books_model($m, $i, k := $k) ORDER BY rank",
                        {"m": model, "i": isbn, "k": k},
                    )
                    for store in (app_store, bare):
                        got = store.similar_collab(isbn, model, k)
                        assert got["isbn"].to_list() == want["isbn"].to_list(), (model, isbn, k)
                        assert got["score"].to_list() == pytest.approx(
                            want["score"].to_list(), abs=1e-5
                        )
        run = app_store._run(models[0], embeddings=True)["run_id"]
        assert app_store._item_neighbours(run).k == ITEM_NEIGHBOURS
        assert bare._item_neighbours(run) is None
    finally:
        bare.close()


def test_neighbour_lists_refuse_ragged_tables():
    """Lists of unequal length (or none) make the query layer search the vectors instead."""
    ids = pl.DataFrame({"isbn": ["A", "B", "C"]})
    whole = pl.DataFrame({"row": [0, 0, 1, 1, 2, 2], "hit": [1, 2, 0, 2, 0, 1], "score": [0.9] * 6})
    lists = query._neighbour_lists(ids, whole)
    assert lists.k == 2 and lists.isbns[lists.hits[lists.row["C"]]].tolist() == ["A", "B"]
    assert query._neighbour_lists(ids, whole.head(5)) is None
    assert (
        query._neighbour_lists(ids, whole.with_columns(row=pl.Series([0, 0, 0, 1, 2, 2]))) is None
    )
    assert query._neighbour_lists(ids.clear(), whole.clear()) is None


def test_the_default_model_is_the_one_that_wins_on_validation(app_db, tmp_path):
    """Not LightGCN by fiat, and never by test: MF best on valid, LightGCN best on test -> MF."""
    import json
    import shutil

    path = tmp_path / "valid.duckdb"
    shutil.copy(app_db, path)
    con = db.connect(path)
    for model, valid, test in (("lightgcn", 0.20, 0.40), ("mf", 0.30, 0.10)):
        metrics = {"recall@20": test, "valid_recall@20": valid}
        con.execute(
            "UPDATE model_runs SET metrics = ? WHERE model = ? AND is_current",
            [json.dumps(metrics), model],
        )
    assert db.fetch(con, "SELECT model FROM default_model_run")["model"][0] == "mf"
    assert db.fetch(con, "SELECT model FROM default_similar_run")["model"][0] == "mf"
    assert db.fetch(con, "SELECT DISTINCT model FROM recommend(1, k := 3)")["model"][0] == "mf"
    con.close()
    store = query.Store(path)
    try:
        assert store.models()["model"][0] == "mf"
        assert store.recommend(None, 1, 3)["model"][0] == "mf"
    finally:
        store.close()
