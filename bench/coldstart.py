"""Cold-start books on the real Book-Crossing subset: hide every rating of 10% of the books, then rank
those books for each reader by content similarity (reader profile · book embedding) vs at random.

    flock /tmp/bookrec-bench.lock .venv/bin/python bench/coldstart.py [--data ../shared/data/bookcrossing]
        [--seeds 0 1 2] [--enrich] [--text] [--db /tmp/bx.duckdb]

It ingests the CSVs into a fresh database (or reuses `--db`, ingesting there only when the file
does not exist yet), then builds the content vectors with `bookrec content`'s own code
(`engine.facets.content.run`) once per variant, in the same run and on the same splits:
- the naive profile (baseline): MiniLM of "title, author" alone (`author_weight = 0`,
  `publisher_weight = 0`);
- `bookrec content` as configured by default (ContentSettings(): the parts of issue 12);
- with --text also the single catalogue string of before ("Title by Author (Publisher, Year).
  facets. summary", `vector = "text"`);
- with --enrich the offline zero-shot labeller and `bookrec facets` run first, and a variant with
  the facets as a confidence-weighted part (`facet_weight = 0.2`) is added.
The text of a book is encoded once and shared between variants. No rating of a held-out book is
used. Interactions are implicit ratings and explicit ratings >= 6 (the profile rule of `bookrec
content`); only books present in Books.csv take part. Two rankings per reader with a held-out
book: among the held-out books only (the cold-start slot of a list) and among every book the
reader has not read. Prints a markdown block (medians over seeds).
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
from engine.facets import coldstart, content, default_encoder  # noqa: E402

NAIVE = 'naive profile: MiniLM "title, author" (baseline)'
PRODUCT = "`bookrec content` default (parts: title, author text + author 1.0 + publisher 0.3)"
TEXT = 'one string "Title by Author (Publisher, Year). facets. summary" (before issue 12)'
FACETS = "default parts + zero-shot facets by confidence (0.2)"


def variants(text: bool, enrich: bool) -> dict[str, content.ContentSettings]:
    """The content settings compared in one run (neighbours off: they do not change the vectors)."""
    out = {
        NAIVE: content.ContentSettings(author_weight=0.0, publisher_weight=0.0, neighbours=0),
        PRODUCT: content.ContentSettings(neighbours=0),
    }
    if text:
        out[TEXT] = content.ContentSettings(vector="text", neighbours=0)
    if enrich:
        out[FACETS] = content.ContentSettings(facet_weight=0.2, neighbours=0)
    return out


def cached_encoder(model: str):
    """MiniLM encode with a memo per text, so variants sharing a text part encode it once."""
    encode = default_encoder(model, 256, None)
    memo: dict[str, np.ndarray] = {}

    def enc(texts: list[str]) -> np.ndarray:
        todo = list(dict.fromkeys(t for t in texts if t not in memo))
        if todo:
            for t, v in zip(todo, encode(todo), strict=True):
                memo[t] = v
        return np.stack([memo[t] for t in texts]) if texts else np.zeros((0, content.DIM))

    enc.__name__ = model
    return enc


def prepare(
    db_path: Path, data: Path, enrich: bool, settings: dict[str, content.ContentSettings]
) -> tuple[dict[str, float], dict[str, tuple[list[str], np.ndarray]]]:
    """Ingest (unless the database exists), optionally enrich + facet, embed every variant."""
    from engine import ingest

    t: dict[str, float] = {}
    fresh = not db_path.exists()
    con = db.connect(db_path)
    if fresh:
        start = time.perf_counter()
        ingest.run(
            con,
            ingest.IngestSettings(),
            data / "Books.csv",
            data / "Ratings.csv",
            data / "Users.csv",
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
    encode = cached_encoder("all-MiniLM-L6-v2")
    vectors = {}
    for name, s in settings.items():
        start = time.perf_counter()
        content.run(con, s, force=True, encoder=encode)
        emb = db.fetch(con, "SELECT isbn, embedding FROM book_content_embeddings ORDER BY isbn")
        vectors[name] = (emb["isbn"].to_list(), np.array(emb["embedding"].to_numpy(), np.float32))
        t[f"content_{len(vectors)}_s"] = time.perf_counter() - start
    con.close()
    return t, vectors


def evaluate(
    db_path: Path, vectors: dict[str, tuple[list[str], np.ndarray]], seeds: list[int], k: int
) -> list[dict]:
    """cold_book_recall per variant, seed and candidate set, on the same splits."""
    con = db.connect(db_path, read_only=True)
    inter = db.query(
        con, "content_interactions", {"min_rating": content.ContentSettings().profile_min_rating}
    )
    con.close()
    isbns = next(iter(vectors.values()))[0]
    inter = inter.filter(inter["isbn"].is_in(isbns))
    splits = {seed: coldstart.split_cold_books(inter, 0.1, seed) for seed in seeds}
    out = []
    for name, (ids, x) in vectors.items():
        assert ids == isbns, "every variant embeds the same books"
        for seed, (train, held) in splits.items():
            for cands in ("cold", "all"):
                res = coldstart.cold_book_recall(
                    train, held, ids, x, k=k, seed=seed, candidates=cands
                )
                out.append({"variant": name, "seed": seed, "candidates": cands, **res})
    return out


def main() -> None:
    """Run the measurement and print a markdown block for docs/BENCHMARKS.md."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "bookcrossing")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument(
        "--enrich", action="store_true", help="zero-shot enrichment + facets, and a facet variant"
    )
    ap.add_argument(
        "--text", action="store_true", help="also the single catalogue string of before issue 12"
    )
    ap.add_argument(
        "--db", type=Path, default=None, help="database to use (ingested there if missing)"
    )
    args = ap.parse_args()
    t0 = time.perf_counter()
    settings = variants(args.text, args.enrich)
    with tempfile.TemporaryDirectory() as tmp:
        path = args.db or Path(tmp) / "coldstart.duckdb"
        timings, vectors = prepare(path, args.data, args.enrich, settings)
        rows = evaluate(path, vectors, args.seeds, args.k)
    flags = "".join(f" --{f}" for f in ("enrich", "text") if getattr(args, f))
    print(f"### Cold-start books on Book-Crossing, naive vs `bookrec content` ({time.strftime('%Y-%m-%d')})\n")  # fmt: skip
    print(
        f"- command: `flock /tmp/bookrec-bench.lock .venv/bin/python bench/coldstart.py{flags}"
        f" --seeds {' '.join(map(str, args.seeds))}`"
    )
    print(
        f"- machine: {platform.machine()}, {os.cpu_count()} CPU cores, no GPU; load average "
        f"{os.getloadavg()[0]:.1f} at the end; total {time.perf_counter() - t0:.0f} s"
    )
    print(f"- preparation: {', '.join(f'{k} {v:.0f}' for k, v in timings.items())}")
    print(
        f"- 10% of rated books have all their ratings hidden; recall@{args.k} (median over seeds) of a "
        "reader's held-out books, readers with a held-out book and a profile\n"
    )
    print(
        f"| content vector | candidates | readers | candidate books | recall@{args.k} | x naive "
        f"| min over seeds x naive | recall@{args.k} random | hit@{args.k} |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name in settings:
        for cands in ("cold", "all"):
            sel = [r for r in rows if r["candidates"] == cands and r["variant"] == name]
            base = {
                r["seed"]: r["recall_content"]
                for r in rows
                if r["candidates"] == cands and r["variant"] == NAIVE
            }

            def med(key: str, sel: list[dict] = sel) -> float:
                return statistics.median(r[key] for r in sel)

            ratio = med("recall_content") / max(statistics.median(base.values()), 1e-12)
            worst = min(r["recall_content"] / max(base[r["seed"]], 1e-12) for r in sel)
            label = "held-out books only" if cands == "cold" else "all unread books"
            print(
                f"| {name} | {label} | {med('n_users'):,.0f} | {med('n_candidates'):,.0f} "
                f"| {med('recall_content'):.4f} | {ratio:.2f}x | {worst:.2f}x "
                f"| {med('recall_random'):.4f} | {med('hit_content'):.4f} |"
            )


if __name__ == "__main__":
    main()
