"""Classic recommenders on real Book-Crossing: item-kNN, RP3beta, EASE, ALS, BPR against popularity.

Ingests ../shared/data/bookcrossing into a fresh DuckDB file, makes bookrec's default split
(per-user random holdout, 20 % test, 10 % of the rest valid, seed 2020), then either

- (default) trains each model at its defaults through `bookrec train`'s stage (fit on train only,
  test metrics with train + valid masked, written back like any run) and prints a Markdown table
  of recall@20 / ndcg@20 on test with the fit time; or
- (--tune N) scores the defaults and then N Optuna trials per model over its `search_space`
  (the defaults are trial 0), each fitted on train and scored on the validation part only
  (recall@20, train items masked), and prints the best settings: how the defaults were chosen.
  The test part is not even loaded in this mode.

Run: flock /tmp/bookrec-bench.lock .venv/bin/python -u bench/bookcrossing_classic.py
     flock /tmp/bookrec-bench.lock .venv/bin/python -u bench/bookcrossing_classic.py \
         --models itemknn --tune 40
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import psutil

from engine import db, ingest
from engine.evaluate.metrics import full_ranking
from engine.models import build, split, stage
from engine.models.base import Dataset, model_class
from engine.models.data import to_dataset
from engine.models.trainer import resolve_device

DATA = (
    Path(
        os.environ.get(
            "BOOKREC_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"
        )
    )
    / "bookcrossing"
)
MODELS = ["popularity", "itemknn", "rp3beta", "ease", "als", "bpr"]


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


def suggest(trial: Any, space: dict[str, tuple]) -> dict[str, Any]:
    """Optuna values for a model's declarative `search_space`."""
    out: dict[str, Any] = {}
    for name, (kind, *args) in space.items():
        if kind in ("cat", "categorical"):
            out[name] = trial.suggest_categorical(name, list(args[0]))
        elif kind in ("int", "int_log"):
            out[name] = trial.suggest_int(name, args[0], args[1], log=kind == "int_log")
        else:
            out[name] = trial.suggest_float(name, args[0], args[1], log=kind == "log")
    return out


def valid_recall(name: str, params: dict[str, Any], data: Dataset) -> tuple[float, float, float]:
    """(recall@20, ndcg@20, fit s) on the validation part of a model fitted on train."""
    model = build(name, params)
    t = time.perf_counter()
    model.fit(data)
    fit_s = time.perf_counter() - t
    m = full_ranking(model.score, data.train, data.valid, ks=(20,), device=resolve_device("auto"))
    return m["recall@20"], m["ndcg@20"], fit_s


def tune(con: Any, info: split.SplitInfo, models: list[str], trials: int, seed: int) -> None:
    """Optuna (TPE, seeded) per model on valid; the defaults go first as trial 0."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    data, _ = to_dataset(split.rows(con, info.split_id))
    data = Dataset(data.n_users, data.n_items, data.train, data.valid, None)  # test is not used
    for name in models:
        space = getattr(model_class(name), "search_space", {})
        if not space or trials <= 0:
            r, n, s = valid_recall(name, {}, data)
            print(f"{name} defaults: valid recall@20 {r:.4f} ndcg@20 {n:.4f} ({s:.1f} s)")
            continue

        def objective(trial: Any, name: str = name, space: dict = space) -> float:
            params = suggest(trial, space)
            r, n, s = valid_recall(name, params, data)
            print(
                f"  {name} #{trial.number} {params}: valid recall@20 {r:.4f} ndcg@20 {n:.4f} ({s:.1f} s)"
            )
            return r

        study = optuna.create_study(
            direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed)
        )
        defaults = build(name, {}).settings
        study.enqueue_trial({k: getattr(defaults, k) for k in space})  # trial 0: the defaults
        study.optimize(objective, n_trials=trials + 1)
        print(
            f"{name} best on valid (trial {study.best_trial.number} of {len(study.trials)}): "
            f"{study.best_params} recall@20 {study.best_value:.4f}"
        )


def table(con: Any, info: split.SplitInfo, models: list[str], db_path: Path) -> None:
    """Train each model at its defaults through the stage; Markdown table of the test metrics."""
    rows = []
    for name in models:
        t = time.perf_counter()
        try:
            rec = stage.train(con, name, {}, db_path=db_path, force=True).record
        except Exception as exc:  # a benchmark keeps going: one broken model must not hide the rest
            print(f"{name}: FAILED {type(exc).__name__}: {exc}")
            traceback.print_exc(limit=2)
            continue
        total = time.perf_counter() - t
        print(f"{name}: {total:.1f} s in all, timings {rec.timings}")
        rows.append((name, rec.metrics, rec.timings["fit_s"], total, rec.scoring))
    print()
    print(
        f"machine: {platform.machine()} {psutil.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, load {os.getloadavg()[0]:.1f}; split "
        f"{info.split_id}, {info.summary['test_users']:,} test users, {info.summary['items']:,} items"
    )
    print(
        "| model | recall@20 | ndcg@20 | hit@20 | coverage@20 | fit s | train stage s | scoring |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, m, fit_s, total, scoring in sorted(rows, key=lambda r: -r[1].get("recall@20", 0)):
        cells = [
            f"{m.get(k, float('nan')):.4f}"
            for k in ("recall@20", "ndcg@20", "hit@20", "coverage@20")
        ]
        print(f"| {name} | " + " | ".join(cells) + f" | {fit_s:.1f} | {total:.1f} | {scoring} |")


def main() -> None:
    """Ingest, split, then tune on valid or train at the defaults and report test."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", default=None, help="DuckDB file (default: a fresh temp dir)")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument(
        "--tune", type=int, default=None, help="Optuna trials per model on valid (0: defaults only)"
    )
    ap.add_argument("--seed", type=int, default=2020, help="Optuna sampler seed")
    args = ap.parse_args()
    db_path = Path(args.db or Path(tempfile.mkdtemp(prefix="bx-classic-")) / "bookrec.duckdb")
    con, info = prepare(db_path)
    models = args.models.split(",")
    try:
        if args.tune is not None:
            tune(con, info, models, args.tune, args.seed)
        else:
            table(con, info, models, db_path)
    finally:
        con.close()


if __name__ == "__main__":
    main()
