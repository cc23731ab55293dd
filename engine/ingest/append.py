"""`bookrec ingest --append`: a day's ratings (and new books/users) upserted into the database.

Files are recognised, read and cleaned exactly as by a full ingest (`stage.load_files`,
`stage.prepare_source`). Then one transaction upserts them: ratings by (user_id, isbn) (new pair
inserted, changed rating updated, identical row untouched; ingest's duplicate rule holds across
files too, so an implicit 0 does not replace an explicit rating and appending B to A gives the
ratings of ingesting A then B as one file), books and users by key (new keys inserted; a known key
keeps its row, because enrichment and facets were built on it; a full `bookrec ingest` replaces
everything). The same transaction appends this run's rejected rows,
inserts its `ingest_runs` row (counts `mode: "append"`) and records the `ingest` stage with a
fingerprint that folds in the previous one, so downstream stages see that the data changed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from engine import db, pipeline
from engine.errors import StageNotReadyError
from engine.ingest import stage
from engine.ingest.stage import STAGE, STEPS, IngestResult, IngestSettings, Inputs, Progress

# Relation names the append queries in sql/queries/ingest.sql read the cleaned rows from.
_STAGED = {"books": "_append_books", "users": "_append_users", "ratings": "_append_ratings"}
_KEYED = ("books", "users")  # insert new keys, keep known ones


def applied_files(con: duckdb.DuckDBPyConnection) -> set[tuple[str, str]]:
    """(source, SHA-256) of the files the current data came from: last full ingest + appends since."""
    applied = set()
    for files in db.query(con, "ingest_applied_files")["files"]:
        for src, record in json.loads(files).items():
            applied.add((src, record["sha256"]))
    return applied


def _database_path(con: duckdb.DuckDBPyConnection) -> str | None:
    rows = db.fetch(
        con, "SELECT path FROM duckdb_databases() WHERE database_name = current_database()"
    )
    return rows.item() if rows.height == 1 else None


def _all_applied(con: duckdb.DuckDBPyConnection, inputs: Inputs) -> bool:
    applied = applied_files(con)
    return all((src, fp["sha256"]) in applied for src, fp in inputs.fingerprints.items())


@contextmanager
def _staged(con: duckdb.DuckDBPyConnection, frames: Mapping[str, pl.DataFrame]) -> Iterator[None]:
    """The cleaned frames visible to SQL under their `_append_*` names for the block's duration."""
    names = [_STAGED[src] for src in frames]
    try:
        for src, frame in frames.items():
            con.register(_STAGED[src], frame.to_arrow())
        yield
    finally:
        for name in names:
            con.unregister(name)


def _upsert(con: duckdb.DuckDBPyConnection, src: str, loaded: int) -> dict[str, int]:
    """Write one staged source into its table; what happened to its rows."""
    if src in _KEYED:
        known = int(db.query(con, f"ingest_append_{src}_known").item())
        db.execute(con, f"ingest_append_{src}_insert")
        return {"added": loaded - known, "known": known}
    counts = {
        k: int(v)
        for k, v in db.query(con, "ingest_append_ratings_counts").row(0, named=True).items()
    }
    db.execute(con, "ingest_append_ratings_update")
    db.execute(con, "ingest_append_ratings_insert")
    return counts


def run_append(
    con: duckdb.DuckDBPyConnection,
    settings: IngestSettings,
    ratings: str | Path,
    books: str | Path | None = None,
    users: str | Path | None = None,
    *,
    force: bool = False,
    progress: Progress | None = None,
) -> IngestResult:
    """Upsert new ratings (and books/users) into an ingested database; a no-op for applied files."""
    step = progress or (lambda _msg: None)
    started = stage.utcnow()
    t0 = time.perf_counter()
    previous = pipeline.last_run(con, STAGE)
    if previous is None:
        raise StageNotReadyError(
            "nothing to append to: this database has no ingest yet",
            where=_database_path(con),
            hint="Run `bookrec ingest --books B --ratings R --users U` first",
        )
    step(STEPS[0])
    given = {"books": books, "users": users, "ratings": ratings}
    inputs = stage.load_files(settings, {src: p for src, p in given.items() if p is not None})
    if not force and _all_applied(con, inputs):
        seconds = time.perf_counter() - t0
        return IngestResult(previous.fingerprint, skipped=True, seconds=seconds, mode="append")
    frames: dict[str, pl.DataFrame] = {}
    rejected: list[pl.DataFrame] = []
    counts: dict[str, Any] = {"mode": "append"}
    for src in inputs.paths:  # books, users, ratings order: the order a full ingest uses
        frames[src], rows, counts[src] = stage.prepare_source(settings, inputs, src, step)
        rejected.append(rows)
    step(STEPS[-1])
    run_id = stage.new_run_id(started)
    resolved = settings.resolved()
    with _staged(con, frames), db.transaction(con):
        for src in frames:
            counts[src] |= _upsert(con, src, frames[src].height)
        unknown = db.query(con, "ingest_append_unknown").row(0, named=True)
        counts["ratings"] |= {k: int(v) for k, v in unknown.items()}
        counts["rejected_total"] = stage.rejected_total(counts)
        inputs_record = {"previous": previous.fingerprint, "append": inputs.fingerprints}
        changed = any(counts[src]["added"] or counts[src].get("updated") for src in frames)
        # Nothing added or updated: the data is what it was, so downstream stages stay current.
        fp = pipeline.fingerprint(resolved, inputs_record) if changed else previous.fingerprint
        db.append_table(
            con,
            "rejected_rows",
            pl.concat(rejected).select(pl.lit(run_id).alias("run_id"), pl.all()),
        )
        files = stage.file_records(inputs)
        stage.insert_run(con, run_id, started, fp, files, counts)
        summary = {
            "mode": "append",
            "run_id": run_id,
            "added": {src: counts[src]["added"] for src in frames},
            "updated": counts["ratings"]["updated"],
            "rejected": counts["rejected_total"],
        }
        pipeline.record(con, STAGE, fp, resolved, inputs_record, summary)
    seconds = time.perf_counter() - t0
    return IngestResult(
        fp,
        skipped=False,
        run_id=run_id,
        files=files,
        counts=counts,
        seconds=seconds,
        mode="append",
    )
