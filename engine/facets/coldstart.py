"""Cold start: new readers pick facets (popular books within them); new books go to readers whose
history is close in content space. Plus the held-out-books evaluation used by bench/coldstart.py."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import duckdb
import numpy as np
import polars as pl
import scipy.sparse as sp

from engine import db
from engine.errors import UnknownEntityError

Filters = Mapping[str, str | Iterable[str]] | Iterable[tuple[str, str]]


def filter_list(filters: Filters | None) -> list[dict[str, str]]:
    """{'genre': ['Mystery', 'Thriller'], 'tone': 'Dark'} or [(field, label)] -> facet_search's list of structs."""
    if not filters:
        return []
    pairs = filters.items() if isinstance(filters, Mapping) else filters
    out = []
    for field, labels in pairs:
        for label in [labels] if isinstance(labels, str) else labels:
            out.append({"field": str(field), "label": str(label)})
    return out


def facet_search(
    con: duckdb.DuckDBPyConnection,
    filters: Filters | None = None,
    *,
    year_min: int | None = None,
    year_max: int | None = None,
    min_ratings: int = 0,
    k: int = 50,
) -> pl.DataFrame:
    """Books matching the facet filters (OR within a field, AND across fields), best Bayesian score first."""
    params = {
        "filters": filter_list(filters),
        "year_min": year_min,
        "year_max": year_max,
        "min_ratings": min_ratings,
        "k": k,
    }
    return db.query(con, "facet_search_books", params)


def for_new_reader(
    con: duckdb.DuckDBPyConnection, filters: Filters | None, k: int = 20
) -> pl.DataFrame:
    """A reader with no ratings: the most popular books within the facets they chose."""
    return facet_search(con, filters, k=k)


def recommend_by_content(con: duckdb.DuckDBPyConnection, user_id: int, k: int = 20) -> pl.DataFrame:
    """Unread books closest to the reader's content profile; unrated (new) books compete equally."""
    out = db.query(con, "content_recommend_user", {"user_id": user_id, "k": k})
    if (
        out.is_empty()
        and db.fetch(
            con, "SELECT 1 FROM user_content_profiles WHERE user_id = $u", {"u": user_id}
        ).is_empty()
    ):
        raise UnknownEntityError(
            f"reader {user_id} has no content profile",
            where="user_content_profiles",
            hint="Run `bookrec content`, or use popular books for new readers",
        )
    return out


def readers_for_book(con: duckdb.DuckDBPyConnection, isbn: str, k: int = 20) -> pl.DataFrame:
    """Readers whose history is closest to a (possibly never rated) book in content space."""
    out = db.query(con, "cold_start_book_readers", {"isbn": isbn, "k": k})
    if (
        out.is_empty()
        and db.fetch(
            con, "SELECT 1 FROM book_content_embeddings WHERE isbn = $i", {"i": isbn}
        ).is_empty()
    ):
        raise UnknownEntityError(
            f"book {isbn} has no content embedding",
            where="book_content_embeddings",
            hint="Run `bookrec content`",
        )
    return out


def split_cold_books(
    interactions: pl.DataFrame, share: float, seed: int
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Hide every interaction of a random `share` of the rated books: (train, held-out) interactions."""
    books = interactions["isbn"].unique().sort()
    rng = np.random.default_rng(seed)
    n_cold = max(1, int(round(share * books.len())))
    cold = pl.Series("isbn", rng.choice(books.to_numpy(), size=n_cold, replace=False))
    is_cold = pl.col("isbn").is_in(cold.implode())
    return interactions.filter(~is_cold), interactions.filter(is_cold)


def cold_book_recall(
    train: pl.DataFrame,
    held_out: pl.DataFrame,
    isbns: list[str],
    vectors: np.ndarray,
    *,
    k: int = 20,
    seed: int = 0,
    candidates: str = "cold",
) -> dict[str, float]:
    """Recall@k of held-out (cold) books ranked by profile·book similarity vs a random ranking.

    candidates="cold": rank only the held-out books (the cold-start slot of a list);
    "all": rank every book the reader has not interacted with in `train`.
    """
    import torch  # only when evaluating: the rest of the module stays light

    from engine.evaluate.metrics import full_ranking
    from engine.facets.content import user_profiles

    profiles = user_profiles(train, isbns, vectors)
    where = {isbn: i for i, isbn in enumerate(isbns)}
    cold = [
        i for i in held_out["isbn"].unique().sort().to_list() if i in where
    ]  # embedded ones only
    items = cold if candidates == "cold" else isbns
    col = {isbn: i for i, isbn in enumerate(items)}
    users = profiles["user_id"].to_numpy()
    row = {int(u): i for i, u in enumerate(users)}

    def matrix(frame: pl.DataFrame) -> sp.csr_matrix:
        f = frame.filter(pl.col("user_id").is_in(list(row)) & pl.col("isbn").is_in(list(col)))
        r = np.array([row[int(u)] for u in f["user_id"]], dtype=np.int64)
        c = np.array([col[i] for i in f["isbn"]], dtype=np.int64)
        return sp.csr_matrix((np.ones(len(r), np.float32), (r, c)), shape=(len(users), len(items)))

    test, seen = matrix(held_out), matrix(train)
    item_vec = torch.from_numpy(np.ascontiguousarray(vectors[[where[i] for i in items]]))
    user_vec = torch.from_numpy(
        np.array(profiles["embedding"].to_numpy(), dtype=np.float32)
        if profiles.height
        else np.zeros((0, vectors.shape[1]), np.float32)
    )
    gen = torch.Generator().manual_seed(seed)
    content = full_ranking(lambda u: user_vec[u] @ item_vec.T, seen, test, ks=(k,))
    rand = full_ranking(
        lambda u: torch.rand(len(u), len(items), generator=gen), seen, test, ks=(k,)
    )
    return {
        "recall_content": content[f"recall@{k}"],
        "recall_random": rand[f"recall@{k}"],
        "hit_content": content[f"hit@{k}"],
        "hit_random": rand[f"hit@{k}"],
        "n_users": content["n_users"],
        "n_candidates": float(len(items)),
        "n_cold_books": float(len(cold)),
    }
