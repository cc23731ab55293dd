"""Interactions for training: ratings -> positives -> optional k-core -> Dataset + id maps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import duckdb
import numpy as np
import polars as pl
from scipy.sparse import csr_matrix

from engine import db
from engine.models.base import Dataset

Positives = Literal["all", "explicit", "threshold"]
PARTS = ("train", "valid", "test")


def select_positives(
    ratings: pl.DataFrame, positives: Positives = "all", threshold: int = 1
) -> pl.DataFrame:
    """Keep the interactions that count as positive.

    all: every row, implicit 0 included; explicit: rating >= 1 (the prototype); threshold:
    rating >= `threshold` (e.g. 6 for "liked it").
    """
    if positives == "all":
        return ratings
    if positives == "explicit":
        return ratings.filter(pl.col("rating") >= 1)
    if positives == "threshold":
        return ratings.filter(pl.col("rating") >= threshold)
    raise ValueError(f"unknown positives setting {positives!r}")


def kcore(interactions: pl.DataFrame, k: int) -> pl.DataFrame:
    """Iteratively drop users and items with fewer than k interactions until none is left (k <= 1: no-op)."""
    if k <= 1:
        return interactions
    df = interactions
    while True:
        n = df.height
        df = df.filter((pl.len().over("user_id") >= k) & (pl.len().over("isbn") >= k))
        # one pass can push others below k; stop at the fixed point
        if df.height == n:
            return df


@dataclass(frozen=True)
class IdMaps:
    """0-based model indices <-> bookrec ids (user_id INTEGER, isbn VARCHAR), both sorted."""

    user_ids: np.ndarray  # index -> user_id
    isbns: np.ndarray  # index -> isbn (object array of str)

    @property
    def n_users(self) -> int:
        """Number of users in the model."""
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        """Number of items (books) in the model."""
        return len(self.isbns)

    def user_index(self, user_ids: np.ndarray) -> np.ndarray:
        """Model indices of `user_ids` (-1 where unknown)."""
        return _lookup(self.user_ids, np.asarray(user_ids))

    def item_index(self, isbns: np.ndarray) -> np.ndarray:
        """Model indices of `isbns` (-1 where unknown)."""
        return _lookup(self.isbns, np.asarray(isbns, dtype=object))


def _lookup(keys_by_index: np.ndarray, keys: np.ndarray) -> np.ndarray:
    # a hash lookup through Polars: fast for millions of ISBN strings, unlike np.searchsorted on objects
    index = pl.Series(keys_by_index.tolist() if keys_by_index.dtype == object else keys_by_index)
    wanted = pl.Series(keys.tolist() if keys.dtype == object else keys)
    if wanted.dtype != index.dtype:
        wanted = wanted.cast(index.dtype, strict=False)
    return wanted.replace_strict(
        index, np.arange(len(index)), default=-1, return_dtype=pl.Int64
    ).to_numpy()


def id_maps(interactions: pl.DataFrame) -> IdMaps:
    """Id maps over every user and item present in `interactions` (all parts of a split)."""
    users = np.sort(interactions["user_id"].unique().to_numpy())
    isbns = np.array(sorted(interactions["isbn"].unique().to_list()), dtype=object)
    return IdMaps(users, isbns)


def part_matrix(interactions: pl.DataFrame, maps: IdMaps, part: str | None = None) -> csr_matrix:
    """CSR matrix (n_users x n_items, 1.0 per positive) of one part (or all rows when part is None)."""
    rows = interactions if part is None else interactions.filter(pl.col("part") == part)
    u = maps.user_index(rows["user_id"].to_numpy())
    i = maps.item_index(np.array(rows["isbn"].to_list(), dtype=object))
    data = np.ones(len(u), dtype=np.float32)
    m = csr_matrix((data, (u, i)), shape=(maps.n_users, maps.n_items), dtype=np.float32)
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


def to_dataset(split_rows: pl.DataFrame) -> tuple[Dataset, IdMaps]:
    """Dataset (train/valid/test CSR) and id maps from split rows (user_id, isbn, part)."""
    maps = id_maps(split_rows)
    mats = {p: part_matrix(split_rows, maps, p) for p in PARTS}
    valid = mats["valid"] if mats["valid"].nnz else None
    test = mats["test"] if mats["test"].nnz else None
    extras = {}
    if "rating" in split_rows.columns:
        extras["train_ratings"] = rating_matrix(split_rows.filter(pl.col("part") == "train"), maps)
    return Dataset(maps.n_users, maps.n_items, mats["train"], valid, test, extras=extras), maps


AGE_EDGES = (18, 25, 35, 45, 55, 65)  # age buckets: <18, 18-24, ..., 55-64, 65+


def side_features(con: duckdb.DuckDBPyConnection, maps: IdMaps) -> dict[str, np.ndarray]:
    """NCF's side features per model id: 'user_features' = age bucket (AGE_EDGES; -1 unknown) and
    'item_features' = the book's genre facet (the biggest of its genres; -1 without facets).
    A feature no id has is left out, so the model trains without it."""
    out: dict[str, np.ndarray] = {}
    ages = db.query(con, "side_user_ages")
    at = maps.user_index(ages["user_id"].to_numpy())
    user_feat = np.full(maps.n_users, -1, dtype=np.int64)
    known = at >= 0
    user_feat[at[known]] = np.searchsorted(AGE_EDGES, ages["age"].to_numpy()[known], side="right")
    if (user_feat >= 0).any():
        out["user_features"] = user_feat
    genres = db.query(con, "side_item_genres")
    at = maps.item_index(np.array(genres["isbn"].to_list(), dtype=object))
    labels = sorted(set(genres["label"].to_list()))
    code = {label: i for i, label in enumerate(labels)}
    item_feat = np.full(maps.n_items, -1, dtype=np.int64)
    known = at >= 0
    item_feat[at[known]] = np.array([code[g] for g in genres["label"].to_list()], dtype=np.int64)[
        known
    ]
    if (item_feat >= 0).any():
        out["item_features"] = item_feat
    return out


def item_facets(
    con: duckdb.DuckDBPyConnection, maps: IdMaps, fields: tuple[str, ...] | list[str]
) -> tuple[csr_matrix, list[str]]:
    """(n_items x n_nodes CSR, node names): which facet labels of `fields` each model item has,
    for LightGCN's facet nodes. Labels no model item carries get no node."""
    pairs = db.query(con, "item_facet_pairs", {"fields": list(fields)})
    at = maps.item_index(np.array(pairs["isbn"].to_list(), dtype=object))
    keep = at >= 0
    nodes = pairs["node"].to_numpy()[keep]
    names = sorted(set(nodes.tolist()))
    code = {n: i for i, n in enumerate(names)}
    cols = np.array([code[n] for n in nodes], dtype=np.int64)
    m = csr_matrix(
        (np.ones(len(cols), dtype=np.float32), (at[keep], cols)),
        shape=(maps.n_items, len(names)),
    )
    m.sum_duplicates()
    m.data[:] = 1.0
    return m, names


def item_groups(
    con: duckdb.DuckDBPyConnection, maps: IdMaps, fields: tuple[str, ...] | list[str]
) -> dict[str, csr_matrix]:
    """field -> (n_items x n_groups binary CSR): each model item's author or publisher key
    (sql item_group_keys). Items without a key, and keys only one model item has, get no group."""
    keys = db.query(con, "item_group_keys")
    at = maps.item_index(np.array(keys["isbn"].to_list(), dtype=object))
    out: dict[str, csr_matrix] = {}
    for name in fields:
        col = np.array(keys[name].to_list(), dtype=object)
        keep = (at >= 0) & np.array([v is not None for v in col], dtype=bool)
        groups, inv, counts = np.unique(
            col[keep].astype(str), return_inverse=True, return_counts=True
        )
        shared = counts[inv] > 1
        _, cols = np.unique(inv[shared], return_inverse=True)
        out[name] = csr_matrix(
            (np.ones(int(shared.sum()), dtype=np.float32), (at[keep][shared], cols)),
            shape=(maps.n_items, int(cols.max()) + 1 if cols.size else 0),
        )
    return out


def rating_matrix(rows: pl.DataFrame, maps: IdMaps) -> csr_matrix:
    """CSR of rating values (0 = implicit, kept as an explicit zero entry) for popularity's Bayesian mean."""
    u = maps.user_index(rows["user_id"].to_numpy())
    i = maps.item_index(np.array(rows["isbn"].to_list(), dtype=object))
    return csr_matrix(
        (rows["rating"].to_numpy().astype(np.float32), (u, i)), shape=(maps.n_users, maps.n_items)
    )


def load_ratings(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """Every rating row (user_id, isbn, rating) from DuckDB."""
    return db.query(con, "model_ratings")


def load_interactions(
    con: duckdb.DuckDBPyConnection, positives: Positives = "all", threshold: int = 1, k: int = 0
) -> pl.DataFrame:
    """Positive interactions from `ratings` under the positives setting, k-core filtered."""
    return kcore(select_positives(load_ratings(con), positives, threshold), k)
