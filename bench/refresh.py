"""New ratings without a rebuild, on real Book-Crossing: `ingest --append` + `refresh` vs retraining.

    flock /tmp/bookrec-bench.lock .venv/bin/python bench/refresh.py --out /tmp/bkrefresh \
        [--models hybrid itemknn als ease] [--share 0.02] [--new-readers 300]

Day 1: the shared subset's Ratings.csv minus a seeded "day 2" slice (a share of every rating plus
every rating of some readers, who are then new) is ingested, split, and each model trained with
`train --final` (its settings defaults). Day 2: the slice is appended with `bookrec ingest
--append` and `bookrec refresh` brings each model's serving run up to date. Printed per model:
the seconds of refresh beside the seconds of the `train --final` that day 1 took (what a
rebuild would cost again), and recall@20 of the served top-20 on "future" books before and after
the refresh: each day-2 rating is either told (appended) or kept back as the reader's future
(seeded, half each), and readers with both are judged (new readers included: before the refresh
they get the popularity fallback). Everything goes through the CLI and the serving layer.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "bookcrossing"
BOOKREC = str(Path(sys.executable).with_name("bookrec"))


def run(*args: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([BOOKREC, *args], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def split_files(
    out: Path, share: float, new_readers: int, seed: int
) -> tuple[Path, Path, pl.DataFrame, int]:
    ratings = pl.read_csv(DATA / "Ratings.csv", infer_schema_length=0)
    rng = np.random.default_rng(seed)
    users = ratings["User-ID"].unique().sort().to_numpy()
    fresh = set(rng.choice(users, min(new_readers, len(users)), replace=False).tolist())
    day2 = pl.Series(rng.random(ratings.height) < share) | ratings["User-ID"].is_in(list(fresh))
    told = pl.Series(rng.random(ratings.height) < 0.5)
    day1_path, day2_path = out / "day1.csv", out / "day2.csv"
    ratings.filter(~day2).write_csv(day1_path)
    ratings.filter(day2 & told).write_csv(day2_path)
    future = ratings.filter(day2 & ~told)
    return day1_path, day2_path, future, int((day2 & told).sum())


def future_recall(db: Path, models: list[str], told: Path, future: pl.DataFrame) -> dict:
    """Mean recall@20 of the served top-20 on each judged reader's future books."""
    sys.path.insert(0, str(ROOT))
    from engine import query

    def norm(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.select(
            pl.col("User-ID").cast(pl.Int64).alias("user"),
            pl.col("ISBN").str.strip_chars().str.to_uppercase().alias("isbn"),
        )

    told_users = set(norm(pl.read_csv(told, infer_schema_length=0))["user"].to_list())
    wanted = norm(future).filter(pl.col("user").is_in(list(told_users)))
    readers = wanted.group_by("user").agg(pl.col("isbn")).sort("user")
    store = query.Store(db)
    out = {"readers": readers.height}
    try:
        for model in models:
            scores = []
            for user, isbns in readers.iter_rows():
                top = store.recommend(model, int(user), k=20)["isbn"].to_list()
                scores.append(len(set(top) & set(isbns)) / min(20, len(isbns)))
            out[model] = float(np.mean(scores))
    finally:
        store.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--models", nargs="+", default=["hybrid", "itemknn", "als", "ease"])
    ap.add_argument("--share", type=float, default=0.02)
    ap.add_argument("--new-readers", type=int, default=300)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    db = args.out / "bx.duckdb"
    db.unlink(missing_ok=True)
    day1, day2, future, n2 = split_files(args.out, args.share, args.new_readers, args.seed)
    base = ["--db", str(db)]
    t_ingest = run(
        "ingest",
        "--books",
        str(DATA / "Books.csv"),
        "--ratings",
        str(day1),
        "--users",
        str(DATA / "Users.csv"),
        *base,
    )
    train_s = {m: run("train", "--model", m, "--final", *base) for m in args.models}
    before = future_recall(db, args.models, day2, future)
    t_append = run("ingest", "--append", "--ratings", str(day2), *base)
    t_again = run("ingest", "--append", "--ratings", str(day2), *base)
    refresh_s = {m: run("refresh", "--model", m, *base) for m in args.models}
    after = future_recall(db, args.models, day2, future)
    rows = [
        {
            "model": m,
            "train --final (day 1) s": round(train_s[m], 1),
            "refresh s": round(refresh_s[m], 1),
            "future recall@20 before": round(before[m], 4),
            "after refresh": round(after[m], 4),
        }
        for m in args.models
    ]
    print(
        f"day 1 ingest {t_ingest:.1f} s; day 2: {n2:,} ratings appended in {t_append:.1f} s "
        f"(same file again: {t_again:.1f} s, nothing added); {before['readers']:,} readers judged"
    )
    print(pl.DataFrame(rows))
    (args.out / "refresh.json").write_text(
        json.dumps(
            {"rows": rows, "append_s": t_append, "append_again_s": t_again, "day2_ratings": n2},
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
