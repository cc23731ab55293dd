"""Full-ranking evaluation: score blocks reused (`metrics.ScoreBlocks`) against a fresh block per batch.

Gowalla (29,858 users x 40,981 items, the LightGCN paper's split): the MF / LightGCN scoring path
(`engine.models.lightgcn.MF.score`, [batch, 64] x [64, items]) on seeded random 64-d vectors (what
the evaluation costs does not depend on what was trained), the paper's batch of 2,048 users, the
training items masked, top-20. "fresh" calls the same model without `out`, which is how every
model was scored before: a new [2,048 x 40,981] block per batch. Interleaved, median of --repeats.

With --xl-db (an ingested + split `bookrec sample --size xl` file) it also times popularity's full
ranking of --xl-users test users over the xl catalogue, in blocks of 128 (`just xl`'s setting).

    flock /tmp/bookrec-bench.lock .venv/bin/python bench/evaluation.py [--repeats 3] [--xl-db PATH]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.data.lightgcn_txt import load  # noqa: E402
from engine.evaluate.metrics import full_ranking  # noqa: E402
from engine.models.base import build  # noqa: E402

GOWALLA = ROOT.parent / "shared/data/gowalla"


def timed(score_fn, train, test, users=None, batch_size=2048) -> tuple[float, float, int, float]:
    """(wall s, system s, minor page faults, recall@20) of one full ranking."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    metrics = full_ranking(score_fn, train, test, ks=(20,), batch_size=batch_size, users=users)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_SELF)
    return (
        wall,
        after.ru_stime - before.ru_stime,
        after.ru_minflt - before.ru_minflt,
        metrics["recall@20"],
    )


def compare(label: str, model, train, test, repeats: int, **kw) -> None:
    runs: dict[str, list[tuple]] = {"fresh": [], "reused": []}
    for _ in range(repeats):
        runs["fresh"].append(timed(lambda u: model.score(u), train, test, **kw))
        runs["reused"].append(timed(model.score, train, test, **kw))
    print(f"\n{label}")
    print("| blocks | wall s (runs) | median | system s | page faults | recall@20 |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for mode, rows in runs.items():
        walls = " / ".join(f"{r[0]:.2f}" for r in rows)
        print(
            f"| {mode} | {walls} | {statistics.median(r[0] for r in rows):.2f} | "
            f"{statistics.median(r[1] for r in rows):.2f} | "
            f"{int(statistics.median(r[2] for r in rows)):,} | {rows[0][3]:.5f} |",
            flush=True,
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--xl-db", type=Path, default=None)
    ap.add_argument("--xl-users", type=int, default=2048)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    data = load(GOWALLA / "train.txt", GOWALLA / "test.txt")
    g = torch.Generator().manual_seed(0)
    mf = build("mf", {})
    mf._users = torch.randn(data.n_users, 64, generator=g)
    mf._items = torch.randn(data.n_items, 64, generator=g)
    compare(
        f"Gowalla, {data.n_users:,} users x {data.n_items:,} items, batch 2048, "
        f"{args.threads} threads",
        mf,
        data.train,
        data.test,
        args.repeats,
    )

    if args.xl_db is not None:
        import duckdb

        from engine.models import split, stage

        con = duckdb.connect(str(args.xl_db), read_only=True)
        pop = build("popularity", {})
        xl, _ = stage.dataset_for(con, pop, split.current(con))
        con.close()
        pop.fit(xl)
        users = np.flatnonzero(np.diff(xl.test.indptr) > 0)[: args.xl_users]
        compare(
            f"xl popularity, {len(users):,} test users x {xl.n_items:,} items, batch 128",
            pop,
            stage.known(xl, "valid"),
            xl.test,
            args.repeats,
            users=users,
            batch_size=128,
        )


if __name__ == "__main__":
    main()
