"""SQL views over the core tables, each checked against an independent Polars computation."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from engine import db


def _dataset(seed: int = 7) -> dict[str, pl.DataFrame]:
    """Random books/users/ratings with implicit zeros, unknown ISBNs, unknown users and unrated books."""
    rng = np.random.default_rng(seed)
    isbns = [f"B{i:04d}" for i in range(120)]
    books = pl.DataFrame(
        {
            "isbn": isbns,
            "title": [f"Title {i}" for i in range(120)],
            "year": rng.integers(1950, 2005, 120).astype(np.int16),
            "isbn_kind": "other",
            "isbn_valid": rng.random(120) < 0.9,
        }
    )
    users = pl.DataFrame(
        {
            "user_id": np.arange(1, 61, dtype=np.int32),
            "country": rng.choice(["usa", "canada", "germany"], 60),
            "age": pl.Series(rng.integers(10, 80, 60), dtype=pl.Int16).scatter([0, 5, 9], None),
        }
    )
    # ratings: 70 users (10 unknown) x books incl. 10 ISBNs not in books; books B0100.. stay unrated
    pairs = {
        (int(u), f"B{int(b):04d}")
        for u, b in zip(rng.integers(1, 71, 1500), rng.integers(0, 100, 1500), strict=True)
    }
    pairs |= {
        (int(u), f"Z{int(b):03d}")
        for u, b in zip(rng.integers(1, 71, 60), rng.integers(0, 10, 60), strict=True)
    }
    pairs_l = sorted(pairs)
    ratings = pl.DataFrame(
        {
            "user_id": np.array([p[0] for p in pairs_l], dtype=np.int32),
            "isbn": [p[1] for p in pairs_l],
            "rating": np.where(
                rng.random(len(pairs_l)) < 0.6, 0, rng.integers(1, 11, len(pairs_l))
            ).astype(np.int8),
        }
    )
    return {"books": books, "users": users, "ratings": ratings}


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory):
    data = _dataset()
    con = db.connect(Path(tmp_path_factory.mktemp("views")) / "v.duckdb")
    with db.transaction(con):
        for table, frame in data.items():
            db.replace_table(con, table, frame)
    yield con, data
    con.close()


def _expected_popular(data: dict[str, pl.DataFrame], m: float) -> pl.DataFrame:
    r = data["ratings"]
    c = r.filter(pl.col("rating") > 0)["rating"].cast(pl.Float64).mean()
    per_book = r.group_by("isbn").agg(
        (pl.col("rating") > 0).sum().alias("v"),
        pl.col("rating").filter(pl.col("rating") > 0).cast(pl.Float64).mean().alias("R"),
        (pl.col("rating") == 0).sum().alias("n_implicit"),
        pl.len().alias("n_interactions"),
    )
    out = (
        data["books"]
        .select("isbn")
        .join(per_book, on="isbn", how="left")
        .with_columns(pl.col("v", "n_implicit", "n_interactions").fill_null(0))
    )
    out = out.with_columns(
        (
            pl.col("v") / (pl.col("v") + m) * pl.col("R").fill_null(c) + m / (pl.col("v") + m) * c
        ).alias("score")
    )
    return out.sort(
        ["score", "n_interactions", "isbn"], descending=[True, True, False]
    ).with_row_index("rank", 1)


@pytest.mark.parametrize("m", [50, 2])
def test_popular_books_matches_bayesian_formula(loaded, m: int) -> None:
    con, data = loaded
    sql = (
        "SELECT * FROM popular_books ORDER BY rank"
        if m == 50
        else "SELECT * FROM popular_books_m(m := $m) ORDER BY rank"
    )
    got = db.fetch(con, sql, {"m": m} if m != 50 else None)
    want = _expected_popular(data, m)
    assert got.height == data["books"].height
    assert got["isbn"].to_list() == want["isbn"].to_list()
    assert got["rank"].to_list() == want["rank"].to_list()
    np.testing.assert_allclose(got["score"].to_numpy(), want["score"].to_numpy(), rtol=1e-12)
    assert got["n_explicit"].to_list() == want["v"].to_list()
    assert got["n_implicit"].to_list() == want["n_implicit"].to_list()
    # A book nobody rated scores exactly the global mean C.
    c = data["ratings"].filter(pl.col("rating") > 0)["rating"].cast(pl.Float64).mean()
    unrated = got.filter(pl.col("n_interactions") == 0)
    assert unrated.height == 20 and np.allclose(unrated["score"].to_numpy(), c)


@pytest.mark.parametrize(
    ("m", "want"),
    [
        # C = (10 + 4*6 + 5*8) / 10 = 7.4; score = (sum of ratings + m*C) / (v + m)
        (50, [("C", 410 / 55), ("A", 380 / 51), ("D", 7.4), ("B", 394 / 54)]),
        (1, [("A", 17.4 / 2), ("C", 47.4 / 6), ("D", 7.4), ("B", 31.4 / 5)]),
        (0, [("A", 10.0), ("C", 8.0), ("D", 7.4), ("B", 6.0)]),
    ],
)
def test_popular_books_on_known_numbers(tmp_path: Path, m: int, want) -> None:
    """A: one 10; B: four 6s; C: five 8s and two implicit reads; D: unrated (scores C exactly).
    A small m trusts A's single 10; m = 50 pulls it to the mean, so C's five 8s win."""
    rows = [(1, "A", 10)] + [(u, "B", 6) for u in range(1, 5)]
    rows += [(u, "C", 8) for u in range(1, 6)] + [(6, "C", 0), (7, "C", 0)]
    ratings = pl.DataFrame(rows, schema=["user_id", "isbn", "rating"], orient="row").cast(
        {"user_id": pl.Int32, "rating": pl.Int8}
    )
    books = pl.DataFrame({"isbn": list("ABCD"), "isbn_kind": "other", "isbn_valid": True})
    con = db.connect(tmp_path / "known.duckdb")
    with db.transaction(con):
        db.replace_table(con, "books", books)
        db.replace_table(con, "ratings", ratings)
    sql = "SELECT rank, isbn, score, n_explicit, n_implicit FROM popular_books_m(m := $m) ORDER BY rank"
    got = db.fetch(con, sql, {"m": m})
    assert got["isbn"].to_list() == [isbn for isbn, _ in want]
    assert got["rank"].to_list() == [1, 2, 3, 4]
    np.testing.assert_allclose(got["score"].to_numpy(), [x for _, x in want], rtol=1e-12)
    counts = dict(
        zip(got["isbn"], zip(got["n_explicit"], got["n_implicit"], strict=True), strict=True)
    )
    assert counts == {"A": (1, 0), "B": (4, 0), "C": (5, 2), "D": (0, 0)}
    if m == 50:
        view = db.fetch(con, "SELECT isbn, score FROM popular_books ORDER BY rank")
        assert view["isbn"].to_list() == got["isbn"].to_list()
    con.close()


def test_book_stats(loaded) -> None:
    con, data = loaded
    got = db.fetch(con, "SELECT * FROM book_stats ORDER BY isbn")
    r = data["ratings"]
    want = (
        r.group_by("isbn")
        .agg(
            pl.len().alias("n_interactions"),
            (pl.col("rating") > 0).sum().alias("n_explicit"),
            (pl.col("rating") == 0).sum().alias("n_implicit"),
            pl.col("rating")
            .filter(pl.col("rating") > 0)
            .cast(pl.Float64)
            .mean()
            .alias("mean_rating"),
        )
        .with_columns(pl.col("isbn").is_in(data["books"]["isbn"].implode()).alias("in_books"))
        .sort("isbn")
    )
    assert (
        got.select("isbn", "n_interactions", "n_explicit", "n_implicit", "in_books").rows()
        == want.select("isbn", "n_interactions", "n_explicit", "n_implicit", "in_books").rows()
    )
    np.testing.assert_allclose(
        got["mean_rating"].fill_null(-1).to_numpy(), want["mean_rating"].fill_null(-1).to_numpy()
    )
    assert got.filter(~pl.col("in_books"))["isbn"].str.starts_with("Z").all()


def test_user_stats(loaded) -> None:
    con, data = loaded
    got = db.fetch(con, "SELECT * FROM user_stats ORDER BY user_id")
    want = (
        data["ratings"]
        .group_by("user_id")
        .agg(
            pl.len().alias("n_interactions"),
            (pl.col("rating") > 0).sum().alias("n_explicit"),
            (pl.col("rating") == 0).sum().alias("n_implicit"),
        )
        .join(data["users"], on="user_id", how="left")
        .with_columns(pl.col("user_id").is_in(data["users"]["user_id"].implode()).alias("in_users"))
        .sort("user_id")
    )
    cols = ["user_id", "n_interactions", "n_explicit", "n_implicit", "age", "country", "in_users"]
    assert got.select(cols).rows() == want.select(cols).rows()
    assert got.filter(~pl.col("in_users"))["user_id"].min() > 60


def test_dataset_stats(loaded) -> None:
    con, data = loaded
    got = db.fetch(con, "SELECT * FROM dataset_stats").row(0, named=True)
    b, u, r = data["books"], data["users"], data["ratings"]
    n_users_active, n_isbns = r["user_id"].n_unique(), r["isbn"].n_unique()
    assert (
        got["n_books"] == b.height and got["n_users"] == u.height and got["n_ratings"] == r.height
    )
    assert (
        got["n_explicit"] == (r["rating"] > 0).sum()
        and got["n_implicit"] == (r["rating"] == 0).sum()
    )
    assert got["mean_explicit_rating"] == pytest.approx(
        r.filter(pl.col("rating") > 0)["rating"].cast(pl.Float64).mean()
    )
    assert got["n_active_users"] == n_users_active and got["n_rated_isbns"] == n_isbns
    assert got["n_ratings_unknown_book"] == (~r["isbn"].is_in(b["isbn"].implode())).sum()
    assert got["n_ratings_unknown_user"] == (~r["user_id"].is_in(u["user_id"].implode())).sum()
    assert got["n_books_invalid_isbn"] == (~b["isbn_valid"]).sum()
    assert got["n_users_no_age"] == 3
    assert got["density"] == pytest.approx(r.height / (n_users_active * n_isbns))


def test_dataset_stats_counts_rejects_of_the_last_ingest_only(tmp_path: Path) -> None:
    con = db.connect(tmp_path / "r.duckdb")
    t0 = dt.datetime(2024, 1, 1)
    for i, n in enumerate((5, 2)):
        run_id = f"run{i}"
        db.execute(
            con,
            "ingest_run_insert",
            {
                "run_id": run_id,
                "started_at": t0 + dt.timedelta(hours=i),
                "finished_at": t0 + dt.timedelta(hours=i, minutes=1),
                "fingerprint": "f",
                "files": json.dumps({}),
                "counts": json.dumps({}),
            },
        )
        db.append_table(
            con,
            "rejected_rows",
            pl.DataFrame(
                {
                    "run_id": [run_id] * n,
                    "source": ["ratings"] * n,
                    "line": list(range(n)),
                    "reason": ["x"] * n,
                    "raw": ["r"] * n,
                }
            ),
        )
    assert db.fetch(con, "SELECT n_rejected_last_ingest FROM dataset_stats").item() == 2


def test_views_on_an_empty_database(tmp_path: Path) -> None:
    con = db.connect(tmp_path / "e.duckdb")
    stats = db.fetch(con, "SELECT * FROM dataset_stats").row(0, named=True)
    assert (
        stats["n_books"] == 0 and stats["mean_explicit_rating"] is None and stats["density"] is None
    )
    assert db.fetch(con, "SELECT count(*) FROM popular_books").item() == 0
