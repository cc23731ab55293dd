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

from ncf_side_features import compare, prepare, print_table


def main() -> None:
    """Train LightGCN without then with facet nodes on one split and print a table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", default="/tmp/bx_side.duckdb")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--fields", default="genre", help="comma-separated facet fields as nodes")
    args = ap.parse_args()
    con, info = prepare(args.db)
    fields = tuple(f for f in args.fields.split(",") if f)
    # judged once, at the same epoch
    base = {"epochs": args.epochs, "progress": False, "eval_every": args.epochs, "patience": 0}
    rows = compare(
        con,
        "lightgcn",
        [
            ("users-items", {**base, "facet_nodes": ()}),
            (f"+ {'/'.join(fields)} facet nodes", {**base, "facet_nodes": fields}),
        ],
        args.db,
    )
    con.close()
    print(f"\nsplit {info.split_id}; LightGCN defaults, {args.epochs} epochs, seed fixed\n")
    print_table("graph", rows)
    print(f"facet nodes: {rows[1][1].params.get('facet_nodes')}")


if __name__ == "__main__":
    main()
