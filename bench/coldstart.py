"""Cold-start books on the real Book-Crossing subset: hide every rating of 10% of the books, then rank
those books for each reader by content similarity (reader profile · book embedding) vs at random.

    flock /tmp/bookrec-bench.lock .venv/bin/python bench/coldstart.py [--data ../shared/data/bookcrossing]
        [--seeds 0 1 2] [--enrich]

Content embeddings come from title, author and publisher (no ratings are used for the held-out
books); with --enrich the offline zero-shot labeller (engine.enrich) and `bookrec facets` run
first so the text also carries facets. Interactions are implicit ratings and explicit ratings
>= 6 (the profile rule of `bookrec content`); only books present in Books.csv take part.
Two rankings per reader with a held-out book: among the held-out books only (the cold-start slot
of a list) and among every book the reader has not read. Prints a markdown block.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from engine import db  # noqa: E402
from engine.facets import coldstart, content  # noqa: E402


def prepare(db_path: Path, data: Path, enrich: bool) -> dict[str, float]:
    """Ingest the CSVs, optionally enrich + facet, embed content; returns phase timings."""
    from engine import ingest

    con = db.connect(db_path)
    t: dict[str, float] = {}
    start = time.perf_counter()
    ingest.run(
        con, ingest.IngestSettings(), data / "Books.csv", data / "Ratings.csv", data / "Users.csv"
    )
    t["ingest_s"] = time.perf_counter() - start
    if enrich:
        from engine import enrich as enrich_stage
        from engine import facets

        start = time.perf_counter()
        enrich_stage.run(con, enrich_stage.EnrichSettings(provider="zero-shot"))
        t["enrich_s"] = time.perf_counter() - start
        start = time.perf_counter()
        facets.run(con, facets.FacetSettings())
        t["facets_s"] = time.perf_counter() - start
    start = time.perf_counter()
    content.run(con, content.ContentSettings(), force=True)
    t["content_s"] = time.perf_counter() - start
    con.close()
    return t


def evaluate(db_path: Path, seeds: list[int], k: int) -> list[dict[str, float]]:
    """cold_book_recall per seed, for both candidate sets."""
    con = db.connect(db_path, read_only=True)
    emb = db.fetch(con, "SELECT isbn, embedding FROM book_content_embeddings ORDER BY isbn")
    inter = db.query(
        con, "content_interactions", {"min_rating": content.ContentSettings().profile_min_rating}
    )
    con.close()
    isbns = emb["isbn"].to_list()
    vectors = np.array(emb["embedding"].to_numpy(), dtype=np.float32)
    inter = inter.filter(inter["isbn"].is_in(isbns))
    out = []
    for seed in seeds:
        train, held = coldstart.split_cold_books(inter, 0.1, seed)
        for cands in ("cold", "all"):
            res = coldstart.cold_book_recall(
                train, held, isbns, vectors, k=k, seed=seed, candidates=cands
            )
            out.append({"seed": seed, "candidates": cands, **res})
    return out


def main() -> None:
    """Run the measurement and print a markdown block for docs/BENCHMARKS.md."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "bookcrossing")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument(
        "--enrich", action="store_true", help="zero-shot enrichment + facets in the content text"
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "coldstart.duckdb"
        timings = prepare(path, args.data, args.enrich)
        rows = evaluate(path, args.seeds, args.k)
    text = "title, author, publisher" + (", zero-shot facets" if args.enrich else "")
    print(f"### Cold-start books on Book-Crossing ({text}; {time.strftime('%Y-%m-%d')})\n")
    print(
        f"- command: `flock /tmp/bookrec-bench.lock .venv/bin/python bench/coldstart.py"
        f"{' --enrich' if args.enrich else ''}`; seeds {args.seeds}"
    )
    print(
        f"- machine: {platform.machine()}, {os.cpu_count()} CPU cores, no GPU; other processes may be running"
    )
    print(f"- preparation: {', '.join(f'{k} {v:.0f}' for k, v in timings.items())}")
    print(
        f"- 10% of rated books have all their ratings hidden; recall@{args.k} (median over seeds) of a "
        "reader's held-out books, readers with a held-out book and a profile\n"
    )
    print(
        f"| candidates | readers | candidate books | recall@{args.k} content | recall@{args.k} random | ratio "
        f"| hit@{args.k} content | hit@{args.k} random |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for cands in ("cold", "all"):
        sel = [r for r in rows if r["candidates"] == cands]

        def med(key: str, sel: list[dict] = sel) -> float:
            return statistics.median(r[key] for r in sel)

        ratio = med("recall_content") / max(med("recall_random"), 1e-12)
        label = "held-out books only" if cands == "cold" else "all unread books"
        print(
            f"| {label} | {med('n_users'):,.0f} | {med('n_candidates'):,.0f} | {med('recall_content'):.4f} "
            f"| {med('recall_random'):.4f} | {ratio:.1f}x | {med('hit_content'):.4f} | {med('hit_random'):.4f} |"
        )


if __name__ == "__main__":
    main()
