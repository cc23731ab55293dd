"""Shared test fixtures. Each area appends its own below; keep fixtures small and fast."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import settings as hypothesis_settings

# Property tests check answers, not speed: no per-example deadline, which a loaded CI box (or a
# niced run beside a benchmark) missed on a 0.6 ms example that took 260 ms once.
hypothesis_settings.register_profile("bookrec", deadline=None)
hypothesis_settings.load_profile("bookrec")

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("BOOKREC_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (real Book-Crossing subset and Gowalla); skips the test when absent."""
    if not (SHARED_DATA / "bookcrossing" / "Books.csv").exists():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


# --- facets (issue 5) ---


def hash_vectors(texts: list[str], dim: int = 384) -> np.ndarray:
    """Deterministic unit vectors per text (a stand-in encoder): equal texts, equal vectors."""
    import hashlib

    out = np.empty((len(texts), dim), dtype=np.float32)
    for i, t in enumerate(texts):
        seed = int.from_bytes(hashlib.blake2b(t.encode(), digest_size=8).digest(), "little")
        v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
        out[i] = v / np.linalg.norm(v)
    return out


@pytest.fixture()
def fake_encoder():
    """A fast encoder for tests that do not need MiniLM's semantics (hash-seeded random unit vectors)."""

    def fake(texts: list[str]) -> np.ndarray:
        return hash_vectors(texts)

    return fake


# --- models, DuckDB side (issue 3) ---


def planted_ratings(
    groups: int = 6,
    users_per: int = 25,
    items_per: int = 30,
    per_user: int = 12,
    popular: int = 10,
    popular_per_user: int = 3,
    seed: int = 0,
) -> pl.DataFrame:
    """Planted blocks: each user rates `per_user` books of their group's block plus a few globally
    popular books. Popularity can only recommend the popular books; a CF model finds the block."""
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(groups):
        for u in range(users_per):
            user = 1000 + g * users_per + u
            for i in rng.choice(items_per, per_user, replace=False):
                rows.append((user, f"B{g:02d}{i:03d}", int(rng.integers(0, 11))))
            for i in rng.choice(popular, popular_per_user, replace=False):
                rows.append((user, f"POP{i:03d}", 8))
    return pl.DataFrame(
        rows, schema={"user_id": pl.Int32, "isbn": pl.Utf8, "rating": pl.Int8}, orient="row"
    )


def load_ratings_db(path: Path, ratings: pl.DataFrame):
    """A fresh bookrec DuckDB with `ratings` and a books row (title 'Title <isbn>') per ISBN."""
    from engine import db

    con = db.connect(path)
    books = ratings.select(pl.col("isbn").unique().sort()).with_columns(
        ("Title " + pl.col("isbn")).alias("title"), pl.lit("Author").alias("author")
    )
    with db.transaction(con):
        db.replace_table(con, "books", books)
        db.replace_table(con, "ratings", ratings)
    return con


@pytest.fixture()
def planted_db(tmp_path: Path):
    """A DuckDB file with the planted-block ratings; yields (connection, path)."""
    path = tmp_path / "planted.duckdb"
    con = load_ratings_db(path, planted_ratings())
    yield con, path
    con.close()


# --- dashboard (issue 6) ---


@pytest.fixture(scope="session")
def app_db(tmp_path_factory) -> Path:
    """The dashboard fixture database (tests/app_fixtures.py): planted genres, models, facets."""
    from app_fixtures import build_app_db

    return build_app_db(tmp_path_factory.mktemp("appdb") / "app.duckdb")


@pytest.fixture(scope="session")
def app_store(app_db):
    """engine.query's read-only Store over the fixture database (one per test session)."""
    from engine import query

    store = query.open_store(app_db)
    yield store
    query.close_all()
