"""NCF with and without side features (reader age bucket, book genre facet) on real Book-Crossing.

Ingests ../shared/data/bookcrossing, enriches every book offline (zero-shot MiniLM labeller),
builds the facets, makes the default split (per-user holdout 80/20, seed 2020), then trains NCF
twice on that split, the same seed and settings except `side_features`, and prints full-ranking
and sampled metrics side by side (the prototype tried these side features).

Run: flock /tmp/bookrec-bench.lock .venv/bin/python -u bench/ncf_side_features.py [--db /tmp/bx_side.duckdb]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import duckdb
from bookcrossing_leaderboard import DATA

from engine import db, enrich, facets, ingest
from engine.enrich.settings import EnrichSettings
from engine.models import runs, split, stage

COLUMNS = ["recall@20", "ndcg@20", "hit@20", "coverage@20", "sampled_hr@10", "sampled_ndcg@10"]


def prepare(path: str) -> tuple[duckdb.DuckDBPyConnection, split.SplitInfo]:
    """Real Book-Crossing ingested, enriched offline and faceted in `path` (each stage is skipped
    when already done), and the default split."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    con = db.connect(path)
    t = time.perf_counter()
    ingest.run(
        con, ingest.IngestSettings(), DATA / "Books.csv", DATA / "Ratings.csv", DATA / "Users.csv"
    )
    enrich.run(con, EnrichSettings(provider="zero-shot", only_missing=True))
    facets.run(con, facets.load())
    print(f"ingest + zero-shot enrichment + facets: {time.perf_counter() - t:.0f} s", flush=True)
    return con, split.ensure(con, None)


def compare(
    con: duckdb.DuckDBPyConnection, model: str, variants: list[tuple[str, dict]], db_path: str
) -> list[tuple[str, runs.RunRecord, float]]:
    """Train `model` once per (label, settings) on the current split; (label, run, seconds)."""
    out = []
    for label, settings in variants:
        t = time.perf_counter()
        rec = stage.train(con, model, settings, db_path=Path(db_path), force=True).record
        out.append((label, rec, time.perf_counter() - t))
        print(f"{model} {label}: {out[-1][2]:.0f} s", flush=True)
    return out


def print_table(first: str, rows: list[tuple[str, runs.RunRecord, float]]) -> None:
    """The runs as a Markdown table: full-ranking and sampled metrics, best epoch, seconds."""
    print(f"| {first} | " + " | ".join(COLUMNS) + " | best epoch | s |")
    print("|---" * (len(COLUMNS) + 3) + "|")
    for label, rec, secs in rows:
        cells = " | ".join(f"{rec.metrics.get(c, float('nan')):.4f}" for c in COLUMNS)
        print(f"| {label} | {cells} | {rec.params.get('best_epoch')} | {secs:.0f} |")


def main() -> None:
    """Prepare the database once, train NCF without then with side features, print a table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", default="/tmp/bx_side.duckdb")
    ap.add_argument("--epochs", type=int, default=40, help="cap (early stopping on valid)")
    args = ap.parse_args()
    con, info = prepare(args.db)
    base = {"epochs": args.epochs, "progress": False}
    rows = compare(
        con,
        "ncf",
        [
            ("none", {**base, "side_features": False}),
            ("age bucket + genre facet", {**base, "side_features": True}),
        ],
        args.db,
    )
    con.close()
    print(f"\nsplit {info.split_id}; NCF defaults, epochs <= {args.epochs}, seed fixed\n")
    print_table("side features", rows)


if __name__ == "__main__":
    main()
