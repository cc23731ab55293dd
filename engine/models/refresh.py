"""`bookrec refresh`: serve new ratings without retraining, as a run derived from the current one.

After `bookrec ingest --append`, every model's current run still serves what it was trained on.
What can be brought up to date without training is, per model, one of three things:

- **refit** (popularity, item-kNN, RP3beta, hybrid): their "training" is counting: item
  statistics recomputed from every rating now in the database with the run's own settings, in
  seconds. New books and readers are included.
- **fold-in** (MF, LightGCN, BPR, ALS: inner-product runs): the item vectors stay; each reader
  whose books changed since the run's split, and each new reader, gets a vector solved from the
  item vectors of their books by the same rule the JSON API uses for a new reader
  (`engine.foldin.user_vector`). Books the run has no vector for are not recommended until a
  retrain.
- **fold-in over item weights** (EASE, GF-CF, ChebyCF: top-N runs with stored `item_weights`):
  the changed and new readers' top-N lists are recomputed as x W from the run's stored W (pruned
  to its largest weights per row, so approximate, as the API's fold-in of these models).

NCF (not linear in the reader's books) cannot be refreshed and says so. Each refreshed model gets
a new current run: `params.protocol = "refresh"`, `refreshed_from` (its source run), the source's
metrics (`metrics_from`: a run that has seen new data is never judged on them) and `refresh`
(what was done, with counts). Readers whose books did not change keep the source's vectors /
lists. A full retrain is still `bookrec split` (a new split with the new ratings) and `bookrec
train`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import polars as pl
import scipy.sparse as sp

from engine import config, db, foldin, pipeline
from engine.errors import StageNotReadyError, UnknownEntityError
from engine.models import runs, split, stage
from engine.models.base import build
from engine.models.data import load_interactions

PROTOCOL = "refresh"
REFIT = frozenset({"popularity", "itemknn", "rp3beta", "hybrid"})  # fit = counting: seconds


@dataclass
class RefreshResult:
    """What refresh did for one model."""

    model: str
    source_run: str
    run_id: str | None  # the new current run; None when nothing was done
    method: str  # refit | fold-in | fold-in (item weights) | up to date | not refreshable
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    note: str = ""


def _method(con: duckdb.DuckDBPyConnection, run: runs.RunRecord) -> str | None:
    """How `run` can be refreshed (module docstring), or None when it cannot."""
    if run.model in REFIT:
        return "refit"
    if run.scoring == "embedding":
        return "fold-in"
    if db.query(con, "refresh_has_item_weights", {"run_id": run.run_id})["has"][0]:
        return "fold-in (item weights)"
    return None


def _histories(con: duckdb.DuckDBPyConnection, run: runs.RunRecord) -> pl.DataFrame:
    """Every positive interaction now in `ratings` under the run's split settings."""
    s = run.params.get("split") or {}
    return load_interactions(
        con, s.get("positives", "all"), int(s.get("threshold", 1)), int(s.get("kcore", 0))
    ).select("user_id", "isbn", "rating")


def changed_readers(before: pl.DataFrame, now: pl.DataFrame) -> np.ndarray:
    """Readers whose set of books differs between two (user_id, isbn) frames, sorted."""
    pairs = ["user_id", "isbn"]
    gone = before.select(pairs).join(now.select(pairs), on=pairs, how="anti")
    new = now.select(pairs).join(before.select(pairs), on=pairs, how="anti")
    users = pl.concat([gone["user_id"], new["user_id"]]).unique().sort()
    return users.to_numpy().astype(np.int64)


def _readers(now: pl.DataFrame, users: np.ndarray) -> pl.DataFrame:
    return now.filter(pl.col("user_id").cast(pl.Int64).is_in(users.tolist()))


def _picks(rows: pl.DataFrame, row_of: dict[str, int]) -> dict[int, np.ndarray]:
    """Per reader, the rows (in a run's item order) of the books of theirs the run knows."""
    out: dict[int, np.ndarray] = {}
    for (user,), part in rows.group_by(["user_id"], maintain_order=True):
        at = [row_of[i] for i in part["isbn"].to_list() if i in row_of]
        if at:
            out[int(user)] = np.array(sorted(at), dtype=np.int64)
    return out


def _fold_vectors(
    con: duckdb.DuckDBPyConnection, run: runs.RunRecord, rows: pl.DataFrame, counts: dict[str, int]
) -> pl.DataFrame:
    """user_embeddings rows of the changed readers, solved from the run's item vectors."""
    isbns, items = runs.read_embeddings(con, run.run_id, "item")
    row_of = {str(i): n for n, i in enumerate(isbns.tolist())}
    picks = _picks(rows, row_of)
    params = run.params.get("model") or {}
    gram = items.astype(np.float64).T @ items.astype(np.float64) if run.model == "als" else None
    users = np.array(sorted(picks), dtype=np.int64)
    vectors = np.zeros((len(users), items.shape[1]), dtype=np.float32)
    for n, user in enumerate(users.tolist()):
        vectors[n] = foldin.user_vector(run.model, params, items, picks[user], gram)[0]
    counts["readers_without_known_books"] = int(rows["user_id"].n_unique() - len(users))
    return runs.embedding_frame(run.run_id, "user_id", users, vectors)


def _fold_lists(
    con: duckdb.DuckDBPyConnection,
    run: runs.RunRecord,
    rows: pl.DataFrame,
    topn: int,
    counts: dict[str, int],
) -> pl.DataFrame:
    """recommendations rows (user_id, rank, isbn, score) of the changed readers: x W, top-n."""
    weights = db.query(con, "refresh_item_weights", {"run_id": run.run_id})
    names = pl.concat([weights["isbn"], weights["neighbour"]]).unique().sort()
    index = pl.Series(np.arange(len(names), dtype=np.int64))

    def at(column: str) -> np.ndarray:
        return weights[column].replace_strict(names, index, return_dtype=pl.Int64).to_numpy()

    w = sp.csr_matrix(
        (weights["weight"].to_numpy().astype(np.float32), (at("isbn"), at("neighbour"))),
        shape=(len(names), len(names)),
    )
    names = names.to_list()
    row_of = {name: n for n, name in enumerate(names)}
    picks = _picks(rows, row_of)
    isbn = np.array(names, dtype=object)
    k = min(topn, len(names))
    parts = []
    for user, at in picks.items():
        scores = foldin.item_scores(w, at)
        scores[at] = -np.inf
        top = np.argsort(-scores, kind="stable")[:k]
        top = top[np.isfinite(scores[top]) & (scores[top] > 0)]
        parts.append(
            pl.DataFrame(
                {
                    "user_id": pl.Series([user] * len(top), dtype=pl.Int32),
                    "rank": pl.Series(np.arange(1, len(top) + 1), dtype=pl.Int32),
                    "isbn": pl.Series(isbn[top].tolist(), dtype=pl.Utf8),
                    "score": pl.Series(scores[top], dtype=pl.Float64),
                }
            )
        )
    counts["readers_without_known_books"] = int(rows["user_id"].n_unique() - len(picks))
    schema = {"user_id": pl.Int32, "rank": pl.Int32, "isbn": pl.Utf8, "score": pl.Float64}
    return pl.concat(parts) if parts else pl.DataFrame(schema=schema)


def _record(run: runs.RunRecord, counts: dict[str, int], method: str) -> runs.RunRecord:
    now = datetime.now(UTC)
    return runs.RunRecord(
        run_id=runs.new_run_id(run.model, now),
        model=run.model,
        params={
            **run.params,
            "protocol": PROTOCOL,
            "refreshed_from": run.run_id,
            "metrics_from": run.params.get("metrics_from", run.run_id),
            "refresh": {"method": method, **counts},
            "trained_on": f"{run.params.get('trained_on', 'split train part')}; {method} on "
            "every rating at refresh",
        },
        split_id=run.split_id,
        data_fingerprint=run.data_fingerprint,
        scoring=run.scoring,
        started_at=now,
        finished_at=now,
        metrics=dict(run.metrics),
        dim=run.dim,
    )


def refresh_model(
    con: duckdb.DuckDBPyConnection,
    model_name: str,
    *,
    db_path: Path | None = None,
    force: bool = False,
) -> RefreshResult:
    """Bring one model's current run up to date with the ratings now in the database."""
    t0 = time.perf_counter()
    run = runs.current_run(con, model_name)
    if run is None:
        raise UnknownEntityError(
            f"model {model_name!r} has no current run",
            hint=f"Train it first: `bookrec train --model {model_name}`",
        )
    method = _method(con, run)
    if method is None:
        return RefreshResult(
            model_name,
            run.run_id,
            None,
            "not refreshable",
            note="its scores are not linear in a reader's books: retrain "
            "(`bookrec split`, then `bookrec train`)",
        )
    stage_name = f"refresh:{model_name}"
    base = run.params.get("refreshed_from") if run.params.get("protocol") == PROTOCOL else None
    fp = pipeline.fingerprint(
        {"model": run.params.get("model")},
        {"ingest": pipeline.upstream(con, "ingest"), "base": base or run.run_id},
    )
    if not force and base is not None and pipeline.is_current(con, stage_name, fp):
        return RefreshResult(
            model_name, run.run_id, None, "up to date", seconds=time.perf_counter() - t0
        )
    now = _histories(con, run)
    before = split.rows(con, run.split_id)
    changed = changed_readers(before, now)
    known_users = set(before["user_id"].unique().to_list())
    counts = {
        "interactions": now.height,
        "readers_changed": int(sum(1 for u in changed.tolist() if u in known_users)),
        "readers_new": int(sum(1 for u in changed.tolist() if u not in known_users)),
    }
    if not force and len(changed) == 0:
        return RefreshResult(
            model_name,
            run.run_id,
            None,
            "up to date",
            counts,
            time.perf_counter() - t0,
            note="no ratings changed since the run's split",
        )
    record = _record(run, counts, method)
    settings = config.load_settings(stage.EvalSettings, "evaluate", {})

    def bookkeeping(c: duckdb.DuckDBPyConnection) -> None:
        pipeline.record(c, stage_name, fp, {"method": method}, {"source": run.run_id}, counts)

    if method == "refit":
        record.started_at = datetime.now(UTC)
        from engine.models.final import _fixed_settings

        model = build(model_name, _fixed_settings(model_name, run))
        data, maps = stage.dataset_from_rows(con, model, now.with_columns(part=pl.lit("train")))
        model.fit(data)
        counts["books"], counts["readers"] = maps.n_items, maps.n_users
        payload = stage._payload(model, record, data, maps, settings)
        weights = stage.item_weights(model, record, maps)
        record.state_path = stage._save_state(model, record.run_id, settings, db_path)
        record.finished_at = datetime.now(UTC)
        record.params["refresh"] = {"method": method, **counts}

        def also(c: duckdb.DuckDBPyConnection) -> None:
            bookkeeping(c)
            stage.write_item_weights(c, weights)

        runs.write_run(con, record, also=also, **payload)
    else:
        rows = _readers(now, changed)
        if method == "fold-in":
            fresh = _fold_vectors(con, run, rows, counts).with_columns(run_id=pl.lit(record.run_id))
            table = "user_embeddings"
        else:
            fresh = _fold_lists(con, run, rows, settings.topn, counts).select(
                pl.lit(record.run_id).alias("run_id"), "user_id", "rank", "isbn", "score"
            )
            table = "recommendations"
        counts["unknown_books"] = int(
            rows.join(
                db.query(con, "refresh_run_items", {"run_id": run.run_id}), on="isbn", how="anti"
            )["isbn"].n_unique()
        )
        record.params["refresh"] = {"method": method, **counts}
        record.finished_at = datetime.now(UTC)
        users = changed.tolist()

        def also(c: duckdb.DuckDBPyConnection) -> None:
            db.execute(c, f"refresh_drop_{table}", {"run_id": record.run_id, "users": users})
            if fresh.height:
                db.append_table(c, table, fresh)
            db.execute(c, "foldin_prune_item_weights")
            bookkeeping(c)

        runs.write_run(con, record, also=also, copy_from=run.run_id)
    return RefreshResult(
        model_name, run.run_id, record.run_id, method, counts, time.perf_counter() - t0
    )


def refresh(
    con: duckdb.DuckDBPyConnection,
    models: tuple[str, ...] = (),
    *,
    db_path: Path | None = None,
    force: bool = False,
) -> list[RefreshResult]:
    """Refresh the named models (default: every model with a current run)."""
    names = list(models) or runs.current_runs(con)["model"].to_list()
    if not names:
        raise StageNotReadyError(
            "no trained models to refresh", hint="Run `bookrec train --model hybrid` first"
        )
    return [refresh_model(con, name, db_path=db_path, force=force) for name in names]


def describe(result: RefreshResult) -> dict[str, Any]:
    """One row of the CLI's table."""
    c = result.counts
    return {
        "model": result.model,
        "method": result.method,
        "changed readers": c.get("readers_changed", ""),
        "new readers": c.get("readers_new", ""),
        "unknown books": c.get("unknown_books", ""),
        "s": f"{result.seconds:.1f}",
        "new run": result.run_id or "",
    }
