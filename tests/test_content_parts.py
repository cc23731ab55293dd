"""`bookrec content` builds book vectors from parts: "title, author" text + author / publisher
identity (+ facets by confidence, off by default), as measured best in cold start (issue 12)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from engine import db
from engine.enrich.zeroshot import author_key
from engine.facets import coldstart, content
from tests.test_facets_sql import topic_vectors

BOOKS = [  # isbn, title, author, publisher, year: A1/A2 share an author, not a topic
    ("A1", "Dragon Fire", "Ann Ash", "Orbit", 1990),
    ("A2", "Murder at Noon", "ANN  ASH.", "Gollancz", 1995),
    ("B1", "Murder in Paris", "Bo Birch", "Penguin", 1999),
    ("C1", "Love in Rome", "Cy Cole", "Orbit", 2001),
    ("C2", "Love in Venice", "Cy Cole", "Penguin", 2003),
]
RATINGS = [(1, "A1", 9), (2, "B1", 8), (2, "C1", 0), (3, "C2", 7)]
FACETS = [("A1", "genre", "Fantasy"), ("A2", "genre", "Mystery"), ("B1", "genre", "Mystery")]


@pytest.fixture()
def con(tmp_path: Path):
    c = db.connect(tmp_path / "parts.duckdb")
    cols = ["isbn", "title", "author", "publisher", "year"]
    with db.transaction(c):
        db.replace_table(c, "books", pl.DataFrame(BOOKS, schema=cols, orient="row"))
        db.replace_table(
            c, "ratings", pl.DataFrame(RATINGS, schema=["user_id", "isbn", "rating"], orient="row")
        )
        db.replace_table(
            c, "book_facets", pl.DataFrame(FACETS, schema=["isbn", "field", "label"], orient="row")
        )
    yield c
    c.close()


def vectors(con) -> dict[str, np.ndarray]:
    emb = db.fetch(con, "SELECT isbn, embedding FROM book_content_embeddings ORDER BY isbn")
    return dict(zip(emb["isbn"], np.array(emb["embedding"].to_numpy(), np.float32), strict=True))


def cos(v: dict[str, np.ndarray], a: str, b: str) -> float:
    return float(v[a] @ v[b])


def test_same_author_unrelated_titles_are_nearer_with_parts(con) -> None:
    content.run(con, content.ContentSettings(vector="text"), encoder=topic_vectors)
    before = vectors(con)
    content.run(con, content.ContentSettings(author_weight=0, publisher_weight=0), encoder=topic_vectors)  # fmt: skip
    naive = vectors(con)
    out = content.run(con, content.ContentSettings(), encoder=topic_vectors)
    parts = vectors(con)
    assert out["encoded"] == 5  # the parts are part of the hash: every book re-encoded
    # "Ann Ash" and "ANN  ASH." are one author: dragon vs murder, yet near (about 1/2)
    assert cos(before, "A1", "A2") < 0.1 and cos(naive, "A1", "A2") < 0.1
    assert cos(parts, "A1", "A2") > 0.4
    # the topic still counts: a murder book by another author stays nearer than a stranger
    assert cos(parts, "A2", "B1") > cos(parts, "A2", "C1")
    # stored vectors keep the table's dimension and unit length
    typ = con.sql(
        "SELECT data_type FROM information_schema.columns WHERE table_name = "
        "'book_content_embeddings' AND column_name = 'embedding'"
    ).fetchall()
    assert typ == [("FLOAT[384]",)]
    assert all(abs(np.linalg.norm(x) - 1) < 1e-5 for x in parts.values())
    # served through the SQL macro and the cold-start path
    got = con.sql("SELECT isbn FROM similar_books_by_content('A1', k := 1)").fetchall()
    assert got == [("A2",)]
    recs = coldstart.recommend_by_content(con, 1, k=1)  # reader 1 read A1 (Ann Ash)
    assert recs["isbn"].to_list() == ["A2"]
    # rerun with the same settings: nothing re-encoded
    again = content.run(con, content.ContentSettings(), encoder=topic_vectors, force=True)
    assert again["encoded"] == 0 and again["reused"] == 5


def test_identity_vectors_are_fixed_per_name_and_empty_for_no_name() -> None:
    keys = [content._key(a) for a in ("J.K. Rowling", "j. k. rowling", None, "-", "Bo Birch")]
    v = content.identity_vectors(keys, "author")
    assert np.allclose(v[0], v[1]) and not v[2].any() and not v[3].any()
    assert keys[0] == author_key("J.K. Rowling")  # the zero-shot labeller's author key
    assert abs(np.linalg.norm(v[0]) - 1) < 1e-6 and abs(float(v[0] @ v[4])) < 0.3
    # the same name gets the same vector in another catalogue; authors and publishers differ
    assert np.allclose(content.identity_vectors([keys[4]], "author")[0], v[4])
    assert not np.allclose(content.identity_vectors([keys[4]], "publisher")[0], v[4])


def test_facets_are_an_optional_part_weighted_by_confidence(con) -> None:
    con.execute(
        "INSERT INTO facet_labels VALUES ('genre', 'mystery', 0, 'Mystery'), "
        "('genre', 'fantasy', 1, 'Fantasy')"
    ).fetchall()
    con.execute(
        "INSERT INTO book_label_confidence VALUES ('A2', 'genre', 'mystery', 0.05)"
    ).fetchall()
    table = content.facet_table(con).sort("isbn")
    assert table["confidence"].to_list() == pytest.approx([1.0, 0.05, 1.0])  # no row: 1.0
    content.run(con, content.ContentSettings(author_weight=0, publisher_weight=0), encoder=topic_vectors)  # fmt: skip
    plain = vectors(con)
    content.run(
        con,
        content.ContentSettings(author_weight=0, publisher_weight=0, facet_weight=0.5),
        encoder=topic_vectors,
    )
    faceted = vectors(con)
    assert not np.allclose(plain["B1"], faceted["B1"])  # B1 has a facet: its part moved it
    assert np.allclose(plain["C1"], faceted["C1"], atol=1e-6)  # no facet: unchanged
    assert content.ContentSettings().facet_weight == 0  # measured to hurt: off by default
    with pytest.raises(ValueError, match="author_weight"):
        content.ContentSettings(author_weight=-1)


def test_a_low_confidence_facet_moves_a_book_less(con) -> None:
    con.execute("INSERT INTO facet_labels VALUES ('genre', 'mystery', 0, 'Mystery')").fetchall()
    con.execute(
        "INSERT INTO book_label_confidence VALUES ('A2', 'genre', 'mystery', 0.05)"
    ).fetchall()
    off = content.ContentSettings(author_weight=0, publisher_weight=0)
    on = content.ContentSettings(author_weight=0, publisher_weight=0, facet_weight=1.0)
    content.run(con, off, encoder=topic_vectors)
    plain = vectors(con)
    content.run(con, on, encoder=topic_vectors)
    faceted = vectors(con)
    moved = {i: 1 - cos({"a": plain[i], "b": faceted[i]}, "a", "b") for i in ("A2", "B1")}
    assert moved["A2"] < moved["B1"] / 10  # same label, confidence 0.05 vs 1.0 (no row)


def test_the_neighbour_search_settings_are_part_of_the_fingerprint(con, monkeypatch) -> None:
    """Lists searched another way (exact vs approximate above [neighbours] exact_max) are redone."""
    content.run(con, content.ContentSettings(), encoder=topic_vectors)
    again = content.run(con, content.ContentSettings(), encoder=topic_vectors)
    assert again["status"] == "up to date"
    monkeypatch.setenv("BOOKREC_NEIGHBOURS_EXACT_MAX", "3")
    redone = content.run(con, content.ContentSettings(), encoder=topic_vectors)
    assert redone["status"] == "done"
