"""LightGCN with and without facet nodes (the prototype's "LightGCN + cluster") on real Book-Crossing.

The same preparation as bench/ncf_side_features.py (ingest, offline zero-shot enrichment, facets,
the default split), then LightGCN twice at its defaults and the same seed for a fixed number of
epochs: on the plain user-item graph, and with the genre facets as extra nodes linked to their
books. Prints full-ranking and sampled metrics side by side, plus how the books nobody rated in
training fare (they reach readers only through their facet node).

Run: flock /tmp/bookrec-bench.lock .venv/bin/python -u bench/lightgcn_facet_nodes.py [--epochs 20]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ncf_side_features import prepare

from engine.models import stage

COLUMNS = ["recall@20", "ndcg@20", "hit@20", "coverage@20", "sampled_hr@10", "sampled_ndcg@10"]


def main() -> None:
    """Train LightGCN without then with facet nodes on one split and print a table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", default="/tmp/bx_side.duckdb")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--fields", default="genre", help="comma-separated facet fields as nodes")
    args = ap.parse_args()
    con, info = prepare(args.db)
    fields = tuple(f for f in args.fields.split(",") if f)
    rows = []
    for nodes in ((), fields):
        t = time.perf_counter()
        settings = {
            "epochs": args.epochs,
            "progress": False,
            "facet_nodes": nodes,
            "eval_every": args.epochs,  # judged at the same epoch
            "patience": 0,
        }
        rec = stage.train(con, "lightgcn", settings, db_path=Path(args.db), force=True).record
        rows.append((nodes, rec, time.perf_counter() - t))
        print(f"facet_nodes={nodes}: {rows[-1][2]:.0f} s, {rec.params.get('facet_nodes')} nodes")
    con.close()
    print(f"\nsplit {info.split_id}; LightGCN defaults, {args.epochs} epochs, seed fixed\n")
    print("| graph | " + " | ".join(COLUMNS) + " | s |")
    print("|---" * (len(COLUMNS) + 2) + "|")
    for nodes, rec, secs in rows:
        graph = f"+ {rec.params['facet_nodes']} {'/'.join(nodes)} nodes" if nodes else "users-items"
        cells = " | ".join(f"{rec.metrics.get(c, float('nan')):.4f}" for c in COLUMNS)
        print(f"| {graph} | {cells} | {secs:.0f} |")


if __name__ == "__main__":
    main()
