"""Book-Crossing leaderboard: every model on one split, full ranking + the prototype's sampled metric.

Ingests ../shared/data/bookcrossing into a DuckDB file, makes the split (default: per-user random
holdout 80/20 with 10 % of the rest for validation, seed 2020), trains each model with its
default settings (epochs capped by --epochs), then re-evaluates every current run with
`bookrec evaluate`'s code and prints a Markdown table for docs/BENCHMARKS.md. Runs land in
model_runs of that file, so the table can be re-read with `bookrec evaluate --db PATH`.

Run: flock /tmp/bookrec-bench.lock .venv/bin/python bench/bookcrossing_leaderboard.py [--db /tmp/bx.duckdb]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import traceback
from pathlib import Path

import psutil

from engine import db, ingest
from engine.evaluate import leaderboard
from engine.models import runs, split, stage

DATA = (
    Path(
        os.environ.get(
            "BOOKREC_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"
        )
    )
    / "bookcrossing"
)
MODELS = ["popularity", "mf", "ncf", "lightgcn", "gfcf"]
COLUMNS = ["recall@20", "ndcg@20", "precision@20", "hit@20", "recall@10", "ndcg@10", "coverage@20"]


def main() -> None:
    """Ingest, split, train every model, print the leaderboard."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", default="/tmp/bx.duckdb")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument(
        "--epochs", type=int, default=50, help="cap for sampled models (early stopping on valid)"
    )
    ap.add_argument(
        "--lr", type=float, default=None, help="learning rate of sampled models (default: theirs)"
    )
    ap.add_argument("--method", default="holdout", choices=["holdout", "loo"])
    ap.add_argument("--positives", default="all", choices=["all", "explicit", "threshold"])
    args = ap.parse_args()
    con = db.connect(args.db)
    t = time.perf_counter()
    ingest.run(
        con, ingest.IngestSettings(), DATA / "Books.csv", DATA / "Ratings.csv", DATA / "Users.csv"
    )
    print(f"ingest: {time.perf_counter() - t:.1f} s")
    info = split.run(con, split.SplitSettings(method=args.method, positives=args.positives))
    print(f"split {info.split_id}: {info.summary}")
    for name in args.models.split(","):
        overrides = (
            {}
            if name in ("popularity", "gfcf", "ease")
            else {"epochs": args.epochs, "progress": False}
        )
        if args.lr is not None and overrides:
            overrides["lr"] = args.lr
        t = time.perf_counter()
        try:
            rec = stage.train(con, name, overrides, db_path=Path(args.db)).record
        except (
            Exception
        ) as exc:  # a benchmark keeps going: one broken model must not hide the others
            print(f"{name}: FAILED {type(exc).__name__}: {exc}")
            traceback.print_exc(limit=2)
            continue
        print(
            f"{name}: {time.perf_counter() - t:.1f} s total, timings {rec.timings}, best epoch {rec.params.get('best_epoch')}"
        )
    entries = leaderboard.evaluate(con)
    epochs = {
        r["run_id"]: json.loads(r["timings"] or "{}").get("epochs", "-")
        for r in runs.current_runs(con).iter_rows(named=True)
    }
    con.close()
    print()
    print(
        f"machine: {platform.machine()} {psutil.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB; "
        f"split {info.split_id} ({info.method}), {info.summary['test_users']:,} test users, "
        f"{info.summary['items']:,} items"
    )
    head = ["model", *COLUMNS, "sampled HR@10", "sampled NDCG@10", "fit s", "epochs"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for e in entries:
        m = e.metrics
        cells = [f"{m[c]:.4f}" if c in m else "-" for c in COLUMNS]
        sampled = [f"{m[c]:.4f}" if c in m else "-" for c in ("sampled_hr@10", "sampled_ndcg@10")]
        fit = f"{e.fit_s:.1f}" if e.fit_s is not None else "-"
        print(
            f"| {e.model} | "
            + " | ".join(cells + sampled)
            + f" | {fit} | {epochs.get(e.run_id, '-')} |"
        )


if __name__ == "__main__":
    main()
