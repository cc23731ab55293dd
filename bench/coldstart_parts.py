"""Content vectors as separate parts, on the cold-start protocol of bench/coldstart.py (issue 12).

    flock /tmp/bookrec-bench.lock .venv/bin/python bench/coldstart_parts.py [--seeds 0 1 2]
        [--data ../shared/data/bookcrossing] [--db /tmp/bx.duckdb]

One MiniLM embedding of each book's "title, author" line (the naive profile), then, in the same
run and on the same split, variants that add parts to it instead of putting label text into the
embedded string:
- facets: the zero-shot labeller's labels (zs2, default vocabulary, every field) as the
  confidence-weighted mean of their label vectors, or as hard kept labels;
- author / publisher identity: a fixed random unit vector per author (publisher), so a profile
  built from a reader's books scores other books by the same author (imprint) higher.
Each variant is unit(sum of weighted parts) in the same 384 dimensions. Recall@20 of the
held-out books (10 % of rated books, every rating hidden), median over seeds, for the cold slot
and the whole catalogue. No rating of a held-out book is used; the weights are a coarse grid, so
run a second set of seeds (e.g. --seeds 3 4 5) to see that the choice holds.
`bookrec content` now builds the author + publisher parts by default (engine.facets.content,
hash-seeded identity vectors instead of this script's sequence); bench/coldstart.py measures it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from engine import db, embed, ingest  # noqa: E402
from engine.enrich import vocab  # noqa: E402
from engine.enrich import zeroshot as zs  # noqa: E402
from engine.facets import coldstart, content  # noqa: E402


def identity_vectors(keys: list[str | None], dim: int, seed: int) -> np.ndarray:
    """A fixed random unit vector per normalised key (zeros for missing / too-short keys)."""
    rng = np.random.default_rng(seed)
    table: dict[str, np.ndarray] = {}
    out = np.zeros((len(keys), dim), np.float32)
    for i, raw in enumerate(keys):
        key = zs.author_key(raw)
        if len(key) < 3:
            continue
        if key not in table:
            x = rng.standard_normal(dim).astype(np.float32)
            table[key] = x / np.linalg.norm(x)
        out[i] = table[key]
    return out


def facet_vectors(v: np.ndarray, authors: list[str | None]) -> tuple[np.ndarray, np.ndarray]:
    """(confidence-weighted, hard) label-vector means of the zero-shot labels of every field."""
    lab = zs.ZeroShotLabeller()
    soft, hard = np.zeros_like(v), np.zeros_like(v)
    for f in vocab.FIELDS:
        _, conf = lab.confidences(v, f, authors)
        label_vecs = lab._encode(vocab.label_texts(f)[1])
        soft += conf @ label_vecs
        kept = np.zeros_like(conf)
        for i, row in enumerate(zs.pick_scored(conf, zs.RULES[f])):
            for j, _ in row:
                kept[i, j] = 1.0
        hard += kept @ label_vecs
    return zs._unit(soft), zs._unit(hard)


def main() -> None:
    """Prepare, embed once, evaluate every variant on the same splits; print a markdown table."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "bookcrossing")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--db", type=Path, default=None, help="reuse an ingested database")
    args = ap.parse_args()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.db or Path(tmp) / "parts.duckdb"
        if not path.exists():
            con = db.connect(path)
            d = args.data
            ingest.run(
                con, ingest.IngestSettings(), d / "Books.csv", d / "Ratings.csv", d / "Users.csv"
            )
            con.close()
        con = db.connect(path, read_only=True)
        books = db.fetch(con, "SELECT isbn, title, author, publisher FROM books ORDER BY isbn")
        inter = db.query(
            con,
            "content_interactions",
            {"min_rating": content.ContentSettings().profile_min_rating},
        )
        con.close()
    isbns = books["isbn"].to_list()
    inter = inter.filter(pl.col("isbn").is_in(isbns))
    authors, publishers = books["author"].to_list(), books["publisher"].to_list()
    texts = [
        ", ".join(x for x in ((t or "").strip(), (a or "").strip()) if x)
        for t, a in zip(books["title"], authors, strict=True)
    ]
    v = embed.encode(texts, 256)
    t_embed = time.perf_counter() - t0
    soft, hard = facet_vectors(v, authors)
    a_id = identity_vectors(authors, v.shape[1], 1)
    p_id = identity_vectors(publishers, v.shape[1], 2)

    def unit(x: np.ndarray) -> np.ndarray:
        return zs._unit(x).astype(np.float32)

    variants = {
        'naive profile: "title, author" (baseline)': v,
        "+ zero-shot facets, hard labels (0.5)": unit(v + 0.5 * hard),
        "+ zero-shot facets weighted by confidence (0.2)": unit(v + 0.2 * soft),
        "+ author identity (0.5)": unit(v + 0.5 * a_id),
        "+ author identity (1.0)": unit(v + a_id),
        "+ author (1.0) + publisher identity (0.3)": unit(v + a_id + 0.3 * p_id),
        "+ author (1.0) + publisher (0.3) + facets by confidence (0.2)": unit(
            v + 0.2 * soft + a_id + 0.3 * p_id
        ),
    }
    splits = [coldstart.split_cold_books(inter, 0.1, s) for s in args.seeds]
    rows = []
    for name, x in variants.items():
        got: dict[str, list[float]] = {"cold": [], "all": []}
        for seed, (train, held) in zip(args.seeds, splits, strict=True):
            for cands in got:
                res = coldstart.cold_book_recall(
                    train, held, isbns, x, k=20, seed=seed, candidates=cands
                )
                got[cands].append(res["recall_content"])
        rows.append((name, statistics.median(got["cold"]), statistics.median(got["all"])))
    print(f"- {len(isbns):,} books, {inter.height:,} interactions; seeds {args.seeds}; "
          f"embedding {t_embed:.0f} s, total {time.perf_counter() - t0:.0f} s\n")  # fmt: skip
    print(
        "| content vector | recall@20 cold slot | x naive | recall@20 whole catalogue | x naive |"
    )
    print("| --- | ---: | ---: | ---: | ---: |")
    base = rows[0]
    for name, cold, full in rows:
        print(
            f"| {name} | {cold:.4f} | {cold / base[1]:.2f}x | {full:.4f} | {full / base[2]:.2f}x |"
        )


if __name__ == "__main__":
    main()
