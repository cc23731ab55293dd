"""Write-back of a training run: model_runs, run_metrics, embeddings, precomputed top-N; one transaction."""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import duckdb
import numpy as np
import polars as pl
import scipy.sparse as sp
import torch

from engine import db
from engine.evaluate.metrics import ScoreBlocks, contains
from engine.models.data import IdMaps
from engine.neighbours import NEIGHBOURS, nearest, unit_rows

# what a run derived with `copy_from` starts from (sql/queries/refresh.sql)
COPIED = (
    "item_embeddings",
    "item_neighbours",
    "user_embeddings",
    "recommendations",
    "item_weights",
)
_METRIC_RE = re.compile(r"^(?P<name>[a-z_]+)@(?P<k>\d+)$")


@dataclass
class RunRecord:
    """Everything model_runs holds about one run."""

    run_id: str
    model: str
    params: dict[str, Any]
    split_id: str
    data_fingerprint: str
    scoring: str  # 'embedding' | 'topn'
    started_at: datetime
    finished_at: datetime
    metrics: dict[str, float] = field(default_factory=dict)
    timings: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    dim: int | None = None
    state_path: str | None = None


def new_run_id(model: str, now: datetime | None = None) -> str:
    """A sortable, unique run id: <model>-<UTC timestamp>-<6 hex>."""
    now = now or datetime.now(UTC)
    return f"{model}-{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"


def metric_rows(
    run_id: str, epoch: int, part: str, metrics: dict[str, Any]
) -> list[dict[str, Any]]:
    """'recall@20' -> (metric='recall', k=20); plain names (loss) get k NULL; counts are skipped."""
    rows = []
    for key, value in metrics.items():
        if (
            value is None
            or key in ("n_users", "sampled_users")
            or not isinstance(value, int | float)
        ):
            continue
        m = _METRIC_RE.match(key)
        name, k = (m["name"], int(m["k"])) if m else (key, None)
        rows.append(
            {
                "run_id": run_id,
                "epoch": epoch,
                "part": part,
                "metric": name,
                "k": k,
                "value": float(value),
            }
        )
    return rows


def history_frame(record: RunRecord) -> pl.DataFrame:
    """run_metrics rows: per-epoch loss (train) and validation metrics, then the final test metrics (epoch -1)."""
    rows: list[dict[str, Any]] = []
    for h in record.history:
        epoch = int(h.get("epoch", 0))
        if "loss" in h:
            rows += metric_rows(record.run_id, epoch, "train", {"loss": h["loss"]})
        rows += metric_rows(record.run_id, epoch, "valid", h.get("metrics") or {})
    rows += metric_rows(record.run_id, -1, "test", record.metrics)
    schema = {
        "run_id": pl.Utf8,
        "epoch": pl.Int32,
        "part": pl.Utf8,
        "metric": pl.Utf8,
        "k": pl.Int32,
        "value": pl.Float64,
    }
    return pl.DataFrame(rows, schema=schema)


def embedding_frame(run_id: str, key: str, ids: np.ndarray, vectors: np.ndarray) -> pl.DataFrame:
    """(run_id, <key>, embedding FLOAT[]) rows, one per id."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    ids_series = pl.Series(key, ids.tolist() if ids.dtype == object else ids)
    if key == "user_id":
        ids_series = ids_series.cast(pl.Int32)
    return pl.DataFrame(
        {
            "run_id": pl.Series([run_id] * len(ids), dtype=pl.Utf8),
            key: ids_series,
            "embedding": pl.Series("embedding", vectors).cast(pl.List(pl.Float32)),
        }
    )


def _with_isbns(parts: list[pl.DataFrame], maps: IdMaps) -> pl.DataFrame:
    """(user_id, rank, item, score) parts as one (user_id, rank, isbn, score) frame."""
    frame = (
        pl.concat(parts)
        if parts
        else pl.DataFrame(
            schema={"user_id": pl.Int32, "rank": pl.Int32, "item": pl.Int64, "score": pl.Float64}
        )
    )
    isbn = pl.Series("isbn", maps.isbns.tolist(), dtype=pl.Utf8)
    return frame.with_columns(isbn.gather(frame["item"]).alias("isbn")).drop("item")


def top_n(
    score_fn,
    users: np.ndarray,
    exclude: sp.csr_matrix,
    maps: IdMaps,
    n: int,
    batch_size: int = 1024,
    device: torch.device | str = "cpu",
) -> pl.DataFrame:
    """Top-n items per user (the user's known items excluded): (user_id, rank, isbn, score)."""
    n = min(n, maps.n_items)
    exclude = exclude.tocsr()
    parts = []
    blocks = ScoreBlocks(score_fn, maps.n_items, min(batch_size, max(len(users), 1)), device)
    for start in range(0, len(users), batch_size):
        batch = users[start : start + batch_size]
        with torch.no_grad():
            scores = blocks(torch.from_numpy(batch).to(device))
            sub = exclude[batch]
            rows = np.repeat(np.arange(len(batch)), np.diff(sub.indptr))
            scores[
                torch.from_numpy(rows).to(scores.device),
                torch.from_numpy(sub.indices.astype(np.int64)).to(scores.device),
            ] = -torch.inf
            val, idx = torch.topk(scores, n, dim=1)
        val, idx = val.cpu().numpy(), idx.cpu().numpy()
        keep = np.isfinite(val)
        parts.append(
            pl.DataFrame(
                {
                    "user_id": np.repeat(maps.user_ids[batch], n)
                    .reshape(len(batch), n)[keep]
                    .astype(np.int32),
                    "rank": np.tile(np.arange(1, n + 1, dtype=np.int32), (len(batch), 1))[keep],
                    "item": idx[keep].astype(np.int64),
                    "score": val[keep].astype(np.float64),
                }
            )
        )
    return _with_isbns(parts, maps)


def top_n_sparse(
    sparse_scores: Callable[[np.ndarray], sp.csr_matrix],
    users: np.ndarray,
    exclude: sp.csr_matrix,
    maps: IdMaps,
    n: int,
    batch_size: int = 4096,
) -> pl.DataFrame:
    """Top-n items per user from sparse score rows (`Recommender.sparse_scores`): the user's known
    items dropped, positive scores only (as refresh's x W lists), ties by the lower item index.
    The same lists as `top_n` wherever a reader has n items with a positive score; a reader with
    fewer gets only those, not zero-score filler. Never a dense [batch, items] block (at xl, 1 M
    readers x 1.9 M books, that was O(readers x books) work); batches run on torch's threads."""
    from engine.models.base import thread_map
    from engine.models.itemknn import top_per_row

    n = min(n, maps.n_items)
    exclude = exclude.tocsr()
    exclude.sort_indices()

    def one(start: int) -> pl.DataFrame:
        batch = users[start : start + batch_size]
        scores = sparse_scores(batch).tocsr()
        known = exclude[batch]
        r = np.repeat(np.arange(len(batch), dtype=np.int64), np.diff(scores.indptr))
        c, v = scores.indices.astype(np.int64), scores.data.astype(np.float32, copy=False)
        live = v > 0  # also drops NaN
        r, c, v = r[live], c[live], v[live]
        # the n best plus as many as the reader has known items (dropped next): a selection over
        # the few kept entries instead of a sorted copy of the whole sparse product
        keep = top_per_row(r, c, v, len(batch), n + np.diff(known.indptr))
        r, c, v = r[keep], c[keep], v[keep]
        known_keys = np.repeat(np.arange(len(batch), dtype=np.int64), np.diff(known.indptr))
        known_keys = known_keys * maps.n_items + known.indices  # sorted: rows, then columns
        unseen = ~contains(known_keys, r * maps.n_items + c)
        r, c, v = r[unseen], c[unseen], v[unseen]
        order = np.lexsort((c, -v, r))
        r, c, v = r[order], c[order], v[order]
        rank = np.arange(len(r)) - np.searchsorted(r, r, side="left") + 1
        r, c, v, rank = r[rank <= n], c[rank <= n], v[rank <= n], rank[rank <= n]
        return pl.DataFrame(
            {
                "user_id": maps.user_ids[batch][r].astype(np.int32),
                "rank": rank.astype(np.int32),
                "item": c,
                "score": v.astype(np.float64),
            }
        )

    # batches on torch's threads: scipy's sparse product (most of the time) releases the GIL
    return _with_isbns(thread_map(one, range(0, len(users), batch_size)), maps)


def global_ranking(item_scores: np.ndarray, maps: IdMaps) -> pl.DataFrame:
    """One ranking for every user (user_id NULL): popularity's whole catalogue, best first."""
    order = np.argsort(-item_scores, kind="stable")
    return pl.DataFrame(
        {
            "user_id": pl.Series([None] * len(order), dtype=pl.Int32),
            "rank": np.arange(1, len(order) + 1, dtype=np.int32),
            "isbn": pl.Series(maps.isbns[order].tolist(), dtype=pl.Utf8),
            "score": item_scores[order].astype(np.float64),
        }
    )


def item_neighbours(
    item_embeddings: pl.DataFrame,
    k: int = NEIGHBOURS,
    progress: Callable[[str], None] | None = None,
) -> pl.DataFrame:
    """(run_id, isbn, rank, neighbour, score): each item's k nearest items by embedding cosine
    (engine.neighbours: faiss, exact up to `[neighbours] exact_max` items; under a second for 20k)."""
    run_ids = item_embeddings["run_id"].unique().to_list() if item_embeddings.height else []
    frames = []
    for run_id in run_ids:
        rows = item_embeddings.filter(pl.col("run_id") == run_id)
        vectors = rows["embedding"].explode().to_numpy().astype(np.float32).reshape(rows.height, -1)
        frames.append(
            nearest(rows["isbn"].to_list(), unit_rows(vectors), k, progress=progress).select(
                pl.lit(run_id).alias("run_id"), pl.all()
            )
        )
    if not frames:  # no items: the empty frame with the table's columns
        none = nearest([], np.zeros((0, 1), np.float32), k)
        return none.select(pl.lit(None, dtype=pl.String).alias("run_id"), pl.all())
    return pl.concat(frames)


WRITE_ROWS = 1 << 22  # top-N rows appended at a time


def write_run(
    con: duckdb.DuckDBPyConnection,
    record: RunRecord,
    *,
    user_embeddings: pl.DataFrame | None = None,
    item_embeddings: pl.DataFrame | None = None,
    recommendations: pl.DataFrame | None = None,
    also: Callable[[duckdb.DuckDBPyConnection], None] | None = None,
    progress: Callable[[str], None] | None = None,
    copy_from: str | None = None,
) -> None:
    """Insert the run as its model's only current run, with history, embeddings, the items'
    nearest items and top-N: all or nothing. `copy_from`: start from a copy of that run's
    payload (embeddings, neighbours, top-N, item weights; `bookrec refresh`)."""
    params = {
        "run_id": record.run_id,
        "model": record.model,
        "params": json.dumps(record.params, sort_keys=True, default=str),
        "metrics": json.dumps(record.metrics),
        "data_fingerprint": record.data_fingerprint,
        "split_id": record.split_id,
        "scoring": record.scoring,
        "dim": record.dim,
        "timings": json.dumps(record.timings),
        "state_path": record.state_path,
        "started_at": record.started_at.replace(tzinfo=None),
        "finished_at": record.finished_at.replace(tzinfo=None),
    }
    neighbours = (
        item_neighbours(item_embeddings, progress=progress) if item_embeddings is not None else None
    )
    _checkpoint(con)  # flush earlier writes (e.g. a fresh split) with normal compression first
    # Embeddings are stored uncompressed: DuckDB's float compression (ALP-RD) makes every
    # recommend() scan decompress 270k x 64 floats (43 ms vs 27 ms uncompressed, +25 % file size).
    con.execute("SET force_compression = 'uncompressed'")
    try:
        with db.transaction(con):
            db.execute(con, "run_unset_current", {"model": record.model})
            db.execute(con, "run_insert", params)
            if copy_from is not None:
                for part in COPIED:
                    db.execute(
                        con,
                        f"refresh_copy_{part}",
                        {"new_run": record.run_id, "old_run": copy_from},
                    )
            history = history_frame(record)
            if history.height:
                db.append_table(con, "run_metrics", history)
            db.execute(con, "run_prune_payload")
            if user_embeddings is not None:
                db.append_table(con, "user_embeddings", user_embeddings)
            if item_embeddings is not None:
                db.append_table(con, "item_embeddings", item_embeddings)
                db.append_table(con, "item_neighbours", neighbours)
            if recommendations is not None:
                # in slices: one Arrow copy of xl's 21 M rows at once was ~2 GB more at the peak
                for at in range(0, recommendations.height, WRITE_ROWS):
                    db.append_table(
                        con,
                        "recommendations",
                        recommendations.slice(at, WRITE_ROWS).select(
                            pl.lit(record.run_id).alias("run_id"),
                            "user_id",
                            "rank",
                            "isbn",
                            "score",
                        ),
                    )
            db.execute(con, "split_prune")
            if also is not None:  # e.g. the stage record: in the same transaction
                also(con)
        _checkpoint(con)
    finally:
        con.execute("RESET force_compression")


def _checkpoint(con: duckdb.DuckDBPyConnection) -> None:
    """CHECKPOINT when possible (another open transaction only postpones it)."""
    with contextlib.suppress(duckdb.Error):
        con.execute("CHECKPOINT")


def set_metrics(con: duckdb.DuckDBPyConnection, run_id: str, metrics: dict[str, float]) -> None:
    """Replace a run's final metrics (model_runs.metrics and run_metrics epoch -1) atomically."""
    with db.transaction(con):
        db.execute(con, "run_set_metrics", {"run_id": run_id, "metrics": json.dumps(metrics)})
        db.execute(con, "run_delete_final_metrics", {"run_id": run_id})
        rows = metric_rows(run_id, -1, "test", metrics)
        if rows:
            db.append_table(
                con,
                "run_metrics",
                pl.DataFrame(
                    rows,
                    schema={
                        "run_id": pl.Utf8,
                        "epoch": pl.Int32,
                        "part": pl.Utf8,
                        "metric": pl.Utf8,
                        "k": pl.Int32,
                        "value": pl.Float64,
                    },
                ),
            )


def current_runs(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """The current run of every model."""
    return db.query(con, "current_runs")


def current_run(con: duckdb.DuckDBPyConnection, model: str) -> RunRecord | None:
    """The current run of `model` as a RunRecord (without history), or None."""
    rows = current_runs(con).filter(pl.col("model") == model)
    if rows.is_empty():
        return None
    r = rows.row(0, named=True)
    return RunRecord(
        run_id=r["run_id"],
        model=r["model"],
        params=json.loads(r["params"]),
        split_id=r["split_id"],
        data_fingerprint=r["data_fingerprint"],
        scoring=r["scoring"],
        started_at=r["started_at"],
        finished_at=r["finished_at"],
        metrics=json.loads(r["metrics"] or "{}"),
        timings=json.loads(r["timings"] or "{}"),
        dim=r["dim"],
        state_path=r["state_path"],
    )


def read_embeddings(
    con: duckdb.DuckDBPyConnection, run_id: str, kind: str
) -> tuple[np.ndarray, np.ndarray]:
    """(ids, vectors [n, dim] float32) of a run's 'user' or 'item' embeddings, sorted by id."""
    frame = db.query(con, f"run_{kind}_embeddings", {"run_id": run_id})
    key = "user_id" if kind == "user" else "isbn"
    if frame.is_empty():
        return np.array([]), np.zeros((0, 0), np.float32)
    ids = frame[key].to_numpy() if kind == "user" else np.array(frame[key].to_list(), dtype=object)
    return ids, np.array(frame["embedding"].to_list(), dtype=np.float32)
