"""Time the neighbour lists of `bookrec content` (engine.neighbours.nearest) at full size.

Methods, each timed end to end (ISBNs and vectors in, the (isbn, rank, neighbour, score) frame
out), interleaved run by run so they share the machine's load:
- legacy: the block search this replaced (one torch float32 matrix product + topk per block),
  kept here verbatim for the comparison;
- exact: faiss's exact search (`exact_max` above n);
- ivf / hnsw: the approximate index used above `exact_max`.
recall@20 is measured against the exact lists on `--recall-queries` random books (exact top-20
of those rows over all n vectors, ISBN tie rule).

Vectors: `--vectors FILE.npy` (e.g. real MiniLM rows), else synthetic clustered ones with the
energy profile of real MiniLM titles (as bench/app_synth.py): genre centres x 0.15, plus
group (author/series-like) centres x 0.1, plus noise with amplitude (1+i)^-0.4, unit rows.

    flock /tmp/bookrec-bench.lock .venv/bin/python bench/neighbours.py --runs 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import polars as pl

from engine import neighbours


def clustered(n: int, dim: int = 384, genres: int = 20, groups: int = 5000, seed: int = 0):
    """(n, dim) unit float32 rows: genre + group centres + power-law noise (see module doc)."""
    rng = np.random.default_rng(seed)
    spectrum = ((1.0 + np.arange(dim)) ** -0.4).astype(np.float32)
    genre = rng.standard_normal((genres, dim), dtype=np.float32) * 0.15
    group = rng.standard_normal((groups, dim), dtype=np.float32) * 0.10 * spectrum
    group_genre = rng.integers(0, genres, groups)
    member = rng.integers(0, groups, n)
    x = genre[group_genre[member]] + group[member]
    x += rng.standard_normal((n, dim), dtype=np.float32) * spectrum
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def legacy_nearest(isbns, vectors, k, threads=None) -> pl.DataFrame:
    """The pre-faiss engine.neighbours.nearest (torch block search), for the comparison."""
    import torch

    n = len(isbns)
    k = min(k, n - 1)
    order = np.argsort(np.asarray(isbns, dtype=object), kind="stable")
    rank_of = np.empty(n, dtype=np.int64)
    rank_of[order] = np.arange(n)
    wide = min(n - 1, k + 16)
    block = int(max(64, min(2048, 2**28 // max(n, 1))))
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        arr = np.ascontiguousarray(vectors, dtype=np.float32)
        mat = torch.from_numpy(arr if arr.flags.writeable else arr.copy())
        hits = np.empty((n, k), dtype=np.int64)
        scores = np.empty((n, k), dtype=np.float32)
        for start in range(0, n, block):
            stop = min(n, start + block)
            sims = mat[start:stop] @ mat.T
            sims[torch.arange(stop - start), torch.arange(start, stop)] = -torch.inf
            top_s, top_i = torch.topk(sims, wide, dim=1)
            top_s, top_i = top_s.numpy(), top_i.numpy()
            pick = np.lexsort((rank_of[top_i], -np.round(top_s, 6)), axis=-1)[:, :k]
            hits[start:stop] = np.take_along_axis(top_i, pick, axis=1)
            scores[start:stop] = np.take_along_axis(top_s, pick, axis=1)
    finally:
        torch.set_num_threads(before)
    return neighbours.as_frame(isbns, hits, scores)


def recall(frame: pl.DataFrame, truth: dict[str, set[str]], k: int) -> float:
    """Mean share of each sampled book's exact top-k found in its list."""
    got = frame.filter(pl.col("isbn").is_in(list(truth))).group_by("isbn").agg("neighbour")
    return float(
        np.mean([len(set(h) & truth[i]) / k for i, h in got.iter_rows()]) if got.height else 0.0
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=271_379, help="books (default: full sample, 271,379)")
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--k", type=int, default=neighbours.NEIGHBOURS)
    ap.add_argument("--runs", type=int, default=2, help="timed runs per method (median reported)")
    ap.add_argument("--methods", default="legacy,exact,ivf", help="legacy, exact, ivf, hnsw")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch / faiss threads")
    ap.add_argument("--nprobe", type=int, default=neighbours.NeighbourSettings.nprobe)
    ap.add_argument("--ef-search", type=int, default=neighbours.NeighbourSettings.ef_search)
    ap.add_argument("--recall-queries", type=int, default=2000)
    ap.add_argument("--vectors", help="a (n, dim) float32 .npy file instead of synthetic rows")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    vecs = (
        np.load(args.vectors).astype(np.float32)
        if args.vectors
        else clustered(args.n, args.dim, seed=args.seed)
    )
    n = vecs.shape[0]
    isbns = [f"{i:010d}" for i in np.random.default_rng(args.seed).permutation(n)]
    base = neighbours.NeighbourSettings(nprobe=args.nprobe, ef_search=args.ef_search)
    settings = {
        "exact": neighbours.NeighbourSettings(exact_max=n),
        "ivf": neighbours.NeighbourSettings(**{**base.__dict__, "exact_max": 0}),
        "hnsw": neighbours.NeighbourSettings(
            **{**base.__dict__, "exact_max": 0, "approximate": "hnsw"}
        ),
    }
    queries = np.random.default_rng(args.seed + 1).choice(n, min(n, args.recall_queries), False)
    with neighbours.faiss_threads(args.threads):
        hits, _ = neighbours.exact_rows(vecs, queries, args.k, neighbours.isbn_ranks(isbns))
    truth = {isbns[q]: {isbns[h] for h in row} for q, row in zip(queries, hits, strict=True)}

    methods = args.methods.split(",")
    times: dict[str, list[float]] = {m: [] for m in methods}
    recalls: dict[str, float] = {}
    print(f"n={n:,} dim={vecs.shape[1]} k={args.k} threads={args.threads} load {os.getloadavg()}")
    for run in range(args.runs):
        for m in methods:
            t0 = time.perf_counter()
            if m == "legacy":
                frame = legacy_nearest(isbns, vecs, args.k, args.threads)
            else:
                frame = neighbours.nearest(
                    isbns, vecs, args.k, threads=args.threads, settings=settings[m]
                )
            times[m].append(time.perf_counter() - t0)
            recalls[m] = recall(frame, truth, args.k)
            print(
                f"  run {run + 1} {m}: {times[m][-1]:.1f} s, recall@{args.k} {recalls[m]:.4f}, "
                f"load {os.getloadavg()[0]:.1f}"
            )
    print(f"\n| method | runs, s | median s | recall@{args.k} ({len(queries):,} books) |")
    print("|---|---|---:|---:|")
    for m in methods:
        runs = " / ".join(f"{t:.1f}" for t in times[m])
        print(f"| {m} | {runs} | {statistics.median(times[m]):.1f} | {recalls[m]:.4f} |")


if __name__ == "__main__":
    main()
