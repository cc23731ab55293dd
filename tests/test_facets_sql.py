"""Facet SQL (views and macros, called as plain SQL), content embeddings and cold start."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from engine import db, neighbours, pipeline
from engine.errors import UnknownEntityError
from engine.facets import coldstart, content

BOOKS = [  # isbn, title, author, year
    ("D1", "Dragon Fire", "Ann Ash", 1990),
    ("D2", "Dragon Song", "Ann Ash", 2001),
    ("D3", "Dragon Dawn", "Bo Birch", 2004),  # new: nobody has rated it
    ("M1", "Murder at Noon", "Cy Cole", 1985),
    ("M2", "Murder in Paris", "Cy Cole", 1999),
    ("M3", "Murder Again", "Di Dane", 2003),  # new
    ("R1", "Love in Rome", "Ed Eve", 1995),
]
FACETS = [  # isbn, field, label
    ("D1", "genre", "Fantasy"),
    ("D1", "tone", "Dark"),
    ("D2", "genre", "Fantasy"),
    ("D2", "tone", "Epic"),
    ("D3", "genre", "Fantasy"),
    ("M1", "genre", "Mystery"),
    ("M1", "tone", "Dark"),
    ("M2", "genre", "Mystery"),
    ("M2", "genre", "Thriller"),
    ("M2", "tone", "Dark"),
    ("M3", "genre", "Mystery"),
    ("R1", "genre", "Romance"),
    ("R1", "tone", "Light"),
]
RATINGS = [  # user, isbn, rating
    (1, "D1", 9),
    (1, "D2", 8),
    (2, "M1", 10),
    (2, "M2", 7),
    (2, "R1", 0),
    (3, "R1", 8),
    (3, "D1", 3),
    (4, "M1", 6),
    (4, "D2", 9),
    (4, "R1", 5),
]
TOPICS = ("dragon", "murder", "love")


def topic_vectors(texts: list[str]) -> np.ndarray:
    """Encoder with known geometry: one axis per topic word found in the text, plus a small jitter."""
    out = np.zeros((len(texts), 384), dtype=np.float32)
    for i, t in enumerate(texts):
        for j, word in enumerate(TOPICS):
            out[i, j] = float(word in t.lower())
        out[i, 3 + i % 300] = 0.05
        out[i] /= np.linalg.norm(out[i])
    return out


@pytest.fixture()
def con(tmp_path: Path):
    c = db.connect(tmp_path / "sql.duckdb")
    with db.transaction(c):
        db.replace_table(
            c,
            "books",
            pl.DataFrame(BOOKS, schema=["isbn", "title", "author", "year"], orient="row"),
        )
        db.replace_table(
            c, "ratings", pl.DataFrame(RATINGS, schema=["user_id", "isbn", "rating"], orient="row")
        )
        db.replace_table(
            c, "book_facets", pl.DataFrame(FACETS, schema=["isbn", "field", "label"], orient="row")
        )
        db.replace_table(
            c,
            "facet_labels",
            pl.DataFrame(
                [
                    ("genre", "fantasy", 0, "Fantasy"),
                    ("genre", "Fantasy", 0, "Fantasy"),
                    ("genre", "Mystery", 1, "Mystery"),
                ],
                schema=["field", "raw_label", "cluster_id", "label"],
                orient="row",
            ),
        )
    yield c
    c.close()


def rows(con, sql: str) -> list[tuple]:
    return con.sql(sql).fetchall()


def test_facet_counts(con) -> None:
    got = rows(
        con,
        "SELECT field, label, n_books, share, n_raw_labels, rank_in_field FROM facet_counts "
        "WHERE field = 'genre' ORDER BY rank_in_field",
    )
    assert got == [
        ("genre", "Fantasy", 3, 3 / 7, 2, 1),
        ("genre", "Mystery", 3, 3 / 7, 1, 2),
        ("genre", "Romance", 1, 1 / 7, 0, 3),
        ("genre", "Thriller", 1, 1 / 7, 0, 4),
    ]


def test_facet_cooccurrence_counts_and_lift(con) -> None:
    got = {
        (r[1], r[3]): (r[4], r[5])
        for r in rows(
            con,
            "SELECT field_a, label_a, field_b, label_b, n_books, lift FROM facet_pairs('genre', 'tone')",
        )
    }
    # 7 books with facets; Mystery on 3, Dark on 3, together on 2 -> lift 2 * 7 / (3 * 3)
    assert got[("Mystery", "Dark")] == (2, pytest.approx(14 / 9))
    assert got[("Fantasy", "Dark")] == (1, pytest.approx(7 / 9))
    assert ("Romance", "Dark") not in got
    same = rows(
        con,
        "SELECT label_b, n_books FROM facet_cooccurrence WHERE field_a='genre' AND field_b='genre' "
        "AND label_a='Mystery'",
    )
    assert same == [("Thriller", 1)]  # same field allowed, never a label with itself


def test_facet_search_semantics(con) -> None:
    def isbns(sql_args: str) -> list[str]:
        return [r[0] for r in rows(con, f"SELECT isbn FROM facet_search({sql_args})")]

    assert sorted(isbns("filters := [{'field': 'genre', 'label': 'fantasy'}]")) == [
        "D1",
        "D2",
        "D3",
    ]
    # OR within a field, AND across fields
    assert sorted(
        isbns(
            "filters := [{'field':'genre','label':'Fantasy'}, {'field':'genre','label':'Mystery'},"
            " {'field':'tone','label':'Dark'}]"
        )
    ) == ["D1", "M1", "M2"]
    assert sorted(
        isbns(
            "filters := [{'field':'genre','label':'Mystery'}], year_min := 1990, year_max := 2003"
        )
    ) == ["M2", "M3"]
    assert sorted(isbns("filters := [{'field':'genre','label':'Mystery'}], min_ratings := 1")) == [
        "M1",
        "M2",
    ]
    assert len(isbns("")) == len(BOOKS)  # no filters: every book
    assert isbns("filters := [{'field':'genre','label':'Nope'}]") == []
    assert len(isbns("k := 2")) == 2


def test_facet_search_orders_by_bayesian_score(con) -> None:
    got = rows(
        con,
        "SELECT isbn, score, matched FROM facet_search(filters := [{'field':'genre','label':'Mystery'}], m := 1)",
    )
    c = np.mean([r for _, _, r in RATINGS if r > 0])
    m1 = (2 / 3) * 8.0 + (1 / 3) * c  # M1: ratings 10, 6
    m2 = (1 / 2) * 7.0 + (1 / 2) * c
    # M2's mean 7 is below the global mean, so the unrated M3 (score = C) outranks it
    assert [g[0] for g in got] == ["M1", "M3", "M2"]
    assert [g[1] for g in got] == [pytest.approx(m1), pytest.approx(c), pytest.approx(m2)]
    assert got[0][2] == "genre=Mystery"


def test_facet_popularity_and_cold_start_reader(con) -> None:
    top = rows(
        con,
        "SELECT isbn, rank_in_facet FROM facet_popularity WHERE field='genre' AND label='Fantasy' "
        "ORDER BY rank_in_facet",
    )
    assert top == [
        ("D2", 1),
        ("D3", 2),
        ("D1", 3),
    ]  # D1 (9 and 3) is below the prior; D3 sits on it
    reader = coldstart.for_new_reader(con, {"genre": ["Fantasy", "Romance"], "tone": "Light"}, k=5)
    assert reader["isbn"].to_list() == ["R1"]
    same = rows(
        con,
        "SELECT isbn FROM cold_start_reader(filters := [{'field':'genre','label':'Fantasy'}], k := 1)",
    )
    assert same == [(top[0][0],)]
    via_python = coldstart.facet_search(con, [("genre", "Mystery")], min_ratings=1)
    assert sorted(via_python["isbn"]) == ["M1", "M2"]


def test_content_stage_embeds_books_and_profiles(con) -> None:
    out = content.run(con, content.ContentSettings(), encoder=topic_vectors)
    assert out == {**out, "status": "done", "books": 7, "encoded": 7, "readers": 4}
    typ = rows(
        con,
        "SELECT data_type FROM information_schema.columns WHERE table_name = "
        "'book_content_embeddings' AND column_name = 'embedding'",
    )
    assert typ == [("FLOAT[384]",)]
    text = content.content_texts(db.query(con, "content_inputs", {"all_books": True})).filter(
        pl.col("isbn") == "M2"
    )
    assert (
        text["text"][0]
        == "Murder in Paris by Cy Cole (1999). genre: Mystery, Thriller; tone: Dark."
    )
    assert (
        content.run(con, content.ContentSettings(), encoder=topic_vectors)["status"] == "up to date"
    )
    # a changed title re-encodes that book only
    con.execute("UPDATE books SET title = 'Dragon Dusk' WHERE isbn = 'D3'").fetchall()
    again = content.run(con, content.ContentSettings(), encoder=topic_vectors)
    assert (again["encoded"], again["reused"]) == (1, 6)
    assert pipeline.last_run(con, "content").summary["encoded"] == 1


def test_similar_books_by_content(con) -> None:
    content.run(con, content.ContentSettings(), encoder=topic_vectors)
    got = rows(con, "SELECT isbn FROM similar_books_by_content('D1', k := 2)")
    assert sorted(got) == [("D2",), ("D3",)]
    assert coldstart.readers_for_book(con, "M3", k=1)["user_id"].to_list() == [2]


def test_unrated_book_appears_in_a_readers_list(con) -> None:
    content.run(con, content.ContentSettings(), encoder=topic_vectors)
    recs = coldstart.recommend_by_content(con, 1, k=3)
    assert recs["isbn"][0] == "D3" and recs["n_interactions"][0] == 0  # zero ratings, ranked first
    assert not set(recs["isbn"]) & {"D1", "D2"}  # already read
    # the new book's best readers are the dragon readers, not those who rated it low
    readers = rows(con, "SELECT user_id FROM cold_start_book('D3', k := 2)")
    assert readers == [(1,), (4,)]
    # user 3 rated D1 a 3: a dislike stays out of the profile (profile_min_rating 6)
    prof = rows(con, "SELECT n_books FROM user_content_profiles WHERE user_id = 3")
    assert prof == [(1,)]
    with pytest.raises(UnknownEntityError):
        coldstart.recommend_by_content(con, 999)
    with pytest.raises(UnknownEntityError):
        coldstart.readers_for_book(con, "NOPE")


def test_cold_book_recall_beats_random_on_planted_topics() -> None:
    rng = np.random.default_rng(0)
    n_books, n_users = 200, 120
    topic = rng.integers(0, 3, n_books)
    isbns = [f"B{i:03}" for i in range(n_books)]
    texts = [f"{TOPICS[t]} book {i}" for i, t in enumerate(topic)]
    vectors = topic_vectors(texts)
    likes = rng.integers(0, 3, n_users)
    inter = [
        (u, isbns[b])
        for u in range(n_users)
        for b in rng.choice(np.flatnonzero(topic == likes[u]), 8)
    ]
    frame = pl.DataFrame(inter, schema=["user_id", "isbn"], orient="row").unique()
    train, held = coldstart.split_cold_books(frame, 0.1, seed=0)
    assert train.join(held, on="isbn").is_empty() and held.height > 0
    res = coldstart.cold_book_recall(train, held, isbns, vectors, k=5, seed=0)
    assert res["n_users"] > 0 and res["recall_content"] > 2 * res["recall_random"]
    res_all = coldstart.cold_book_recall(train, held, isbns, vectors, k=20, candidates="all")
    assert (
        res_all["n_candidates"] == n_books and res_all["recall_content"] > res_all["recall_random"]
    )


def test_content_neighbours_are_an_exact_search_with_isbn_ties() -> None:
    """nearest_neighbours equals sorting every other book by (score desc, ISBN asc), block by block."""
    rng = np.random.default_rng(7)
    n, d = 700, 24
    vecs = rng.standard_normal((n, d)).astype(np.float32)
    vecs[50] = vecs[10]  # exact duplicates: tied scores everywhere
    vecs[51] = vecs[10]
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    isbns = [f"{x:010d}" for x in rng.permutation(n)]
    got = neighbours.nearest(isbns, vecs, 5)
    assert got.height == n * 5 and got["rank"].to_list()[:5] == [1, 2, 3, 4, 5]
    sims = vecs @ vecs.T
    for row in list(range(0, n, 37)) + [10, 50, 51]:
        others = [j for j in range(n) if j != row]
        want = sorted(others, key=lambda j: (-round(float(sims[row, j]), 6), isbns[j]))[:5]
        mine = got.filter(pl.col("isbn") == isbns[row]).sort("rank")
        assert mine["neighbour"].to_list() == [isbns[j] for j in want], row
        assert mine["score"].to_list() == pytest.approx([sims[row, j] for j in want], abs=1e-5)
    assert neighbours.nearest(isbns[:1], vecs[:1], 5).is_empty()


def test_content_stage_writes_neighbours_that_match_the_macro(con) -> None:
    out = content.run(con, content.ContentSettings(neighbours=3), encoder=topic_vectors)
    assert out["neighbours"] == 3 * out["books"]
    for isbn in rows(con, "SELECT isbn FROM book_content_embeddings ORDER BY isbn LIMIT 4"):
        stored = con.execute(
            "SELECT neighbour FROM book_content_neighbours WHERE isbn = $i ORDER BY rank",
            {"i": isbn[0]},
        ).fetchall()
        macro = con.execute(
            "SELECT isbn FROM similar_books_by_content($i, k := 3)", {"i": isbn[0]}
        ).fetchall()
        assert stored == macro
