"""The ingest stage: recognise, read and clean three files, then swap them into DuckDB atomically."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
import uuid
from collections.abc import Callable, Mapping
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
    """What one `run` (or `run_append`) did: skipped as up to date, or loaded with these counts."""

    fingerprint: str
    skipped: bool
    run_id: str | None = None
    files: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    mode: Literal["full", "append"] = "full"


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
    return load_files(settings, {"books": books, "users": users, "ratings": ratings})


def load_files(settings: IngestSettings, given: Mapping[str, str | Path]) -> Inputs:
    """Load and recognise the files given per source (books, users, ratings, or some of them)."""
    paths = {src: Path(given[src]) for src in formats.SOURCES if src in given}

    def load(src: str) -> tuple[bytes, dict[str, Any]]:
        data = formats.load_bytes(src, paths[src])
        return formats.strip_bom(data), _file_fingerprint(paths[src], data)

    # File reads and SHA-256 release the GIL: the files load side by side. map() yields in
    # order, so the first unusable file (books, users, ratings) is still the one reported.
    with ThreadPoolExecutor(max_workers=len(paths)) as pool:
        loaded = dict(zip(paths, pool.map(load, paths), strict=True))
    blobs = {src: blob for src, (blob, _) in loaded.items()}
    prints = {src: fp for src, (_, fp) in loaded.items()}
    fmts = {
        src: formats.sniff(src, paths[src], blobs[src], settings.format, settings.encoding)
        for src in paths
    }
    return Inputs(paths, blobs, fmts, prints)


def prepare_source(
    settings: IngestSettings, inputs: Inputs, src: str, progress: Progress | None = None
) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, Any]]:
    """Read and clean one file: its cleaned table (no `line`), rejected rows and counts."""
    step = progress or (lambda _msg: None)
    step(f"reading {src}")
    result = read.read_file(inputs.formats[src], inputs.blobs[src])
    step(f"cleaning {src}")
    cleaned = _clean(src, result.frame, settings, settings.resolved()["max_year"])
    rows = _rejected_rows(src, result, cleaned)
    return cleaned.frame.drop("line"), rows, _source_counts(result, cleaned, rows)


def file_records(inputs: Inputs) -> dict[str, Any]:
    """Per file, what ingest_runs.files holds: path, name, bytes, SHA-256 and detected format."""
    return {
        src: {
            "path": str(inputs.paths[src]),
            **inputs.fingerprints[src],
            **inputs.formats[src].describe(),
        }
        for src in inputs.paths
    }


def rejected_total(counts: Mapping[str, Any]) -> int:
    """All rejected rows over the per-source counts."""
    return sum(sum(c["rejected"].values()) for c in counts.values() if isinstance(c, dict))


def new_run_id(started: dt.datetime) -> str:
    """A sortable, unique ingest run id: start time plus 8 random hex digits."""
    return f"{started:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


def utcnow() -> dt.datetime:
    """Now in UTC, naive (as TIMESTAMP columns store it)."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def insert_run(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    started: dt.datetime,
    fp: str,
    files: Mapping[str, Any],
    counts: Mapping[str, Any],
) -> None:
    """The ingest_runs row of one run (full or append); call inside its transaction."""
    db.execute(
        con,
        "ingest_run_insert",
        {
            "run_id": run_id,
            "started_at": started,
            "finished_at": utcnow(),
            "fingerprint": fp,
            "files": json.dumps(files, sort_keys=True),
            "counts": json.dumps(counts, sort_keys=True),
        },
    )


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
    frames: dict[str, pl.DataFrame] = {}
    rejected: list[pl.DataFrame] = []
    counts: dict[str, Any] = {"mode": "full"}
    for src in formats.SOURCES:
        frames[src], rows, counts[src] = prepare_source(settings, inputs, src, progress)
        rejected.append(rows)
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
    counts["rejected_total"] = rejected_total(counts)
    return Prepared(frames, pl.concat(rejected), file_records(inputs), counts)


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
    started = utcnow()
    t0 = time.perf_counter()
    step(STEPS[0])
    inputs = load_inputs(settings, books, ratings, users)
    resolved = settings.resolved()
    fp = pipeline.fingerprint(resolved, inputs.fingerprints)
    if not force and pipeline.is_current(con, STAGE, fp):
        return IngestResult(fp, skipped=True, seconds=time.perf_counter() - t0)
    run_id = new_run_id(started)
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
        insert_run(con, run_id, started, fp, prep.files, prep.counts)
        summary = {s: prep.counts[s]["loaded"] for s in prep.frames}
        summary |= {"rejected": prep.counts["rejected_total"], "run_id": run_id}
        pipeline.record(con, STAGE, fp, resolved, inputs.fingerprints, summary)
    seconds = time.perf_counter() - t0
    return IngestResult(
        fp, skipped=False, run_id=run_id, files=prep.files, counts=prep.counts, seconds=seconds
    )
