"""Every model on real Book-Crossing: tuned on validation by `bookrec tune`, judged once on test.

Ingests ../shared/data/bookcrossing into a DuckDB file (default: a fresh temp dir), makes
bookrec's default split (per-user random holdout, 20 % test, 10 % of the rest valid, seed 2020),
then for each model:

1. `bookrec tune` (engine.models.tune.run: Optuna TPE on the validation part, test never loaded)
   with `--trials` trials, stopping after `--timeout` seconds (per model; `--budget M=S`
   overrides one model's, e.g. LightGCN's 20 minutes, `M=0` keeps its defaults); models without
   a search space, or with `--trials 0`, keep their defaults;
2. `bookrec train --model M --tuned` (fit on train, test metrics with train + valid masked);

and prints one Markdown table of test recall@20 / ndcg@20 with the valid recall that selected
the settings, the tuning and fit times and the chosen settings. `--final` then refits the
validation winner on train + valid (the refit_ protocol, judged on test) as `train --final` does.

Run: flock /tmp/bookrec-bench.lock .venv/bin/python -u bench/bookcrossing_classic.py
     flock /tmp/bookrec-bench.lock .venv/bin/python -u bench/bookcrossing_classic.py \\
         --models popularity,rp3beta,hybrid --trials 20 --timeout 120 --final
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import psutil

from engine import db, ingest
from engine.errors import ConfigError
from engine.models import build, final, split, stage, tune

DATA = (
    Path(
        os.environ.get(
            "BOOKREC_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"
        )
    )
    / "bookcrossing"
)
MODELS = ["popularity", "itemknn", "rp3beta", "hybrid", "ease", "als", "bpr", "gfcf", "chebycf"]
QUIET = {"progress": False}  # for epoch-based models


def prepare(db_path: Path) -> tuple[Any, split.SplitInfo]:
    """Ingest the real subset and make (or reuse) the default split."""
    con = db.connect(db_path)
    t = time.perf_counter()
    ingest.run(
        con, ingest.IngestSettings(), DATA / "Books.csv", DATA / "Ratings.csv", DATA / "Users.csv"
    )
    info = split.run(con, split.SplitSettings())
    print(f"ingest + split {info.split_id}: {time.perf_counter() - t:.1f} s; {info.summary}")
    return con, info


def _quiet(name: str) -> dict[str, Any]:
    fields = set(getattr(build(name).settings, "__dataclass_fields__", {}))
    return {k: v for k, v in QUIET.items() if k in fields}


def one(con: Any, name: str, trials: int, timeout: float, db_path: Path) -> dict[str, Any]:
    """Tune (when it has a space) then train with the tuned settings; the row of the table."""
    tune_s, tuned, settings = 0.0, False, {}
    if trials > 0:
        try:
            t = time.perf_counter()
            result = tune.run(
                con,
                name,
                tune.TuneSettings(trials=trials, timeout=timeout),
                new=True,
                progress=lambda line: print(f"  {line}", flush=True),
            )
            tune_s, tuned, settings = time.perf_counter() - t, True, result.best_params
        except ConfigError as exc:  # no search space: the defaults it is
            print(f"{name}: not tuned ({exc})")
    t = time.perf_counter()
    rec = stage.train(con, name, _quiet(name), db_path=db_path, force=True, tuned=tuned).record
    total = time.perf_counter() - t
    print(f"{name}: tune {tune_s:.0f} s, train stage {total:.1f} s, timings {rec.timings}")
    return {
        "model": name,
        "metrics": rec.metrics,
        "tune_s": tune_s,
        "fit_s": rec.timings.get("fit_s", float("nan")),
        "settings": settings,
        "epoch": rec.params.get("best_epoch"),
    }


def _short(settings: dict[str, Any]) -> str:
    return ", ".join(
        f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in settings.items()
    )


def main() -> None:
    """Ingest, split, tune and train each model, print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", default=None, help="DuckDB file (default: a fresh temp dir)")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--trials", type=int, default=20, help="Optuna trials per model (0: defaults)")
    ap.add_argument("--timeout", type=float, default=120.0, help="tuning seconds per model")
    ap.add_argument(
        "--budget",
        action="append",
        default=[],
        help="M=S: tuning seconds of one model (0: its defaults, untuned)",
    )
    ap.add_argument("--final", action="store_true", help="refit the valid winner on train+valid")
    args = ap.parse_args()
    budgets = {m: float(s) for m, s in (b.split("=") for b in args.budget)}
    db_path = Path(args.db or Path(tempfile.mkdtemp(prefix="bx-classic-")) / "bookrec.duckdb")
    con, info = prepare(db_path)
    rows = []
    for name in args.models.split(","):
        try:
            budget = budgets.get(name, args.timeout)
            rows.append(one(con, name, args.trials if budget > 0 else 0, budget, db_path))
        except Exception as exc:  # a benchmark keeps going: one broken model must not hide the rest
            print(f"{name}: FAILED {type(exc).__name__}: {exc}")
            traceback.print_exc(limit=3)
    refit = None
    if args.final and rows:
        best = max(rows, key=lambda r: r["metrics"].get("valid_recall@20", -1.0))
        t = time.perf_counter()
        res = final.train_final(con, best["model"], _quiet(best["model"]), db_path=db_path)
        refit = (best["model"], res.refit_metrics, time.perf_counter() - t)
    con.close()
    print()
    print(
        f"machine: {platform.machine()} {psutil.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, load {os.getloadavg()[0]:.1f}; split "
        f"{info.split_id}, {info.summary['test_users']:,} test users, {info.summary['items']:,} "
        f"items; {args.trials} trials / {args.timeout:.0f} s per model {budgets or ''}"
    )
    print("| model | test recall@20 | test ndcg@20 | valid recall@20 | tune s | fit s | settings |")
    print("|---|---|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: -r["metrics"].get("recall@20", 0)):
        m = r["metrics"]
        cells = [
            f"{m.get(k, float('nan')):.4f}" for k in ("recall@20", "ndcg@20", "valid_recall@20")
        ]
        epoch = f", epoch {r['epoch']}" if r["epoch"] else ""
        print(
            f"| {r['model']} | "
            + " | ".join(cells)
            + f" | {r['tune_s']:.0f} | {r['fit_s']:.1f} | {_short(r['settings']) or 'defaults'}{epoch} |"
        )
    if refit:
        name, m, seconds = refit
        print(
            f"\nrefit of {name} on train + valid, judged on test ({seconds:.0f} s with the all-data "
            f"refit): {json.dumps({k: round(v, 4) for k, v in m.items() if k.endswith('@20')})}"
        )


if __name__ == "__main__":
    main()
