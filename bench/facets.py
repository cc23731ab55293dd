"""Benchmark: `bookrec facets` on a full-size (271,379 books) synthetic book_enrichment table.

    flock /tmp/bookrec-bench.lock .venv/bin/python bench/facets.py [--books 271379] [--repeats 3]

Zero-shot enrichment of the full sample is too slow for this 2-core box, so the benchmark writes a
book_enrichment table with LLM-like labels: 1-5 labels per field, Zipf-popular concepts, each
written in many surface forms (case, suffixes, modifiers, compounds, typos) and a long free-text
tail for themes. It then times the whole CLI command (`bookrec facets --force`, model load
included) several times and reports the median, with the stage's phases, and compares with the
reference cost of embedding every label occurrence instead of each distinct label once
(throughput measured in the same run, extrapolated).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from engine import db  # noqa: E402

CONCEPTS = {
    "genre": (
        "Mystery",
        "Romance",
        "Science Fiction",
        "Fantasy",
        "Horror",
        "Biography",
        "History",
        "Cooking",
        "Self-Help",
        "Children's",
        "Thriller",
        "Poetry",
        "Western",
        "Humor",
        "Literary Fiction",
        "Classics",
        "Adventure",
        "Crime",
        "Historical Fiction",
        "Young Adult",
        "Graphic Novel",
        "Religion",
        "Philosophy",
        "Travel",
        "Science",
        "Business",
        "Psychology",
        "Health",
        "Art",
        "Music",
        "Sports",
        "True Crime",
        "Drama",
        "Short Stories",
        "Essays",
        "Politics",
        "Economics",
        "Parenting",
        "Nature",
        "Gardening",
        "Crafts",
        "Reference",
        "Dystopian",
        "Paranormal",
        "Chick Lit",
        "Spy",
        "Legal Thriller",
        "War",
        "Satire",
        "Memoir",
    ),
    "category": (
        "Fiction",
        "Nonfiction",
        "Novel",
        "Textbook",
        "Reference",
        "Anthology",
        "Graphic Novel",
        "Cookbook",
        "Memoir",
        "Guide",
        "Short Story Collection",
        "Poetry Collection",
        "Essay Collection",
        "Picture Book",
        "Comic",
        "Encyclopedia",
        "Manual",
        "Play",
        "Journal",
        "Biography",
    ),
    "theme": (
        "love",
        "friendship",
        "betrayal",
        "revenge",
        "coming of age",
        "family",
        "war",
        "survival",
        "identity",
        "power",
        "redemption",
        "loss",
        "grief",
        "faith",
        "justice",
        "freedom",
        "ambition",
        "loyalty",
        "courage",
        "isolation",
        "memory",
        "time travel",
        "artificial intelligence",
        "magic",
        "good versus evil",
        "social class",
        "racism",
        "immigration",
        "nature",
        "technology",
        "corruption",
        "forgiveness",
        "greed",
        "sacrifice",
        "hope",
        "fear",
        "madness",
        "obsession",
        "innocence",
        "guilt",
        "jealousy",
        "marriage",
        "motherhood",
        "fatherhood",
        "childhood",
        "aging",
        "death",
        "religion",
        "morality",
        "politics",
        "colonialism",
        "slavery",
        "feminism",
        "adventure",
        "exploration",
        "space",
        "the sea",
        "small towns",
        "city life",
        "crime",
        "murder",
        "secrets",
        "lies",
        "trust",
        "home",
        "belonging",
        "self-discovery",
        "mental illness",
        "addiction",
        "poverty",
        "wealth",
        "education",
        "art",
        "music",
        "food",
        "travel",
        "history",
        "science",
        "the supernatural",
        "monsters",
        "dreams",
    ),
    "tone": (
        "dark",
        "light-hearted",
        "humorous",
        "suspenseful",
        "romantic",
        "melancholic",
        "uplifting",
        "whimsical",
        "gritty",
        "tense",
        "inspirational",
        "witty",
        "satirical",
        "lyrical",
        "somber",
        "hopeful",
        "eerie",
        "nostalgic",
        "informative",
        "thoughtful",
    ),
    "audience": (
        "Adults",
        "Young Adults",
        "Children",
        "Teens",
        "General",
        "Middle Grade",
        "Women",
        "Students",
        "Academics",
        "Professionals",
        "Families",
        "Beginners",
        "Fans of the genre",
        "Book clubs",
    ),
}
LABELS_PER_BOOK = {
    "genre": (1, 3),
    "category": (1, 2),
    "theme": (2, 5),
    "tone": (1, 3),
    "audience": (1, 2),
}
SUFFIX = {
    "genre": ("", " novel", " fiction", "s", " books", " stories", " genre"),
    "category": ("", "s", " book", " (book)"),
    "theme": ("", "s", " themes", " and its consequences"),
    "tone": ("", " tone", " and moving", ", at times"),
    "audience": ("", " readers", " audience"),
}
MODIFIER = (
    "",
    "dark ",
    "classic ",
    "contemporary ",
    "historical ",
    "modern ",
    "epic ",
    "cozy ",
    "light ",
    "literary ",
    "british ",
    "american ",
    "urban ",
    "psychological ",
    "romantic ",
    "very ",
    "gentle ",
)


def variants(concept: str, field: str, rng: np.random.Generator, n: int) -> list[str]:
    """`n` surface forms of one concept; the canonical name first (and the most used)."""
    forms = [concept]
    others = [c for c in CONCEPTS[field] if c != concept]
    while len(forms) < n:
        kind = rng.integers(0, 5)
        base = concept.lower() if rng.random() < 0.5 else concept
        if kind == 0:
            text = base + str(rng.choice(SUFFIX[field]))
        elif kind == 1:
            text = str(rng.choice(MODIFIER)) + base
        elif kind == 2:  # compounds: "Mystery & Thriller", "love / loss"
            text = base + str(rng.choice([" & ", " and ", "/", " / "])) + str(rng.choice(others))
        elif kind == 3 and len(base) > 4:  # a typo
            i = int(rng.integers(1, len(base) - 1))
            text = base[:i] + base[i + 1 :]
        else:
            text = base.upper() if rng.random() < 0.2 else base.title()
        forms.append(text)
    return forms


def synthesize(n_books: int, seed: int = 0) -> pl.DataFrame:
    """A book_enrichment frame of `n_books` rows with LLM-like label multiplicity and noise."""
    rng = np.random.default_rng(seed)
    cols: dict[str, list] = {"isbn": [f"{i:010d}" for i in range(n_books)]}
    for field, concepts in CONCEPTS.items():
        pool: list[str] = []
        weights: list[float] = []
        for rank, concept in enumerate(concepts):
            n_forms = 200 if field == "theme" else 60
            forms = variants(concept, field, rng, n_forms)
            # canonical name ~50% of this concept's uses, Zipf over the rest; concepts Zipf-popular
            inner = np.array([n_forms] + [1.0 / (j + 1) for j in range(n_forms - 1)])
            inner = inner / inner.sum() / (rank + 1) ** 0.9
            pool += forms
            weights += inner.tolist()
        p = np.array(weights) / np.sum(weights)
        lo, hi = LABELS_PER_BOOK[field]
        counts = rng.integers(lo, hi + 1, n_books)
        draws = rng.choice(len(pool), size=int(counts.sum()), p=p)
        labels = np.array(pool, dtype=object)[draws]
        offsets = np.concatenate([[0], np.cumsum(counts)])
        cols[field] = [list(labels[offsets[i] : offsets[i + 1]]) for i in range(n_books)]
    frame = pl.DataFrame(cols, schema={"isbn": pl.Utf8, **{f: pl.List(pl.Utf8) for f in CONCEPTS}})
    return frame.with_columns(
        summary=pl.lit(None, pl.Utf8),
        source=pl.lit("bench:synthetic"),
        prompt_version=pl.lit("bench"),
    )


def run_cli(db_path: Path) -> float:
    """Wall seconds of one `bookrec facets --force` (a fresh process: model load included)."""
    start = time.perf_counter()
    subprocess.run(
        [str(ROOT / ".venv" / "bin" / "bookrec"), "facets", "--db", str(db_path), "--force"],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    return time.perf_counter() - start


def encode_throughput(texts: list[str]) -> float:
    """Texts per second of engine.embed.encode on these texts (after a warm-up)."""
    from engine import embed

    embed.encode(texts[:256], 256)
    start = time.perf_counter()
    embed.encode(texts, 256)
    return len(texts) / (time.perf_counter() - start)


QUERIES = {
    "facet_counts": "SELECT * FROM facet_counts",
    "facet_pairs('genre','tone')": "SELECT * FROM facet_pairs('genre', 'tone')",
    "facet_cooccurrence (all pairs)": "SELECT count(*) FROM facet_cooccurrence",
    "facet_search(genre=Mystery, tone=dark, k=50)": "SELECT * FROM facet_search(filters := [{'field':'genre','label':'Mystery'},"
    " {'field':'tone','label':'dark'}], k := 50)",
}


def time_queries(con, repeats: int = 3) -> dict[str, float]:
    """Median wall ms of a few facet SQL reads on the benchmark database."""
    out = {}
    for name, sql in QUERIES.items():
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            con.sql(sql).fetchall()
            times.append((time.perf_counter() - start) * 1000)
        out[name] = statistics.median(times)
    return out


def main() -> None:
    """Build the synthetic table, time the command, print a markdown block for docs/BENCHMARKS.md."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--books", type=int, default=271_379)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.duckdb"
        t0 = time.perf_counter()
        frame = synthesize(args.books, args.seed)
        con = db.connect(path)
        with db.transaction(con):
            db.replace_table(con, "book_enrichment", frame)
            db.replace_table(
                con, "books", frame.select("isbn", title=pl.lit("Book ") + pl.col("isbn"))
            )
        occurrences = {f: int(frame[f].list.len().sum()) for f in CONCEPTS}
        con.close()
        print(
            f"synthesised {args.books:,} books in {time.perf_counter() - t0:.1f}s", file=sys.stderr
        )
        times = []
        for i in range(args.repeats):
            times.append(run_cli(path))
            print(f"run {i + 1}: {times[-1]:.1f}s", file=sys.stderr)
        con = db.connect(path, read_only=True)
        runs = db.query(con, "facet_runs_all")
        sql_times = time_queries(con)
        summary = json.loads(
            db.fetch(
                con,
                "SELECT summary::VARCHAR AS s FROM stage_runs WHERE stage = 'facets' "
                "ORDER BY finished_at DESC LIMIT 1",
            )["s"][0]
        )
        con.close()
    all_labels = [lab for f in CONCEPTS for labs in frame[f].head(2000).to_list() for lab in labs]
    tput = encode_throughput(all_labels[:8000])
    total_occ = sum(occurrences.values())
    n_keys = int(runs["n_keys"].sum())
    med = statistics.median(times)
    print(f"### `bookrec facets` on {args.books:,} synthetic books ({time.strftime('%Y-%m-%d')})\n")
    print(
        f"- command: `flock /tmp/bookrec-bench.lock .venv/bin/python bench/facets.py --books {args.books} "
        f"--repeats {args.repeats}`"
    )
    print(
        f"- machine: {platform.machine()}, {os.cpu_count()} CPU cores, no GPU; other processes may be running"
    )
    print(
        f"- total `bookrec facets --force` wall time (fresh process, model load included): median "
        f"**{med:.1f} s** over {len(times)} runs ({', '.join(f'{t:.1f}' for t in times)})"
    )
    print(f"- phases of the last run (s): {json.dumps(summary.get('seconds', {}))}")
    print(
        f"- label occurrences {total_occ:,}; distinct raw labels {int(runs['n_raw'].sum()):,}; "
        f"distinct case-folded labels embedded {n_keys:,}"
    )
    print(
        f"- reference (same run): embedding every occurrence at the measured {tput:,.0f} labels/s would take "
        f"~{total_occ / tput:,.0f} s for the embeddings alone, vs {n_keys / tput:,.1f} s for distinct labels "
        f"(**{total_occ / max(n_keys, 1):,.0f}x** fewer encodes)\n"
    )
    print(
        "- SQL on the result (median of 3, ms; books without ratings): "
        + "; ".join(f"`{k}` {v:,.0f}" for k, v in sql_times.items())
        + "\n"
    )
    print("| field | books | raw labels | embedded | k | k source | silhouette |")
    print("| --- | ---: | ---: | ---: | ---: | --- | ---: |")
    for r in runs.iter_rows(named=True):
        sil = f"{r['silhouette']:.3f}" if r["silhouette"] is not None else "-"
        print(
            f"| {r['field']} | {r['n_books']:,} | {r['n_raw']:,} | {r['n_keys']:,} | {r['k']} | {r['k_source']} "
            f"| {sil} |"
        )


if __name__ == "__main__":
    main()
