"""Golden tests of the recommend / similar_books table macros on a hand-made database."""

from __future__ import annotations

import polars as pl
import pytest

from engine import db

BOOKS = [("A", "Alpha"), ("B", "Bravo"), ("C", "Charlie"), ("D", "Delta"), ("E", "Echo")]
# user 1 rated A and B; user 2 rated A (implicit); B has the best mean rating
RATINGS = [(1, "A", 8), (1, "B", 9), (2, "A", 0), (3, "B", 10), (3, "C", 2)]


@pytest.fixture()
def con(tmp_path):
    con = db.connect(tmp_path / "m.duckdb")
    with db.transaction(con):
        db.replace_table(
            con,
            "books",
            pl.DataFrame(
                {"isbn": [b for b, _ in BOOKS], "title": [t for _, t in BOOKS], "author": "X"}
            ),
        )
        db.replace_table(
            con,
            "ratings",
            pl.DataFrame(
                RATINGS,
                schema={"user_id": pl.Int32, "isbn": pl.Utf8, "rating": pl.Int8},
                orient="row",
            ),
        )
        con.execute(
            "INSERT INTO model_runs (run_id, model, params, metrics, data_fingerprint, started_at, finished_at,"
            " is_current, scoring, dim) VALUES"
            " ('mf-1', 'mf', '{}', '{\"recall@20\": 0.5, \"valid_recall@20\": 0.4}', 'f', now(), now(), true, 'embedding', 2),"
            " ('ncf-1', 'ncf', '{}', '{\"recall@20\": 0.3, \"valid_recall@20\": 0.9}', 'f', now(), now(), true, 'topn', NULL),"
            " ('pop-1', 'popularity', '{}', '{\"recall@20\": 0.1}', 'f', now(), now(), true, 'topn', NULL)"
        )
        con.execute(
            "INSERT INTO user_embeddings VALUES ('mf-1', 1, [1.0, 0.0]), ('mf-1', 2, [0.0, 1.0])"
        )
        con.execute(
            "INSERT INTO item_embeddings VALUES ('mf-1', 'A', [1.0, 0.0]), ('mf-1', 'B', [2.0, 0.0]),"
            " ('mf-1', 'C', [0.5, 0.5]), ('mf-1', 'D', [0.9, -1.0]), ('mf-1', 'E', [-1.0, 3.0])"
        )
        con.execute(
            "INSERT INTO recommendations VALUES ('ncf-1', 1, 1, 'B', 0.9), ('ncf-1', 1, 2, 'E', 0.8),"
            " ('ncf-1', 1, 3, 'D', 0.7), ('pop-1', NULL, 1, 'B', 3), ('pop-1', NULL, 2, 'A', 2),"
            " ('pop-1', NULL, 3, 'C', 1)"
        )
    yield con
    con.close()


def rows(con, sql: str) -> list[tuple]:
    return [tuple(r) for r in db.fetch(con, sql).rows()]


def test_recommend_model_ranks_by_inner_product_and_excludes_rated(con) -> None:
    got = rows(
        con,
        "SELECT rank, isbn, title, score, source, model, run_id FROM recommend_model('mf', 1, k := 3)",
    )
    # user 1 = [1, 0]: scores C 0.5, D 0.9, E -1.0; A and B are rated
    assert got == [
        (1, "D", "Delta", pytest.approx(0.9), "model", "mf", "mf-1"),
        (2, "C", "Charlie", 0.5, "model", "mf", "mf-1"),
        (3, "E", "Echo", -1.0, "model", "mf", "mf-1"),
    ]
    assert [r[1] for r in rows(con, "SELECT * FROM recommend_model('mf', 2, k := 2)")] == [
        "E",
        "C",
    ]  # A rated (implicit 0)


def test_recommend_falls_back_to_popular_books_for_unknown_users(con) -> None:
    got = rows(
        con,
        "SELECT rank, isbn, source, model, run_id FROM recommend_model('mf', 999999999, k := 10)",
    )
    expected = rows(con, "SELECT isbn FROM popular_books WHERE n_interactions > 0 ORDER BY rank")
    assert [r[1] for r in got] == [e[0] for e in expected] == ["B", "A", "C"]
    assert {(r[2], r[3], r[4]) for r in got} == {("popularity_fallback", "popular_books", None)}
    assert [r[0] for r in got] == [1, 2, 3]
    # a rated user without an embedding: fallback, still without their rated books
    got3 = rows(con, "SELECT isbn, source FROM recommend_model('mf', 3, k := 10)")
    assert got3 == [("A", "popularity_fallback")]


def test_recommend_uses_precomputed_lists_for_topn_models(con) -> None:
    assert rows(con, "SELECT isbn, score, source FROM recommend_model('ncf', 1, k := 2)") == [
        ("E", 0.8, "model"),
        ("D", 0.7, "model"),
    ]  # B was rated by user 1
    # popularity: one list (user_id NULL) for everyone, rated books removed
    assert [r[0] for r in rows(con, "SELECT isbn FROM recommend_model('popularity', 2)")] == [
        "B",
        "C",
    ]
    assert [r[0] for r in rows(con, "SELECT isbn FROM recommend_model('popularity', 424242)")] == [
        "B",
        "A",
        "C",
    ]


def test_default_model_is_the_one_that_wins_on_validation(con) -> None:
    # ncf is best on valid (0.9), mf on test (0.5): test never picks the default
    assert rows(con, "SELECT model FROM default_model_run") == [("ncf",)]
    assert rows(con, "SELECT DISTINCT model FROM recommend(1)") == [("ncf",)]
    con.execute(
        "INSERT INTO model_runs (run_id, model, params, metrics, data_fingerprint, started_at, is_current,"
        " scoring) VALUES ('lg-1', 'lightgcn', '{}', '{\"recall@20\": 0.99}', 'f', now(), true, 'embedding')"
    )
    assert rows(con, "SELECT model FROM default_model_run") == [("ncf",)]  # no valid metric: last
    con.execute(
        "UPDATE model_runs SET metrics = '{\"valid_recall@20\": 0.95}' WHERE run_id = 'lg-1'"
    )
    assert rows(con, "SELECT model FROM default_model_run") == [("lightgcn",)]
    # lightgcn has no embedding for user 1 yet: the answer says it is a fallback
    assert rows(con, "SELECT DISTINCT source FROM recommend(1)") == [("popularity_fallback",)]


def test_similar_books_by_cosine_excludes_the_book_itself(con) -> None:
    got = rows(
        con,
        "SELECT rank, isbn, title, round(score, 4), model, run_id FROM similar_books('a', k := 3)",
    )
    assert got == [
        (1, "B", "Bravo", 1.0, "mf", "mf-1"),
        (2, "C", "Charlie", 0.7071, "mf", "mf-1"),
        (3, "D", "Delta", 0.6690, "mf", "mf-1"),
    ]
    assert "A" not in [
        r[1] for r in rows(con, "SELECT * FROM similar_books_model('mf', 'A', k := 10)")
    ]
    assert rows(con, "SELECT * FROM similar_books('NOPE')") == []
    assert rows(con, "SELECT * FROM similar_books_model('ncf', 'A')") == []  # no item embeddings


def test_macros_need_nothing_but_sql(con, tmp_path) -> None:
    """An analyst's DuckDB session: a plain duckdb connection (no bookrec code) answers the macros."""
    import duckdb

    path = db.fetch(
        con, "SELECT path FROM duckdb_databases() WHERE database_name = current_database()"
    )["path"][0]
    con.close()
    plain = duckdb.connect(path, read_only=True)
    assert plain.execute("SELECT isbn FROM recommend(999, k := 1)").fetchall() == [("B",)]
    assert plain.execute("SELECT count(*) FROM similar_books('A')").fetchall() == [(4,)]
    plain.close()
