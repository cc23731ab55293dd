"""Stage bookkeeping (what the prototype used DVC for): fingerprint inputs + settings, skip unchanged stages."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from engine import db

_CHUNK = 1 << 20


def file_fingerprint(path: Path) -> dict[str, Any]:
    """Name, size and SHA-256 of a file's bytes: identical content gives the same fingerprint."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return {"name": Path(path).name, "bytes": Path(path).stat().st_size, "sha256": h.hexdigest()}


def fingerprint(settings: Mapping[str, Any], inputs: Mapping[str, Any]) -> str:
    """One hash of a stage's settings and input fingerprints (canonical JSON)."""
    blob = json.dumps({"settings": settings, "inputs": inputs}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class StageRun:
    """The last successful run of a stage."""

    stage: str
    fingerprint: str
    settings: dict[str, Any]
    inputs: dict[str, Any]
    summary: dict[str, Any]


def last_run(con: duckdb.DuckDBPyConnection, stage: str) -> StageRun | None:
    """The last successful run of `stage`, or None."""
    row = db.query(con, "stage_last_run", {"stage": stage})
    if row.is_empty():
        return None
    r = row.row(0, named=True)
    return StageRun(
        stage,
        r["fingerprint"],
        json.loads(r["settings"]),
        json.loads(r["inputs"]),
        json.loads(r["summary"]),
    )


def upstream(con: duckdb.DuckDBPyConnection, stage: str) -> str | None:
    """The fingerprint of the last run of an upstream stage; downstream stages fold it into theirs."""
    run = last_run(con, stage)
    return run.fingerprint if run else None


def is_current(con: duckdb.DuckDBPyConnection, stage: str, fp: str) -> bool:
    """True when the last successful run of `stage` had exactly this fingerprint."""
    run = last_run(con, stage)
    return run is not None and run.fingerprint == fp


def record(
    con: duckdb.DuckDBPyConnection,
    stage: str,
    fp: str,
    settings: Mapping[str, Any],
    inputs: Mapping[str, Any],
    summary: Mapping[str, Any],
) -> None:
    """Record a finished stage run; call inside the transaction that swaps in its outputs."""
    db.execute(
        con,
        "stage_record",
        {
            "stage": stage,
            "fingerprint": fp,
            "settings": json.dumps(settings, sort_keys=True, default=str),
            "inputs": json.dumps(inputs, sort_keys=True, default=str),
            "summary": json.dumps(summary, sort_keys=True, default=str),
        },
    )
