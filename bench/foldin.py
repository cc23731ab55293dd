"""Fold-in quality on real Book-Crossing: new readers from their training books vs the trained model.

    flock /tmp/bookrec-bench.lock .venv/bin/python bench/foldin.py --db /tmp/bx.duckdb \
        [--models rp3beta hybrid itemknn als mf] [--readers 2000] [--mf-epochs 10] [--mf-lr 0.001]

The database must be ingested (`bookrec ingest ...` of ../shared/data/bookcrossing). Each model is
trained with `stage.train` on the current split (item weights written with the run). For a sample
of test readers (readers with test books):

* trained: the fitted model's own scores for the reader (model.score, rebuilt from the run's state
  file), train and valid books masked, recall@20 on their test books;
* fold-in: `Store.fold_in(model, their train books, exclude = their valid books)`, the serving
  path of POST /api/v1/recommendations, as if they were new; same readers, same run;
* held out (embedding models, `--holdout`): the model is refitted in-process with those readers'
  rows removed from the training matrix, and their vectors solved by the same fold-in rule from
  the refitted item vectors: the fair version (the model never saw them).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine import db, foldin, query  # noqa: E402
from engine.models import checkpoint, split, stage  # noqa: E402
from engine.models.base import Dataset, build, from_state  # noqa: E402

SETTINGS = {
    "rp3beta": {},
    "hybrid": {},
    "itemknn": {},
    "als": {},
    "mf": {"epochs": 10},
    "lightgcn": {"epochs": 20},
    "ease": {},
    "gfcf": {},
}


def recall_at(top: list[int] | np.ndarray, truth: set[int], k: int = 20) -> float:
    return len(set(list(top)[:k]) & truth) / min(k, len(truth))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", type=Path, required=True)
    ap.add_argument("--models", nargs="+", default=["rp3beta", "hybrid", "itemknn", "als", "mf"])
    ap.add_argument("--readers", type=int, default=2000)
    ap.add_argument("--mf-epochs", type=int, default=10)
    ap.add_argument("--mf-lr", type=float, default=1e-3)
    ap.add_argument("--holdout", nargs="*", default=["als", "mf"])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    SETTINGS["mf"].update(epochs=args.mf_epochs, lr=args.mf_lr)
    con = db.connect(args.db)
    runs = {}
    for name in args.models:
        t0 = time.perf_counter()
        res = stage.train(con, name, SETTINGS.get(name, {}), db_path=args.db, force=True)
        runs[name] = res.record
        print(
            f"{name}: trained {res.record.run_id} in {time.perf_counter() - t0:.1f} s", flush=True
        )
    info = split.current(con)
    model0 = build(args.models[0], SETTINGS.get(args.models[0], {}))
    data, maps = stage.dataset_for(con, model0, info)
    con.close()

    rng = np.random.default_rng(args.seed)
    test = data.test.tocsr()
    candidates = np.flatnonzero(np.diff(test.indptr) > 0)
    candidates = candidates[np.diff(data.train.indptr)[candidates] > 0]
    readers = np.sort(rng.choice(candidates, min(args.readers, candidates.size), replace=False))
    print(f"{readers.size} test readers (of {candidates.size} with train and test books)")
    isbn_at = {s: i for i, s in enumerate(maps.isbns.tolist())}
    store = query.Store(args.db)
    rows = []
    for name in args.models:
        record = runs[name]
        model = from_state(checkpoint.load(record.state_path))
        masked = stage.known(data, "valid")
        trained, folded, t_fold, exact = [], [], [], []
        for u in readers:
            truth = set(test[u].indices.tolist())
            with torch.no_grad():
                s = model.score(torch.tensor([u])).float().numpy()[0].astype(np.float64)
            s[masked[u].indices] = -np.inf
            trained.append(recall_at(np.argsort(-s, kind="stable")[:20], truth))
            picks = maps.isbns[data.train[u].indices].tolist()
            valid = maps.isbns[data.valid[u].indices].tolist() if data.valid is not None else []
            t = time.perf_counter()
            frame, how = store.fold_in(name, picks, k=20, exclude=valid)
            t_fold.append(time.perf_counter() - t)
            exact.append(bool(how["exact"]))
            folded.append(recall_at([isbn_at.get(i, -1) for i in frame["isbn"].to_list()], truth))
        row = {
            "model": name,
            "method": how["method"],
            "exact": float(np.mean(exact)),  # share of readers whose answer was exact
            "trained": float(np.mean(trained)),
            "foldin": float(np.mean(folded)),
            "ms": 1000 * float(np.median(t_fold)),
        }
        if name in args.holdout:
            row["heldout"] = heldout(name, data, readers, test)
        rows.append(row)
        print(row, flush=True)
    store.close()
    print(
        "\n| model | fold-in rule | exact (share of readers) | recall@20 trained | recall@20 fold-in | ratio | "
        "held out: recall@20 fold-in | median fold-in ms |"
    )
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        ho = f"{r['heldout']:.4f}" if "heldout" in r else "-"
        print(
            f"| {r['model']} | {r['method']} | {r['exact']:.0%} | "
            f"{r['trained']:.4f} | {r['foldin']:.4f} | {r['foldin'] / max(r['trained'], 1e-12):.3f} "
            f"| {ho} | {r['ms']:.1f} |"
        )


def heldout(name: str, data: Dataset, readers: np.ndarray, test) -> float:
    """Refit without the readers' rows, then fold them in from the refitted item vectors."""
    keep = np.ones(data.n_users, dtype=np.float32)
    keep[readers] = 0
    import scipy.sparse as sp

    train = (sp.diags(keep) @ data.train).tocsr()
    train.eliminate_zeros()
    part = Dataset(data.n_users, data.n_items, train, data.valid, None)
    model = build(name, SETTINGS.get(name, {}))
    model.fit(part)
    items = model.item_embeddings()
    params = dataclasses.asdict(model.settings)
    gram = items.astype(np.float64).T @ items.astype(np.float64) if name == "als" else None
    out = []
    for u in readers:
        picked = data.train[u].indices
        vec, _ = foldin.user_vector(name, params, items, picked, gram)  # the API's rule
        s = items @ vec
        s[picked] = -np.inf
        if data.valid is not None:
            s[data.valid[u].indices] = -np.inf
        out.append(recall_at(np.argsort(-s, kind="stable")[:20], set(test[u].indices.tolist())))
    return float(np.mean(out))


if __name__ == "__main__":
    main()
