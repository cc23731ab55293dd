"""The ingest stage: recognise, read and clean three files, then swap them into DuckDB atomically."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import duckdb
import polars as pl

from engine import db, pipeline
from engine.config import as_dict
from engine.ingest import clean, formats, read

STAGE = "ingest"
STEPS = (
    "checking inputs",
    "reading books",
    "cleaning books",
    "reading users",
    "cleaning users",
    "reading ratings",
    "cleaning ratings",
    "writing database",
)


@dataclass(frozen=True)
class IngestSettings:
    """How to read and clean Book-Crossing files ([ingest] in bookrec.toml, BOOKREC_INGEST_*)."""

    format: Literal["auto", "bx2004", "kaggle", "split"] = "auto"
    encoding: Literal["auto", "utf-8", "cp1252"] = "auto"
    min_year: int = 1000
    max_year: int | None = None  # None: the current year
    min_age: int = 5
    max_age: int = 110
    unescape_html: bool = True
    fix_mojibake: bool = True

    def __post_init__(self) -> None:
        if self.format not in formats.FORMATS:
            raise ValueError(f"format must be one of {', '.join(formats.FORMATS)}")
        if self.min_age > self.max_age:
            raise ValueError("min_age is above max_age")

    def resolved(self) -> dict[str, Any]:
        """Settings with max_year filled in: what the fingerprint and the run record hold."""
        out = as_dict(self)
        out["max_year"] = self.max_year or dt.date.today().year
        return out


@dataclass(frozen=True)
class IngestResult:
    """What one `run` did: skipped as up to date, or loaded with these counts."""

    fingerprint: str
    skipped: bool
    run_id: str | None = None
    files: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


Progress = Callable[[str], None]


def _file_fingerprint(path: Path, data: bytes) -> dict[str, Any]:
    # pipeline.file_fingerprint's fields, from the bytes already in memory instead of a second read.
    return {"name": path.name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _rejected_rows(source: str, result: read.ReadResult, cleaned: clean.Cleaned) -> pl.DataFrame:
    """Reader and cleaning rejections of one file with the raw text of their line."""
    later = cleaned.rejected.with_columns(
        result.raw.gather(cleaned.rejected["line"] - 1).alias("raw")
    )
    both = pl.concat([result.rejected, later.select("line", "reason", "raw")])
    return both.select(pl.lit(source).alias("source"), "line", "reason", "raw").sort("line")


def _source_counts(
    result: read.ReadResult, cleaned: clean.Cleaned, rejected: pl.DataFrame
) -> dict[str, Any]:
    by_reason = dict(rejected.group_by("reason").len().sort("reason").iter_rows())
    return {
        "read": result.records,
        "loaded": cleaned.frame.height,
        "rejected": {k: int(v) for k, v in by_reason.items()},
        "blank_lines": result.blank,
        **cleaned.counts,
    }


def _clean(
    source: str, frame: pl.DataFrame, settings: IngestSettings, max_year: int
) -> clean.Cleaned:
    text = {"unescape_html": settings.unescape_html, "mojibake": settings.fix_mojibake}
    if source == "books":
        return clean.clean_books(frame, min_year=settings.min_year, max_year=max_year, **text)
    if source == "users":
        return clean.clean_users(frame, min_age=settings.min_age, max_age=settings.max_age, **text)
    return clean.clean_ratings(frame)


@dataclass(frozen=True)
class Inputs:
    """Three recognised input files: their bytes, formats and fingerprints."""

    paths: dict[str, Path]
    blobs: dict[str, bytes]
    formats: dict[str, formats.FileFormat]
    fingerprints: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class Prepared:
    """Everything one ingest writes: cleaned tables, rejected rows, per-file records and counts."""

    frames: dict[str, pl.DataFrame]
    rejected: pl.DataFrame  # source, line, reason, raw
    files: dict[str, Any]
    counts: dict[str, Any]


def load_inputs(
    settings: IngestSettings, books: str | Path, ratings: str | Path, users: str | Path
) -> Inputs:
    """Load and recognise the three files (InputFileError / FormatError on unusable ones)."""
    paths = {"books": Path(books), "users": Path(users), "ratings": Path(ratings)}

    def load(src: str) -> tuple[bytes, dict[str, Any]]:
        data = formats.load_bytes(src, paths[src])
        return formats.strip_bom(data), _file_fingerprint(paths[src], data)

    # File reads and SHA-256 release the GIL: the three files load side by side. map() yields
    # in order, so the first unusable file (books, users, ratings) is still the one reported.
    with ThreadPoolExecutor(max_workers=3) as pool:
        loaded = dict(zip(paths, pool.map(load, paths), strict=True))
    blobs = {src: blob for src, (blob, _) in loaded.items()}
    prints = {src: fp for src, (_, fp) in loaded.items()}
    fmts = {
        src: formats.sniff(src, paths[src], blobs[src], settings.format, settings.encoding)
        for src in paths
    }
    return Inputs(paths, blobs, fmts, prints)


def prepare(
    settings: IngestSettings,
    inputs: Inputs,
    progress: Progress | None = None,
    on_table: Callable[[str, pl.DataFrame], None] | None = None,
) -> Prepared:
    """Read and clean the three files into the frames `run` swaps in; touches no database.

    `on_table(source, frame)` is called as soon as each cleaned table is ready, before the next
    file is read, so that a caller can write it meanwhile.
    """
    step = progress or (lambda _msg: None)
    max_year = settings.resolved()["max_year"]
    frames: dict[str, pl.DataFrame] = {}
    rejected: list[pl.DataFrame] = []
    counts: dict[str, Any] = {}
    for src in ("books", "users", "ratings"):
        step(f"reading {src}")
        result = read.read_file(inputs.formats[src], inputs.blobs[src])
        step(f"cleaning {src}")
        cleaned = _clean(src, result.frame, settings, max_year)
        rows = _rejected_rows(src, result, cleaned)
        rejected.append(rows)
        counts[src] = _source_counts(result, cleaned, rows)
        frames[src] = cleaned.frame.drop("line")
        if on_table is not None:
            on_table(src, frames[src])
    # One lazy select (run in parallel) rather than two eager, single-threaded Series ops.
    known_books, known_users = (
        frames["books"]["isbn"].implode(),
        frames["users"]["user_id"].implode(),
    )
    unknown = (
        frames["ratings"]
        .lazy()
        .select(
            (~pl.col("isbn").is_in(known_books)).sum().alias("unknown_book"),
            (~pl.col("user_id").is_in(known_users)).sum().alias("unknown_user"),
        )
        .collect()
    )
    counts["ratings"] |= {k: int(v) for k, v in unknown.row(0, named=True).items()}
    counts["rejected_total"] = sum(sum(counts[s]["rejected"].values()) for s in frames)
    files = {
        src: {
            "path": str(inputs.paths[src]),
            **inputs.fingerprints[src],
            **inputs.formats[src].describe(),
        }
        for src in inputs.paths
    }
    return Prepared(frames, pl.concat(rejected), files, counts)


def run(
    con: duckdb.DuckDBPyConnection,
    settings: IngestSettings,
    books: str | Path,
    ratings: str | Path,
    users: str | Path,
    *,
    force: bool = False,
    progress: Progress | None = None,
) -> IngestResult:
    """Ingest three Book-Crossing files into `con`; a no-op when inputs and settings are unchanged."""
    step = progress or (lambda _msg: None)
    started = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    t0 = time.perf_counter()
    step(STEPS[0])
    inputs = load_inputs(settings, books, ratings, users)
    resolved = settings.resolved()
    fp = pipeline.fingerprint(resolved, inputs.fingerprints)
    if not force and pipeline.is_current(con, STAGE, fp):
        return IngestResult(fp, skipped=True, seconds=time.perf_counter() - t0)
    run_id = f"{started:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    with db.transaction(con):
        # Each table is written while the next file is read and cleaned (DuckDB releases the
        # GIL). Still one transaction: a failure in preparing or writing rolls it all back.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-write") as writer:
            writes: list[Future[int]] = []

            def write(src: str, frame: pl.DataFrame) -> None:
                writes.append(writer.submit(db.replace_table, con, src, frame))

            prep = prepare(settings, inputs, step, on_table=write)
            step(STEPS[-1])
            for done in writes:
                done.result()
        db.replace_table(
            con, "rejected_rows", prep.rejected.select(pl.lit(run_id).alias("run_id"), pl.all())
        )
        db.execute(
            con,
            "ingest_run_insert",
            {
                "run_id": run_id,
                "started_at": started,
                "finished_at": dt.datetime.now(dt.UTC).replace(tzinfo=None),
                "fingerprint": fp,
                "files": json.dumps(prep.files, sort_keys=True),
                "counts": json.dumps(prep.counts, sort_keys=True),
            },
        )
        summary = {s: prep.counts[s]["loaded"] for s in prep.frames}
        summary |= {"rejected": prep.counts["rejected_total"], "run_id": run_id}
        pipeline.record(con, STAGE, fp, resolved, inputs.fingerprints, summary)
    seconds = time.perf_counter() - t0
    return IngestResult(
        fp, skipped=False, run_id=run_id, files=prep.files, counts=prep.counts, seconds=seconds
    )
