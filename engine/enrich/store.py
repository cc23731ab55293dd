"""DuckDB side of enrichment: pending books in, finished batches out, each in its own transaction."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import duckdb
import polars as pl

from engine import db
from engine.enrich.prompt import BookRef

_ROW_SCHEMA = {
    "isbn": pl.Utf8,
    "summary": pl.Utf8,
    "genre": pl.List(pl.Utf8),
    "category": pl.List(pl.Utf8),
    "theme": pl.List(pl.Utf8),
    "tone": pl.List(pl.Utf8),
    "audience": pl.List(pl.Utf8),
    "empty_fields": pl.List(pl.Utf8),
    "empty_reason": pl.Utf8,
}
_INCOMING = "_enrich_incoming"  # the name sql/queries/enrich.sql reads new rows from
_CONFIDENCE = "_enrich_confidence"  # ... and new label confidences from
_CONF_SCHEMA = {"isbn": pl.Utf8, "field": pl.Utf8, "label": pl.Utf8, "confidence": pl.Float32}


def pending_books(
    con: duckdb.DuckDBPyConnection,
    source: str,
    prompt_version: str,
    *,
    only_missing: bool = False,
    limit: int | None = None,
) -> list[BookRef]:
    """Books that still need enrichment by `source` under `prompt_version` (in ISBN order)."""
    frame = db.query(
        con,
        "enrich_pending_books",
        {
            "source": source,
            "prompt_version": prompt_version,
            "only_missing": only_missing,
            "limit": limit,
        },
    )
    return [
        BookRef(r["isbn"], r["title"], r["author"], r["year"], r["publisher"])
        for r in frame.iter_rows(named=True)
    ]


def rows_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """book_enrichment rows (as dicts) as a typed frame (a row's `confidence` goes elsewhere)."""
    return pl.DataFrame([{k: r.get(k) for k in _ROW_SCHEMA} for r in rows], schema=_ROW_SCHEMA)


def confidence_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """(isbn, field, label, confidence) from rows carrying `confidence`: {field: [one per label]}."""
    out = [
        (r["isbn"], f, label, float(c))
        for r in rows
        for f, confs in (r.get("confidence") or {}).items()
        for label, c in zip(r.get(f) or [], confs, strict=True)
    ]
    return pl.DataFrame(out, schema=_CONF_SCHEMA, orient="row")


def write_rows(
    con: duckdb.DuckDBPyConnection,
    frame: pl.DataFrame,
    source: str,
    prompt_version: str,
    confidence: pl.DataFrame | None = None,
) -> None:
    """Upsert enrichment rows (and their label confidences, old ones dropped) and clear their
    failure records; call inside a transaction."""
    if frame.is_empty():
        return
    con.register(_INCOMING, frame.to_arrow())
    try:
        db.execute(con, "enrich_delete_incoming")
        db.execute(
            con, "enrich_insert_incoming", {"source": source, "prompt_version": prompt_version}
        )
        db.execute(con, "enrich_clear_failures")
        db.execute(con, "enrich_delete_confidence")
        if confidence is not None and not confidence.is_empty():
            con.register(_CONFIDENCE, confidence.to_arrow())
            try:
                db.execute(con, "enrich_insert_confidence")
            finally:
                con.unregister(_CONFIDENCE)
    finally:
        con.unregister(_INCOMING)


class DuckSink:
    """Commits each finished request (rows, failures, usage) in one transaction as it arrives."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        *,
        run_id: str,
        source: str,
        prompt_version: str,
        on_commit: Callable[[int], None] | None = None,
    ):
        self.con, self.run_id, self.source, self.prompt_version = (
            con,
            run_id,
            source,
            prompt_version,
        )
        self.on_commit = on_commit  # test hook: called with the number of commits so far
        self.commits = 0

    def commit(
        self,
        rows: list[dict[str, Any]],
        failures: list[dict[str, Any]],
        request: dict[str, Any] | None,
    ) -> None:
        """Write one batch's outcome atomically."""
        self.commit_many(rows, failures, [request] if request is not None else [])

    def commit_many(
        self,
        rows: list[dict[str, Any]],
        failures: list[dict[str, Any]],
        requests: list[dict[str, Any]],
        then: Callable[[duckdb.DuckDBPyConnection], None] | None = None,
    ) -> None:
        """Write the outcome of several requests (a Batch API output file) and `then` in one transaction."""
        base = {"source": self.source, "prompt_version": self.prompt_version, "run_id": self.run_id}
        with db.transaction(self.con):
            write_rows(
                self.con,
                rows_frame(rows),
                self.source,
                self.prompt_version,
                confidence_frame(rows),
            )
            for fail in failures:
                db.execute(self.con, "enrich_record_failure", {**base, **fail})
            for request in requests:
                db.execute(
                    self.con,
                    "enrich_record_request",
                    {
                        "run_id": self.run_id,
                        "source": self.source,
                        "http_status": None,
                        "error": None,
                        "mode": None,
                        "prompt_tokens": 0,
                        "completion_tokens": 0,
                        "tokens_estimated": False,
                        "cost_usd": 0.0,
                        "latency_ms": None,
                        "batch_id": None,
                        **request,
                    },
                )
            if then is not None:
                then(self.con)
        self.commits += 1
        if self.on_commit:
            self.on_commit(self.commits)


def run_usage(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, Any]:
    """Requests, tokens and cost recorded for one run."""
    return db.query(con, "enrich_run_usage", {"run_id": run_id}).row(0, named=True)


def count_current(
    con: duckdb.DuckDBPyConnection, source: str, prompt_version: str
) -> dict[str, Any]:
    """How many books carry an enrichment from `source` under `prompt_version`, and the latest time."""
    return db.query(
        con, "enrich_count_current", {"source": source, "prompt_version": prompt_version}
    ).row(0, named=True)
