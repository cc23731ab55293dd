"""Train/valid/test splits stored in DuckDB (stage "split"): per-user random holdout or leave-one-out.

Rule for what cannot be split: a user with fewer than `min_user_interactions` positives keeps
them all in train (counted as `train_only_users` in the summary, never dropped); every other
user gets >= 1 test, >= 1 valid (when valid_fraction > 0) and >= 1 train interaction. Items seen
only in valid/test stay in the catalogue (the models cannot learn them: honest misses), counted
as `cold_test_items`. Interactions removed by the positives setting or k-core are counted too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

import duckdb
import numpy as np
import polars as pl

from engine import config, db, pipeline
from engine.errors import ConfigError, StageNotReadyError
from engine.models.data import Positives, kcore, select_positives

STAGE = "split"


@dataclass(frozen=True)
class SplitSettings:
    """How interactions become a train/valid/test split."""

    method: Literal["holdout", "loo"] = "holdout"
    test_fraction: float = 0.2  # holdout: share of each user's positives in test (LightGCN: 0.2)
    valid_fraction: float = 0.1  # share of the rest in valid (early stopping); loo: 1 item when > 0
    min_user_interactions: int = 3  # below this a user is train-only
    seed: int = 2020
    positives: Positives = "all"  # all (implicit 0 included) | explicit (>= 1) | threshold
    threshold: int = 1  # for positives = threshold
    kcore: int = 0  # iterative k-core on users and items; 0 = off

    def __post_init__(self) -> None:
        if not 0 < self.test_fraction < 1 or not 0 <= self.valid_fraction < 1:
            raise ValueError("test_fraction must be in (0, 1) and valid_fraction in [0, 1)")
        if self.min_user_interactions < 2:
            raise ValueError("min_user_interactions must be >= 2 (one train, one test)")


def assign_parts(interactions: pl.DataFrame, settings: SplitSettings) -> pl.DataFrame:
    """Add a `part` column (train/valid/test) to positive interactions; deterministic given the seed."""
    df = interactions.sort("user_id", "isbn")
    rng = np.random.default_rng(settings.seed)
    df = df.with_columns(pl.Series("_key", rng.random(df.height)))
    df = df.with_columns(
        pl.col("_key").rank("ordinal").over("user_id").alias("_pos") - 1,
        pl.len().over("user_id").alias("_n"),
    )
    n = pl.col("_n")
    splittable = n >= settings.min_user_interactions
    if settings.method == "loo":
        n_test = pl.lit(1)
        n_valid = pl.lit(1 if settings.valid_fraction > 0 else 0)
    else:
        n_test = (n * settings.test_fraction).round().clip(1, None)
        rest = n - n_test
        n_valid = (
            (rest * settings.valid_fraction).round().clip(1, None)
            if settings.valid_fraction > 0
            else pl.lit(0)
        )
        # keep at least one training interaction per splittable user
        n_valid = pl.min_horizontal(n_valid, (rest - 1).clip(0, None))
    part = (
        pl.when(~splittable)
        .then(pl.lit("train"))
        .when(pl.col("_pos") < n_test)
        .then(pl.lit("test"))
        .when(pl.col("_pos") < n_test + n_valid)
        .then(pl.lit("valid"))
        .otherwise(pl.lit("train"))
    )
    return df.with_columns(part.alias("part")).drop("_key", "_pos", "_n")


def summarize(
    ratings: pl.DataFrame, positives: pl.DataFrame, split: pl.DataFrame, settings: SplitSettings
) -> dict:
    """Counts shown to the user: what was kept, dropped (and why), and how each part looks."""
    per_user = split.group_by("user_id").agg(pl.len().alias("n"))
    train_items = set(split.filter(pl.col("part") == "train")["isbn"].unique().to_list())
    held = split.filter(pl.col("part") != "train")
    cold = held.filter(~pl.col("isbn").is_in(list(train_items)))
    parts = {p: split.filter(pl.col("part") == p).height for p in ("train", "valid", "test")}
    return {
        "method": settings.method,
        "ratings": ratings.height,
        "dropped_by_positives": ratings.height - positives.height,
        "dropped_by_kcore": positives.height - split.height,
        "interactions": split.height,
        "users": per_user.height,
        "items": split["isbn"].n_unique(),
        **{f"{p}_interactions": n for p, n in parts.items()},
        "test_users": split.filter(pl.col("part") == "test")["user_id"].n_unique(),
        "train_only_users": per_user.filter(pl.col("n") < settings.min_user_interactions).height,
        "cold_test_items": cold["isbn"].n_unique(),
        "cold_test_interactions": cold.height,
    }


def make_split(ratings: pl.DataFrame, settings: SplitSettings) -> tuple[pl.DataFrame, dict]:
    """Positives -> k-core -> parts; returns the split rows and their summary."""
    positives = select_positives(ratings, settings.positives, settings.threshold)
    kept = kcore(positives, settings.kcore)
    split = assign_parts(kept, settings)
    return split, summarize(ratings, positives, split, settings)


def ratings_digest(con: duckdb.DuckDBPyConnection) -> dict:
    """Cheap content fingerprint of `ratings` (count + order-free hash sum)."""
    return db.query(con, "ratings_digest").row(0, named=True)


def split_fingerprint(con: duckdb.DuckDBPyConnection, settings: SplitSettings) -> str:
    """Fingerprint of the split settings and the ratings it is drawn from."""
    return pipeline.fingerprint(config.as_dict(settings), {"ratings": ratings_digest(con)})


@dataclass(frozen=True)
class SplitInfo:
    """A stored split: id, settings, summary; `created` is False when an identical one was reused."""

    split_id: str
    method: str
    settings: dict
    fingerprint: str
    summary: dict
    created: bool = False


def _info(row: dict, created: bool = False) -> SplitInfo:
    return SplitInfo(
        row["split_id"],
        row["method"],
        json.loads(row["settings"]),
        row["fingerprint"],
        json.loads(row["summary"]),
        created,
    )


def run(
    con: duckdb.DuckDBPyConnection, settings: SplitSettings, *, force: bool = False
) -> SplitInfo:
    """Make (or reuse) the split for `settings` and make it current; atomic."""
    fp = split_fingerprint(con, settings)
    split_id = f"split-{fp}"
    existing = db.query(con, "split_by_id", {"split_id": split_id})
    if not existing.is_empty() and not force:
        with db.transaction(con):
            db.execute(con, "split_set_current", {"split_id": split_id})
        return _info(existing.row(0, named=True))
    ratings = db.query(con, "model_ratings")
    if ratings.is_empty():
        raise StageNotReadyError("no ratings to split", hint="Run `bookrec ingest` first")
    rows, summary = make_split(ratings, settings)
    if rows.filter(pl.col("part") == "test").is_empty():
        raise ConfigError(
            "the split has no test interactions",
            hint=f"every user has < {settings.min_user_interactions} positives; lower --min-user-interactions or --kcore",
        )
    frame = rows.select(pl.lit(split_id).alias("split_id"), "user_id", "isbn", "rating", "part")
    settings_json = json.dumps(config.as_dict(settings), sort_keys=True)
    with db.transaction(con):
        db.execute(con, "split_delete_rows", {"split_id": split_id})
        db.execute(con, "split_delete", {"split_id": split_id})
        db.execute(
            con,
            "split_insert",
            {
                "split_id": split_id,
                "method": settings.method,
                "settings": settings_json,
                "fingerprint": fp,
                "summary": json.dumps(summary),
            },
        )
        db.append_table(con, "split_interactions", frame)
        db.execute(con, "split_set_current", {"split_id": split_id})
        db.execute(con, "split_prune", {})
        pipeline.record(
            con, STAGE, fp, config.as_dict(settings), {"ratings": ratings_digest(con)}, summary
        )
    return SplitInfo(split_id, settings.method, config.as_dict(settings), fp, summary, created=True)


def current(con: duckdb.DuckDBPyConnection) -> SplitInfo | None:
    """The current split, or None."""
    rows = db.query(con, "split_current")
    return None if rows.is_empty() else _info(rows.row(0, named=True))


def get(con: duckdb.DuckDBPyConnection, split_id: str) -> SplitInfo:
    """A stored split by id."""
    rows = db.query(con, "split_by_id", {"split_id": split_id})
    if rows.is_empty():
        raise StageNotReadyError(f"split {split_id} not found", hint="Run `bookrec split`")
    return _info(rows.row(0, named=True))


def rows(con: duckdb.DuckDBPyConnection, split_id: str) -> pl.DataFrame:
    """The split's interactions (user_id, isbn, rating, part)."""
    return db.query(con, "split_rows", {"split_id": split_id})


def ensure(con: duckdb.DuckDBPyConnection, overrides: dict | None = None) -> SplitInfo:
    """The current split; made with settings (TOML/env/overrides) when none exists or overrides differ."""
    have = current(con)
    wanted = {k: v for k, v in (overrides or {}).items() if v is not None}
    if have is not None and not wanted:
        return have
    settings = config.load_settings(SplitSettings, "split", wanted)
    asked = config.as_dict(settings)
    if have is not None and all(have.settings.get(k) == asked[k] for k in wanted):
        return have
    return run(con, settings)
