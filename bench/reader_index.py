"""The readers' index (engine.neighbours.reader_index) against an inner-product IVF, on a run's
real vectors: recall@10 of a reader's best items against the exact scan, and ms per query.

Reads a run's user and item embeddings from a database (`--model`, default: the first current
run with item embeddings), samples `--readers` seeded readers with non-zero vectors and compares,
at each nprobe:
- ip: IVF-Flat with the inner product over the item rows as they are (what the neighbour lists
  use for item-to-item questions);
- lifted: the readers' index, items lifted to [x, sqrt(M^2 - |x|^2)] and searched in L2.
Recall counts an item as found when its exact score (rounded to 1e-6) reaches the exact 10th
(read books are not excluded here: this compares the two indexes; the server's build check,
which does exclude them, is `reader_checked`). Times: one query at a time, one thread.

    .venv/bin/python bench/reader_index.py --db /tmp/xl/bookrec.duckdb --model als
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from engine import neighbours
from engine.query import Store


def _ip_index(x: np.ndarray, seed: int):
    import faiss

    n, d = x.shape
    nlist = max(1, min(n // 39, round(2 * math.sqrt(n))))
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed, index.cp.niter = seed, 10
    rng = np.random.default_rng(seed)
    index.train(x[np.sort(rng.choice(n, min(n, 64 * nlist), replace=False))])
    index.add(x)
    return index


def main() -> None:
    import faiss

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--db", required=True)
    ap.add_argument("--model", default=None)
    ap.add_argument("--readers", type=int, default=500)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--probes", default="8,16,32,64,128,256")
    args = ap.parse_args()

    store = Store(args.db)
    run = store._run(args.model, embeddings=True)
    items = np.ascontiguousarray(store._item_vectors(run["run_id"]).raw, dtype=np.float32)
    _, users = store._user_vectors(run["run_id"])
    store.close()
    rng = np.random.default_rng(0)
    live_users = np.flatnonzero(np.any(users != 0, axis=1))
    q = np.ascontiguousarray(
        users[np.sort(rng.choice(live_users, min(args.readers, live_users.size), False))],
        dtype=np.float32,
    )
    live = np.flatnonzero(np.any(items != 0, axis=1))
    print(
        f"run {run['run_id']} ({run['model']}): {items.shape[0]:,} items, {live.size:,} non-zero, "
        f"dim {items.shape[1]}; {len(q)} sample readers"
    )
    exact, _ = faiss.knn(q, items, args.k, faiss.METRIC_INNER_PRODUCT)
    kth = np.round(exact[:, -1:].astype(np.float64), neighbours.DECIMALS)
    settings = neighbours.load()
    built = {}
    t = time.perf_counter()
    built["ip"] = (_ip_index(np.ascontiguousarray(items[live]), settings.seed), False)
    print(f"ip index built in {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    built["lifted"] = (neighbours.reader_index(items, settings), True)
    print(f"lifted index built in {time.perf_counter() - t:.1f} s")
    print(f"\n| index | nprobe | recall@{args.k} | ms / query |\n| --- | ---: | ---: | ---: |")
    for name, (index, lifted) in built.items():
        queries = np.hstack([q, np.zeros((len(q), 1), np.float32)]) if lifted else q
        ids_of = live if not lifted else None
        for nprobe in (int(p) for p in args.probes.split(",")):
            index.nprobe = min(nprobe, index.nlist)
            faiss.omp_set_num_threads(1)
            t = time.perf_counter()
            for i in range(len(queries)):
                _, found = index.search(queries[i : i + 1], args.k)
            per = (time.perf_counter() - t) / len(queries) * 1000
            _, found = index.search(queries, args.k)
            rows = (
                np.where(found >= 0, found, 0) if ids_of is None else ids_of[np.maximum(found, 0)]
            )
            scores = np.einsum("id,ikd->ik", q.astype(np.float64), items[rows].astype(np.float64))
            hit = (found >= 0) & (np.round(scores, neighbours.DECIMALS) >= kth)
            print(f"| {name} | {index.nprobe} | {hit.sum(1).mean() / args.k:.3f} | {per:.2f} |")


if __name__ == "__main__":
    main()
