"""Book-Crossing ingestion: any known CSV format -> cleaned Polars frames -> DuckDB, atomically.

`run(con, settings, books, ratings, users)` is the stage; `formats` recognises files, `read`
parses them (Polars fast path, line-level fallback with line numbers), `clean` holds the pure
cleaning rules. `run_append(con, settings, ratings, books=, users=)` (module `append`) upserts a
day's new files into an ingested database with the same reading, cleaning and run records.
"""

from engine.ingest.append import run_append
from engine.ingest.stage import (
    STAGE,
    STEPS,
    IngestResult,
    IngestSettings,
    Inputs,
    Prepared,
    load_inputs,
    prepare,
    run,
)

__all__ = [
    "STAGE",
    "STEPS",
    "IngestResult",
    "IngestSettings",
    "Inputs",
    "Prepared",
    "load_inputs",
    "prepare",
    "run",
    "run_append",
]
