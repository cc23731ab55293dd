"""Item-kNN's top-N write-back (`runs.top_n_sparse`) on one thread against torch's threads.

Synthetic implicit data shaped like the xl sample's (power-law readers and books, ~11 books a
reader), item-kNN with `--topk` neighbours per book; the write-back of every reader's top 20,
one thread and `--threads` threads alternately, `--repeats` rounds; prints each time and the
medians, and checks both give the same frame.

    .venv/bin/python bench/topn_sparse.py --users 200000 --items 300000 --topk 400
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import scipy.sparse as sp
import torch

from engine.models import Dataset, build
from engine.models.data import IdMaps
from engine.models.runs import top_n_sparse


def data(users: int, items: int, per_user: float, seed: int) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    deg = rng.lognormal(np.log(per_user) - 0.5, 1.0, users)  # mean per_user, a long tail
    deg = np.clip(deg, 1, items).astype(np.int64)
    pop = 1.0 / (1.0 + np.arange(items)) ** 0.8
    rows = np.repeat(np.arange(users), deg)
    cols = rng.choice(items, size=rows.size, p=pop / pop.sum())
    x = sp.csr_matrix((np.ones(rows.size, np.float32), (rows, cols)), shape=(users, items))
    x.sum_duplicates()
    x.data[:] = 1
    return x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, default=200_000)
    ap.add_argument("--items", type=int, default=300_000)
    ap.add_argument("--per-user", type=float, default=11.0)
    ap.add_argument("--topk", type=int, default=400)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    x = data(args.users, args.items, args.per_user, 0)
    print(f"{x.shape[0]:,} readers x {x.shape[1]:,} books, {x.nnz:,} interactions")
    model = build("itemknn", {"topk": args.topk})
    t = time.perf_counter()
    model.fit(Dataset(x.shape[0], x.shape[1], x))
    print(f"item-kNN fit {time.perf_counter() - t:.1f} s, W {model.weights.nnz:,} entries")
    maps = IdMaps(
        user_ids=np.arange(x.shape[0]), isbns=np.array([f"b{i}" for i in range(x.shape[1])], object)
    )
    users = np.arange(x.shape[0], dtype=np.int64)
    times: dict[int, list[float]] = {1: [], args.threads: []}
    frames = {}
    for _ in range(args.repeats):
        for threads in times:
            torch.set_num_threads(threads)
            t = time.perf_counter()
            frames[threads] = top_n_sparse(model.sparse_scores, users, x, maps, 20)
            times[threads].append(time.perf_counter() - t)
            print(f"  {threads} thread(s): {times[threads][-1]:.1f} s", flush=True)
    assert frames[1].equals(frames[args.threads])
    one, many = statistics.median(times[1]), statistics.median(times[args.threads])
    print(
        f"median: 1 thread {one:.1f} s, {args.threads} threads {many:.1f} s ({one / many:.2f}x); "
        f"{frames[1].height:,} rows, the same frame"
    )


if __name__ == "__main__":
    main()
