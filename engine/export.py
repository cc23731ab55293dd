"""Data out: every table of the bookrec file as Parquet, for Spark, Trino and DuckDB itself.

Layout (one directory per table, as Hive / Spark / Trino expect a table location to be):

- `ratings/bucket=<b>/part_0.parquet`: Hive-partitioned by `bucket = user_id mod buckets` (16),
  so a reader can prune or parallelise by reader; the bucket is in the path only, never in the
  files (Spark refuses a column that is in both);
- `user_embeddings`, `item_embeddings`, `recommendations`, `item_neighbours`, `item_weights`:
  the current runs only (`model_runs.is_current`), partitioned by `run_id=<id>`;
- `split_interactions/split_id=<id>/`;
- every other table: `<table>/data_0.parquet`.

Snappy compression (what every Parquet reader supports). `manifest.json` lists each table's rows,
files (relative paths), partition columns, filter and DuckDB column types. The export is written
into a sibling directory and renamed into place at the end, so a failed export leaves no half
directory at `out`; `overwrite` replaces only a previous export (a directory with our manifest).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from engine import __version__, db
from engine.errors import ConfigError

MANIFEST = "manifest.json"
FORMATS = ("parquet",)
CURRENT_RUN_TABLES = (
    "user_embeddings",
    "item_embeddings",
    "recommendations",
    "item_neighbours",
    "item_weights",
)
_BY_SPLIT = ("split_interactions",)
_BUCKETED = ("ratings",)


@dataclass(frozen=True)
class ExportSettings:
    """`bookrec export` ([export] in bookrec.toml, BOOKREC_EXPORT_*)."""

    format: str = "parquet"
    buckets: int = 16  # ratings partitions: bucket = user_id mod buckets

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}")
        if not 1 <= self.buckets <= 1024:
            raise ValueError("buckets must be between 1 and 1024")


@dataclass
class ExportResult:
    out: Path
    tables: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rows(self) -> int:
        return sum(t["rows"] for t in self.tables)

    @property
    def files(self) -> int:
        return sum(len(t["files"]) for t in self.tables)


def check_out(out: Path, overwrite: bool) -> None:
    """Refuse a path we must not write: a file, or a non-empty directory (unless a previous export)."""
    if out.exists() and not out.is_dir():
        raise ConfigError("--out is a file, not a directory", where=str(out))
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not overwrite:
        raise ConfigError(
            "output directory is not empty",
            where=str(out),
            hint="Pass --overwrite to replace a previous export, or choose another --out",
        )
    if not _is_export(out):
        raise ConfigError(
            f"output directory is not empty and holds no bookrec {MANIFEST}; not deleting it",
            where=str(out),
            hint="Choose an empty or new --out directory",
        )


def _is_export(path: Path) -> bool:
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("generator") == "bookrec export"


def _copy_sql(name: str, table: str) -> str:
    if not re.fullmatch(r"[A-Za-z_]\w*", table):
        raise ValueError(f"bad table name {table!r}")
    return db.query_sql(name).replace("{table}", f'"{table}"')


def _layout(table: str) -> tuple[str, list[str], str | None]:
    """(named COPY query, partition columns, row filter in words) for one table."""
    if table in _BUCKETED:
        return "export_copy_bucketed", ["bucket"], None
    if table in CURRENT_RUN_TABLES:
        return "export_copy_current_runs", ["run_id"], "current runs (model_runs.is_current)"
    if table in _BY_SPLIT:
        return "export_copy_by_split", ["split_id"], None
    return "export_copy", [], None


def _copy(
    con: duckdb.DuckDBPyConnection, table: str, staging: Path, buckets: int
) -> dict[str, Any]:
    name, partition_by, row_filter = _layout(table)
    target = staging / table
    params: dict[str, Any] = {"path": str(target)}
    if name == "export_copy_bucketed":
        params["buckets"] = buckets
    if name == "export_copy":
        target.mkdir(parents=True, exist_ok=True)
        params["path"] = str(target / "data_0.parquet")
    rows, files = con.execute(_copy_sql(name, table), params).fetchall()[0]
    if partition_by and not files:
        # An empty partitioned table writes no file at all; one empty file keeps its schema.
        target.mkdir(parents=True, exist_ok=True)
        empty = str(target / "data_0.parquet")
        rows, files = con.execute(_copy_sql("export_copy", table), {"path": empty}).fetchall()[0]
        if name == "export_copy_current_runs":
            rows = 0  # the table's rows are all from runs no longer current
        partition_by = []
    columns = db.query(con, "export_columns", {"table": table}).to_dicts()
    return {
        "name": table,
        "path": table,
        "rows": int(rows),
        "files": sorted(Path(f).relative_to(staging).as_posix() for f in files),
        "partition_by": partition_by,
        "partition_rule": f"bucket = user_id mod {buckets}" if partition_by == ["bucket"] else None,
        "filter": row_filter,
        "columns": columns,
    }


def export(
    con: duckdb.DuckDBPyConnection,
    out: str | Path,
    settings: ExportSettings = ExportSettings(),
    *,
    overwrite: bool = False,
    database: str | None = None,
) -> ExportResult:
    """Write every table to `out` as Parquet plus manifest.json; returns what was written."""
    t0 = time.perf_counter()
    out = Path(out)
    check_out(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        tables = [
            _copy(con, t, staging, settings.buckets)
            for t in db.query(con, "export_tables")["table_name"].to_list()
        ]
        manifest = {
            "generator": "bookrec export",
            "bookrec_version": __version__,
            "format": settings.format,
            "compression": "snappy",
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "database": database,
            "schema_version": db.query(con, "export_schema_version").item(),
            "hive_partitioning": True,
            "tables": tables,
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        _swap_in(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ExportResult(out, tables, time.perf_counter() - t0)


def _swap_in(staging: Path, out: Path) -> None:
    """Rename the finished export into place (the old export, if any, removed only after)."""
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(out, old)
    os.replace(staging, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
