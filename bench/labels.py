"""The zero-shot labeller on real books: bookcover30 (5,700 books, 30 Amazon categories, 190 each).

    flock /tmp/bookrec-bench.lock .venv/bin/python bench/labels.py [--data ../shared/data/bookcover30]
        [--limit N] [--repeats 3]

Measured in one run, on one embedding of each book's "title, author" line:
- the naive baseline: MiniLM cosine of "title, author" with the 30 category names, top-1 / top-3;
- the labeller (engine.enrich.zeroshot) with the 30 names as its label set, step by step (each
  calibration step switched on in turn, so every idea has its own number);
- the same with a description per category (bench/data/bookcover30_vocab.toml, the kind of file
  `bookrec enrich --vocab` reads; written once from the category names, before measuring);
- bookrec's default genre vocabulary mapped onto the 30 categories through DEFAULT_TO_BOOKCOVER30
  (below; every default genre has one category, every category at least one genre), against the
  old labeller's ranking (zs1: 'Label: description' cosine, no calibration) in the same run;
- how well the confidences are calibrated (accuracy per confidence bucket) and what the
  "unknown" threshold costs and buys.
No bookcover30 label is used to fit anything: the categories only score the result. The handful
of knobs in engine.enrich.zeroshot.Calibration were chosen looking at these numbers; the two
halves (even / odd rows) are printed so a reader can see how much that matters.
Prints a markdown block for docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from engine import embed  # noqa: E402
from engine.enrich import vocab  # noqa: E402
from engine.enrich.prompt import BookRef  # noqa: E402
from engine.enrich.zeroshot import (  # noqa: E402
    RULES,
    Calibration,
    ZeroShotLabeller,
    calibrate,
    pick_scored,
    softmax,
)

DATA = ROOT.parent / "shared" / "data" / "bookcover30"
VOCAB_FILE = ROOT / "bench" / "data" / "bookcover30_vocab.toml"

# bookrec's default genre labels -> the bookcover30 (Amazon) category whose shelf holds them.
# Where Amazon files a genre under a broader shelf (Horror, Poetry, Westerns under Literature &
# Fiction; Philosophy under Politics & Social Sciences) the broader shelf is used.
DEFAULT_TO_BOOKCOVER30: dict[str, str] = {
    "Mystery": "Mystery, Thriller & Suspense",
    "Thriller": "Mystery, Thriller & Suspense",
    "Crime": "Mystery, Thriller & Suspense",
    "True Crime": "Mystery, Thriller & Suspense",
    "Romance": "Romance",
    "Science Fiction": "Science Fiction & Fantasy",
    "Fantasy": "Science Fiction & Fantasy",
    "Dystopian": "Science Fiction & Fantasy",
    "Paranormal": "Science Fiction & Fantasy",
    "Horror": "Literature & Fiction",
    "Literary Fiction": "Literature & Fiction",
    "Historical Fiction": "Literature & Fiction",
    "Adventure": "Literature & Fiction",
    "Classics": "Literature & Fiction",
    "Drama": "Literature & Fiction",
    "Short Stories": "Literature & Fiction",
    "Western": "Literature & Fiction",
    "Poetry": "Literature & Fiction",
    "Chick Lit": "Literature & Fiction",
    "Biography": "Biographies & Memoirs",
    "History": "History",
    "War": "History",
    "Cooking": "Cookbooks, Food & Wine",
    "Self-Help": "Self-Help",
    "Children's": "Children's Books",
    "Young Adult": "Teen & Young Adult",
    "Graphic Novel": "Comics & Graphic Novels",
    "Humor": "Humor & Entertainment",
    "Entertainment": "Humor & Entertainment",
    "Philosophy": "Politics & Social Sciences",
    "Politics": "Politics & Social Sciences",
    "Religion": "Religion & Spirituality",
    "Spirituality": "Religion & Spirituality",
    "Christian": "Christian Books & Bibles",
    "Science": "Science & Math",
    "Nature": "Science & Math",
    "Mathematics": "Science & Math",
    "Psychology": "Health, Fitness & Dieting",
    "Health": "Health, Fitness & Dieting",
    "Business": "Business & Money",
    "Travel": "Travel",
    "Art": "Arts & Photography",
    "Music": "Arts & Photography",
    "Sports": "Sports & Outdoors",
    "Reference": "Reference",
    "Education": "Reference",
    "Computers": "Computers & Technology",
    "Crafts": "Crafts, Hobbies & Home",
    "Parenting": "Parenting & Relationships",
    "Law": "Law",
    "Medicine": "Medical Books",
    "Engineering": "Engineering & Transportation",
    "Test Preparation": "Test Preparation",
    "Calendars": "Calendars",
}


def load_books(data: Path = DATA, limit: int | None = None) -> tuple[list[BookRef], list[str]]:
    """(books, categories) from book30-listing-test.csv; `limit`: an even spread over categories."""
    import ftfy

    with open(data / "book30-listing-test.csv", encoding="latin-1", newline="") as fh:
        rows = [r for r in csv.reader(fh) if len(r) == 7]
    if limit is not None:
        per = max(1, limit // 30)
        seen: dict[str, int] = {}
        kept = []
        for r in rows:
            if seen.get(r[6], 0) < per:
                seen[r[6]] = seen.get(r[6], 0) + 1
                kept.append(r)
        rows = kept[:limit]
    books = [
        BookRef(
            r[1].split(".")[0], ftfy.fix_text(r[3]).strip(), ftfy.fix_text(r[4]).strip() or None
        )
        for r in rows
    ]
    return books, [r[6] for r in rows]


def accuracy(
    scores: np.ndarray, y: np.ndarray, rows: np.ndarray | None = None
) -> tuple[float, float]:
    """(top-1, top-3) of category scores (books x 30) against category indices."""
    if rows is not None:
        scores, y = scores[rows], y[rows]
    order = np.argsort(-scores, axis=1, kind="stable")
    return float((order[:, 0] == y).mean()), float((order[:, :3] == y[:, None]).any(axis=1).mean())


def names_vocabulary(
    names: Sequence[str], descriptions: dict[str, str] | None = None
) -> vocab.Vocabulary:
    """A Vocabulary whose genre field is the 30 categories (other fields: defaults, unused here)."""
    genre = {n: (descriptions or {}).get(n, "") for n in names}
    return vocab.Vocabulary({**vocab.VOCABULARIES, "genre": genre}, ("genre",), "bookcover30")


def mapped(conf: np.ndarray, labels: list[str], names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Default-vocabulary confidences -> (category of the top genre as one-hot, summed confidence)."""
    cols = np.array([names.index(DEFAULT_TO_BOOKCOVER30[lab]) for lab in labels])
    summed = np.zeros((conf.shape[0], len(names)))
    np.add.at(summed.T, cols, conf.T)
    top = np.zeros_like(summed)
    top[np.arange(conf.shape[0]), cols[conf.argmax(axis=1)]] = 1.0
    return top, summed


def measure(books: list[BookRef], cats: list[str]) -> dict:
    """Every number of the report (one embedding of the books, reused by every variant)."""
    names = sorted(set(cats))
    y = np.array([names.index(c) for c in cats])
    authors = [b.author for b in books]
    out: dict = {"n": len(books), "rows": [], "timings": {}}
    t0 = time.perf_counter()
    base = ZeroShotLabeller(fields=("genre",))
    vectors = base.embed_books(books)  # "title, author" (bookcover30 has no publisher or year)
    out["timings"]["embed_books_s"] = time.perf_counter() - t0
    halves = (np.arange(len(books)) % 2 == 0, np.arange(len(books)) % 2 == 1)

    def row(name: str, scores: np.ndarray) -> None:
        t1, t3 = accuracy(scores, y)
        h = [accuracy(scores, y, m)[0] for m in halves]
        out["rows"].append({"variant": name, "top1": t1, "top3": t3, "even": h[0], "odd": h[1]})

    naive = vectors @ embed.encode(names).T
    row("naive: cosine with the 30 names (baseline)", naive)
    plain = Calibration(
        templates=("{}",), name_parts=False, descriptions=False, center=False,
        prototype_rounds=0, author_weight=0.0,
    )  # fmt: skip
    steps = [
        ("+ 4 templates per name", replace(plain, templates=Calibration().templates)),
        ("+ multi-part names scored per part", replace(plain, templates=Calibration().templates, name_parts=True)),
        ("+ label priors (centering)", replace(Calibration(), prototype_rounds=0, author_weight=0.0, descriptions=False)),
        ("+ prototypes from the catalogue", replace(Calibration(), author_weight=0.0, descriptions=False)),
        ("+ author prior (= labeller, names only)", replace(Calibration(), descriptions=False)),
    ]  # fmt: skip
    vocab30 = names_vocabulary(names)
    t0 = time.perf_counter()
    for name, cal in steps:
        lab = ZeroShotLabeller(vocabulary=vocab30, calibration=cal, fields=("genre",))
        row(name, lab.scores(vectors, "genre", authors)[1])
    out["timings"]["variants_s"] = time.perf_counter() - t0
    full = Calibration()
    described = vocab.load_vocab(VOCAB_FILE)
    lab = ZeroShotLabeller(vocabulary=described, calibration=full, fields=("genre",))
    row(
        "labeller + a description per category (--vocab file)",
        lab.scores(vectors, "genre", authors)[1],
    )
    out["names_top1"] = next(r["top1"] for r in out["rows"] if r["variant"].startswith("+ author"))
    # default vocabulary, mapped
    old = ZeroShotLabeller(calibration=replace(plain, descriptions=True), fields=("genre",))
    old_scores = vectors @ old._encode(vocab.label_texts("genre")[1]).T  # zs1's genre ranking
    new = ZeroShotLabeller(fields=("genre",))
    t0 = time.perf_counter()
    labels, conf = new.confidences(vectors, "genre", authors)
    out["timings"]["label_s"] = time.perf_counter() - t0
    old_top, old_sum = mapped(old_scores, labels, names)
    new_top, new_sum = mapped(conf, labels, names)
    out["mapped"] = []
    for name, top, summed in (
        ("zs1 (old labeller's ranking)", old_top, old_sum),
        ("labeller (default vocabulary)", new_top, new_sum),
    ):
        t1 = accuracy(top, y)[0]
        s1, s3 = (
            accuracy(summed, y) if name.startswith("labeller") else (None, None)
        )  # zs1: no probabilities
        out["mapped"].append({"variant": name, "top1": t1, "sum_top1": s1, "sum_top3": s3})
    out["mapped_top1"] = out["mapped"][1]["top1"]
    # calibration and the unknown threshold, on the default vocabulary's stored labels
    kept = pick_scored(conf, RULES["genre"])
    cols = [names.index(DEFAULT_TO_BOOKCOVER30[lab]) for lab in labels]
    top_conf = conf.max(axis=1)
    right = np.array([cols[j] for j in conf.argmax(axis=1)]) == y
    buckets = []
    for lo, hi in ((0, 0.1), (0.1, 0.2), (0.2, 0.35), (0.35, 0.5), (0.5, 0.75), (0.75, 1.01)):
        m = (top_conf >= lo) & (top_conf < hi)
        if m.any():
            buckets.append(
                {
                    "range": f"{lo:.2f}-{min(hi, 1):.2f}",
                    "n": int(m.sum()),
                    "mean_conf": float(top_conf[m].mean()),
                    "acc": float(right[m].mean()),
                }
            )
    out["buckets"] = buckets
    known = np.array([bool(k) for k in kept])
    any_right = np.array([any(cols[j] == yi for j, _ in k) for k, yi in zip(kept, y, strict=True)])
    out["unknown"] = {
        "threshold": RULES["genre"].threshold,
        "unknown_share": float(1 - known.mean()),
        "acc_known": float(right[known].mean()) if known.any() else 0.0,
        "acc_unknown": float(right[~known].mean()) if (~known).any() else 0.0,
        "any_label_right": float(any_right.mean()),
        "labels_per_book": float(np.mean([len(k) for k in kept])),
    }
    return out


def strip_brackets(title: str) -> str:
    """The title without '(Series, Book 2)' / '[Edition]' parts."""
    return re.sub(r"\s*[\(\[][^\)\]]*[\)\]]", "", title).strip() or title


def ideas(books: list[BookRef], cats: list[str]) -> list[dict]:
    """Ideas tried on top of the labeller (names as the label set) and not kept, each with its number;
    plus a supervised linear probe on the same vectors (5-fold, it *uses* the categories: a
    diagnostic ceiling of what "title, author" MiniLM vectors hold, not a labeller)."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict

    names = sorted(set(cats))
    y = np.array([names.index(c) for c in cats])
    authors = [b.author for b in books]
    lab = ZeroShotLabeller(vocabulary=names_vocabulary(names), fields=("genre",))
    v = lab.embed_books(books)
    base = lab.scores(v, "genre", authors)[1]
    out = [
        {
            "idea": "labeller, names only (as above)",
            "top1": accuracy(base, y)[0],
            "top3": accuracy(base, y)[1],
        }
    ]

    def add(name: str, scores: np.ndarray) -> None:
        t1, t3 = accuracy(scores, y)
        out.append({"idea": name, "top1": t1, "top3": t3})

    # several views of a book: + title without brackets, + main title (before ':'), raw scores averaged
    t_only = lab._encode([strip_brackets(b.title) for b in books])
    main_t = lab._encode([strip_brackets(b.title).split(":")[0] for b in books])
    raw = [lab.raw_scores(x, "genre")[1] for x in (v, t_only, main_t)]
    add("3 views (title+author, title w/o brackets, main title), scores averaged",
        calibrate(sum(raw) / 3, v, lab.calibration, authors))  # fmt: skip
    # smoothing over each book's 10 nearest books (embedding space), weight 0.5
    sim = v @ v.T
    np.fill_diagonal(sim, -1)
    nn = np.argpartition(-sim, 10, axis=1)[:, :10]
    add("+ kNN smoothing (10 nearest books, weight 0.5)", 0.5 * base + 0.5 * base[nn].mean(axis=1))
    del sim
    # self-training: logistic regression on the 60 % most confident books per predicted label
    z = (base - base.mean()) / base.std()
    p = softmax(z, 0.6)
    pred, conf = p.argmax(1), p.max(1)
    keep = np.zeros(len(y), bool)
    for c in np.unique(pred):
        idx = np.where(pred == c)[0]
        keep[idx[np.argsort(-conf[idx])[: max(1, int(0.6 * len(idx)))]]] = True
    clf = LogisticRegression(C=1.0, max_iter=300).fit(v[keep], pred[keep])
    lp = np.full(base.shape, -30.0)
    lp[:, clf.classes_] = clf.predict_log_proba(v)
    lp = lp - lp.mean(0)
    add("+ self-training (logistic regression on confident pseudo-labels), mix 0.5",
        0.5 * z + 0.5 * lp / lp[:, clf.classes_].std())  # fmt: skip
    # lexical view: naive Bayes EM over title words + author token, from the soft assignment
    x = CountVectorizer(binary=True, min_df=2, stop_words="english",
                        token_pattern=r"(?u)\b[a-zA-Z][a-zA-Z]+\b").fit_transform(
        [f"{b.title} {(b.author or '').replace(' ', '_')}" for b in books]).astype(np.float32)  # fmt: skip
    zc = base - base.mean(0)
    zc = zc / zc.std()
    cur = zc
    for _ in range(3):
        q = softmax(cur, 0.3)
        theta = (np.asarray(x.T @ q).T + 0.1) / (q.sum(0)[:, None] + 0.2)
        ll = np.asarray(x @ (np.log(theta) - np.log1p(-theta)).T) + np.log1p(-theta).sum(1)[None, :]
        ll = ll - ll.mean(0)
        cur = 0.5 * zc + 0.5 * ll / ll.std()
    add("+ lexical naive-Bayes EM on title words (3 rounds, mix 0.5)", cur)
    probe = cross_val_predict(
        LogisticRegression(C=10, max_iter=500), v, y, cv=5, method="predict_proba"
    )
    add("diagnostic: supervised linear probe, 5-fold (uses the categories)", probe)
    return out


def main() -> None:
    """Run the measurement (repeats for timing) and print a markdown block for docs/BENCHMARKS.md."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=1, help="runs; timings are the median")
    ap.add_argument("--ideas", action="store_true", help="also measure the ideas not kept (once)")
    args = ap.parse_args()
    books, cats = load_books(args.data, args.limit)
    runs = [measure(books, cats) for _ in range(args.repeats)]
    r = runs[0]
    tim = {k: statistics.median(x["timings"][k] for x in runs) for k in r["timings"]}
    print(f"### Zero-shot labels on bookcover30 ({time.strftime('%Y-%m-%d')})\n")
    limit = (f" --limit {args.limit}" if args.limit else "") + (" --ideas" if args.ideas else "")
    print(
        f"- command: `flock /tmp/bookrec-bench.lock .venv/bin/python bench/labels.py --repeats {args.repeats}{limit}`"
    )
    print(
        f"- machine: {platform.machine()}, {os.cpu_count()} CPU cores, no GPU; shared with other work"
    )
    print(f"- {r['n']:,} books; median of {args.repeats} run(s): embedding the books {tim['embed_books_s']:.1f} s, "
          f"labelling them (default vocabulary, genre) {tim['label_s']:.2f} s; accuracies are deterministic\n")  # fmt: skip
    print(
        "| 30 category names as the label set | top-1 | top-3 | top-1 even rows | top-1 odd rows |"
    )
    print("| --- | ---: | ---: | ---: | ---: |")
    for x in r["rows"]:
        print(
            f"| {x['variant']} | {x['top1']:.3f} | {x['top3']:.3f} | {x['even']:.3f} | {x['odd']:.3f} |"
        )
    print(
        "\n| default genre vocabulary, mapped to the 30 categories | top-1 genre's category | top-1 by summed confidence | top-3 by summed confidence |"
    )
    print("| --- | ---: | ---: | ---: |")
    for x in r["mapped"]:
        s1, s3 = (f"{x[k]:.3f}" if x[k] is not None else "-" for k in ("sum_top1", "sum_top3"))
        print(f"| {x['variant']} | {x['top1']:.3f} | {s1} | {s3} |")
    print("\n| top-1 confidence (default vocabulary) | books | mean confidence | top-1 right |")
    print("| --- | ---: | ---: | ---: |")
    for b in r["buckets"]:
        print(f"| {b['range']} | {b['n']:,} | {b['mean_conf']:.3f} | {b['acc']:.3f} |")
    u = r["unknown"]
    print(f"\nGenre threshold {u['threshold']}: {u['unknown_share']:.1%} of books get no genre (unknown); "
          f"top-1 right for {u['acc_known']:.1%} of the labelled ones vs {u['acc_unknown']:.1%} of the unknown ones; "
          f"{u['labels_per_book']:.2f} genre labels per book, any of them right for {u['any_label_right']:.1%}.")  # fmt: skip
    if args.ideas:
        print("\n| idea tried on the labeller (30 names), not kept | top-1 | top-3 |")
        print("| --- | ---: | ---: |")
        for x in ideas(books, cats):
            print(f"| {x['idea']} | {x['top1']:.3f} | {x['top3']:.3f} |")


if __name__ == "__main__":
    main()
