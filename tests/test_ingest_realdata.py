"""Ingest the real Book-Crossing subset in ../shared/data/bookcrossing (skipped when absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine import db
from engine.ingest import IngestSettings, run

pytestmark = pytest.mark.realdata


def test_real_bookcrossing_subset(tmp_path: Path, shared_data: Path) -> None:
    src = shared_data / "bookcrossing"
    con = db.connect(tmp_path / "real.duckdb")
    res = run(con, IngestSettings(), src / "Books.csv", src / "Ratings.csv", src / "Users.csv")
    c = res.counts
    assert (c["books"]["read"], c["users"]["read"], c["ratings"]["read"]) == (
        18_185,
        48_299,
        204_164,
    )
    assert c["rejected_total"] == 0
    # 18,185 book rows; '039592720x' and '039592720X' are the same book once the X is upper-cased.
    assert c["books"]["duplicates"] == 1
    stats = db.fetch(
        con, "SELECT n_books, n_users, n_ratings, n_ratings_unknown_book FROM dataset_stats"
    ).row(0)
    assert stats == (18_184, 48_299, 204_164, 0)
    assert {f["format"] for f in res.files.values()} == {"kaggle", "split"}
    assert res.files["users"]["format"] == "split"
    # Stray quotes gone from countries and ages; the 'n/a' states are NULL.
    assert (
        db.fetch(
            con, "SELECT count(*) FROM users WHERE country LIKE '%\"%' OR state = 'n/a'"
        ).item()
        == 0
    )
    assert db.fetch(con, "SELECT country FROM users WHERE user_id = 8").item() == "canada"
    assert db.fetch(con, "SELECT age FROM users WHERE user_id = 19").item() == 14
    assert (
        db.fetch(con, "SELECT author FROM books WHERE isbn = '0156528207'").item()
        == "Antoine de Saint-Exupéry"
    )
    assert (
        db.fetch(con, "SELECT count(*) FROM books WHERE year IS NULL").item()
        == c["books"]["years_out_of_range"]
    )
    assert run(
        con, IngestSettings(), src / "Books.csv", src / "Ratings.csv", src / "Users.csv"
    ).skipped
