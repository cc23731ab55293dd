"""Client-chosen values (browse m, facet labels, search text, fields) cannot grow a worker's memory."""

from __future__ import annotations

import gc
import os

import numpy as np
import polars as pl
import psutil
import pytest

from engine import db
from engine.errors import UnknownEntityError
from engine.query import RECENT_FACETS, RECENT_M, RECENT_TEXTS, BrowseQuery, Store

N_BOOKS = 40_000  # large enough that an unbounded cache shows up in RSS (~0.5 MB per m)
GENRES = ("Fantasy", "Horror", "Mystery", "Romance")


def build_big_db(path):
    """A catalogue of N_BOOKS books, random ratings and one genre facet each."""
    rng = np.random.default_rng(1)
    isbns = [f"{i:09d}X" for i in range(N_BOOKS)]
    books = pl.DataFrame(
        {
            "isbn": isbns,
            "title": [f"Book {i}" for i in range(N_BOOKS)],
            "author": [f"Writer {i % 500}" for i in range(N_BOOKS)],
            "year": pl.Series(1950 + rng.integers(0, 55, N_BOOKS), dtype=pl.Int16),
            "publisher": "Press",
            "isbn_kind": "isbn10",
            "isbn_valid": True,
        }
    )
    n_ratings = 120_000
    ratings = pl.DataFrame(
        {
            "user_id": pl.Series(rng.integers(1, 5_000, n_ratings), dtype=pl.Int32),
            "isbn": [isbns[i] for i in rng.integers(0, N_BOOKS, n_ratings)],
            "rating": pl.Series(rng.integers(0, 11, n_ratings), dtype=pl.Int8),
        }
    ).unique(["user_id", "isbn"])
    facets = pl.DataFrame(
        {"isbn": isbns, "field": "genre", "label": [GENRES[i % 4] for i in range(N_BOOKS)]}
    )
    con = db.connect(path)
    with db.transaction(con):
        db.replace_table(con, "books", books)
        db.replace_table(con, "ratings", ratings)
        db.replace_table(con, "book_facets", facets)
    con.close()
    return path


@pytest.fixture(scope="module")
def big_store(tmp_path_factory):
    store = Store(build_big_db(tmp_path_factory.mktemp("bounds") / "bounds.duckdb"))
    yield store
    store.close()


def _rss() -> int:
    gc.collect()
    return psutil.Process(os.getpid()).memory_info().rss


def test_random_m_labels_and_texts_leave_caches_and_rss_bounded(big_store):
    rng = np.random.default_rng(7)

    def hostile(i: int) -> BrowseQuery:
        return BrowseQuery(
            m=float(rng.uniform(0, 10_000)),
            facets={"genre": (f"invented-{i}", GENRES[i % 4]), "tone": (f"made-up-{i}",)},
            text=f"zz{i}" if i % 2 else "",
            desc=bool(i % 3),
        )

    for i in range(50):  # the caches reach their working size
        big_store.browse(hostile(i))
    before, sizes_before = _rss(), big_store.cache_sizes()
    for i in range(50, 2_050):
        big_store.browse(hostile(i))
    grown = _rss() - before
    sizes = big_store.cache_sizes()
    assert sizes["memo"] == sizes_before["memo"]  # nothing a client sends is memoised for good
    assert sizes["by_m"] <= RECENT_M
    assert sizes["facets"] <= RECENT_FACETS
    assert sizes["texts"] <= RECENT_TEXTS
    assert grown < 48 * 2**20, f"worker grew {grown / 2**20:.0f} MB over 2,000 requests"


def test_unknown_labels_match_nothing_and_known_ones_still_filter(big_store):
    _, n_all = big_store.browse(BrowseQuery())
    _, n_known = big_store.browse(BrowseQuery(facets={"genre": ("Horror",)}))
    _, n_unknown = big_store.browse(BrowseQuery(facets={"genre": ("Nope",)}))
    _, n_mixed = big_store.browse(BrowseQuery(facets={"genre": ("Horror", "Nope", "Horror")}))
    assert n_all == N_BOOKS and n_known == N_BOOKS // 4 and n_unknown == 0 and n_mixed == n_known


@pytest.mark.parametrize("m", [float("nan"), float("inf"), -5.0, 1e300])
def test_odd_m_values_are_clamped_not_cached_apart(big_store, m):
    page, n = big_store.browse(BrowseQuery(m=m))
    assert n == N_BOOKS and page["score"].is_finite().all()
    assert big_store.cache_sizes()["by_m"] <= RECENT_M


def test_unknown_facet_fields_are_refused(app_store):
    with pytest.raises(UnknownEntityError, match="no facet field"):
        app_store.cooccurrence("genre", "x" * 100)
    with pytest.raises(UnknownEntityError):
        app_store.facet_triples("genre", "audience", "nope")
    with pytest.raises(UnknownEntityError):
        app_store.facet_labels("nope")


def test_tuning_trials_of_unknown_studies_are_refused_before_any_cache(app_store):
    from app_fixtures import TUNE_ID

    assert app_store.tuning_trials(TUNE_ID).height == 6
    before = app_store.cache_sizes()["memo"]
    for i in range(50):
        with pytest.raises(UnknownEntityError, match="no tuning study"):
            app_store.tuning_trials(f"tune-{i}")
    assert app_store.cache_sizes()["memo"] == before
