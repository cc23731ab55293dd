"""Latency of the recommend / similar_books SQL macros at full Book-Crossing size (synthetic numbers).

271k books, 105k users, 1.15M ratings, 64-d embeddings for every user and book, in a temp DuckDB
file; times recommend(user) for a known and an unknown user and similar_books(isbn), median of 15.
Run: flock /tmp/bookrec-bench.lock .venv/bin/python bench/recommend_macro.py
"""

from __future__ import annotations

import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

from engine import db
from engine.models import runs

N_BOOKS, N_USERS, N_RATINGS, DIM, REPEAT = 271_000, 105_000, 1_150_000, 64, 15


def build(path: Path) -> tuple[int, str]:
    """Fill a fresh bookrec DB with synthetic books, ratings, one current run with embeddings."""
    rng = np.random.default_rng(0)
    con = db.connect(path)
    isbns = [f"{i:09d}X" for i in range(N_BOOKS)]
    books = pl.DataFrame(
        {"isbn": isbns, "title": [f"Title {i}" for i in range(N_BOOKS)], "author": "someone"}
    )
    users = rng.integers(1, N_USERS + 1, N_RATINGS)
    items = np.minimum(rng.zipf(1.3, N_RATINGS), N_BOOKS) - 1  # long tail like the real data
    ratings = pl.DataFrame(
        {
            "user_id": users.astype(np.int32),
            "isbn": np.array(isbns)[items],
            "rating": rng.integers(0, 11, N_RATINGS).astype(np.int8),
        }
    ).unique(["user_id", "isbn"])
    emb_u = rng.standard_normal((N_USERS, DIM)).astype(np.float32)
    emb_i = rng.standard_normal((N_BOOKS, DIM)).astype(np.float32)
    with db.transaction(con):
        db.append_table(con, "books", books)
        db.append_table(con, "ratings", ratings)
    now = datetime.now(UTC)
    record = runs.RunRecord(
        "bench", "lightgcn", {}, "split-bench", "x", "embedding", now, now, dim=DIM
    )
    runs.write_run(  # the product's write path (uncompressed embeddings)
        con,
        record,
        user_embeddings=runs.embedding_frame("bench", "user_id", np.arange(1, N_USERS + 1), emb_u),
        item_embeddings=runs.embedding_frame("bench", "isbn", np.array(isbns, dtype=object), emb_i),
    )
    heavy = ratings.group_by("user_id").len().sort("len", descending=True)["user_id"][0]
    con.close()
    return int(heavy), isbns[0]


def median_ms(con, sql: str, params: dict) -> float:
    """Median wall time of a query in ms (first run discarded)."""
    con.execute(sql, params).fetchall()
    times = []
    for _ in range(REPEAT):
        t = time.perf_counter()
        con.execute(sql, params).fetchall()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def main() -> None:
    """Build the synthetic DB and print the latency table."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.duckdb"
        t = time.perf_counter()
        heavy, isbn = build(path)
        print(f"built {path.name} in {time.perf_counter() - t:.1f} s")
        con = db.connect(path, read_only=True)
        rows = {
            "recommend(known user, k=10)": ("SELECT * FROM recommend($u, k := 10)", {"u": 4242}),
            "recommend(heaviest user, k=10)": (
                "SELECT * FROM recommend($u, k := 10)",
                {"u": heavy},
            ),
            "recommend(unknown user -> fallback)": (
                "SELECT * FROM recommend($u, k := 10)",
                {"u": 999_999_999},
            ),
            "similar_books(isbn, k=10)": ("SELECT * FROM similar_books($i, k := 10)", {"i": isbn}),
            "raw top-10 inner product (reference)": (
                "SELECT isbn, list_inner_product(embedding, (SELECT embedding FROM user_embeddings WHERE run_id='bench' AND user_id=$u)) s"
                " FROM item_embeddings WHERE run_id='bench' ORDER BY s DESC LIMIT 10",
                {"u": 4242},
            ),
        }
        for name, (sql, params) in rows.items():
            print(f"{name:40s} {median_ms(con, sql, params):8.1f} ms")


if __name__ == "__main__":
    main()
