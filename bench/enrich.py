"""Benchmarks of enrichment; each prints a markdown block for docs/BENCHMARKS.md.

    flock /tmp/bookrec-bench.lock .venv/bin/python bench/enrich.py llm [--books 5000] [--repeats 3]
    flock /tmp/bookrec-bench.lock .venv/bin/python bench/enrich.py zeroshot [--subset 10000] [--full]

llm: against the local fake server (300 ms latency, 600 requests/min enforced with 429s), a
fault-free pass, a pass where 10% of requests fail (429 with retry-after: 1, or 500), and a
100-book pass where every fifth request is answered 429, each on a fresh DuckDB file. zeroshot: MiniLM throughput by torch threads and batch size on the sample
generator's full-size book table, agreement with its planted genres, and optionally the whole
271k-book table through the real stage.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from engine import db  # noqa: E402
from engine.enrich import EnrichSettings, run  # noqa: E402
from tests.fake_openai import FakeOpenAI  # noqa: E402


def _db(path: Path, n: int):
    con = db.connect(path)
    frame = pl.DataFrame(
        {
            "isbn": [f"{i:09d}X" for i in range(n)],
            "title": [f"The Mystery of Book {i}" for i in range(n)],
            "author": [f"Author {i % 997}" for i in range(n)],
            "year": [1950 + i % 55 for i in range(n)],
            "publisher": [f"Publisher {i % 101}" for i in range(n)],
        },
        schema_overrides={"year": pl.Int16},
    )
    db.append_table(con, "books", frame)
    return con


def _every_fifth(n: int, _titles: list[str]) -> str | None:
    return "429" if n % 5 == 0 else None


def one(
    n: int, rpm: int, latency: float, fault_rate: float, seed: int, every_fifth: bool = False
) -> dict:
    """One enrichment of `n` books; returns timings, request counts and whether any book was lost."""
    with (
        tempfile.TemporaryDirectory() as tmp,
        FakeOpenAI(
            latency=latency,
            rpm=rpm,
            fault_rate=fault_rate,
            fault_kinds=("429", "500"),
            retry_after=1.0,
            seed=seed,
            fault_for=_every_fifth if every_fifth else None,
        ) as server,
    ):
        con = _db(Path(tmp) / "bench.duckdb", n)
        settings = EnrichSettings(
            provider="openai",
            base_url=server.base_url,
            api_key="sk-bench",
            rpm=rpm,
            tpm=10_000_000,
            concurrency=8,
            batch_size=8,
            seed=seed,
        )
        start = time.perf_counter()
        result = run(con, settings)
        seconds = time.perf_counter() - start
        stored = db.fetch(con, "SELECT count(*) AS n FROM book_enrichment").item()
        statuses = [r.status for r in server.log]
        con.close()
    ok = statuses.count(200)
    return {
        "seconds": seconds,
        "requests": len(statuses),
        "ok": ok,
        "http_429": statuses.count(429),
        "http_500": statuses.count(500),
        "stored": stored,
        "failed": result.stats.failed,
        "rpm_all": len(statuses) / seconds * 60,
        "rpm_ok": ok / seconds * 60,
        "books_per_s": stored / seconds,
    }


def _transport() -> str:
    """Which HTTP transport the enrichment client runs the openai SDK over here."""
    from engine.enrich.llm import LLMClient

    client = LLMClient(model="m", api_key="sk-bench", base_url="http://127.0.0.1:9/v1", timeout=1)
    asyncio.run(client.close())
    return getattr(client, "transport", "httpx")  # older clients had no choice


def llm(args: argparse.Namespace) -> None:
    """The LLM benchmark."""
    import openai

    clean, faulty, fifth = [], [], []
    for r in range(args.repeats):
        clean.append(one(args.books, args.rpm, args.latency, 0.0, seed=r))
        faulty.append(one(args.books, args.rpm, args.latency, args.fault_rate, seed=r))
        fifth.append(one(100, args.rpm, args.latency, 0.0, seed=r, every_fifth=True))
        print(
            f"repeat {r}: clean {clean[-1]}\n          faulty {faulty[-1]}\n"
            f"          every 5th 429 {fifth[-1]}",
            file=sys.stderr,
        )
    med = lambda rows, k: statistics.median(x[k] for x in rows)  # noqa: E731
    ratio = statistics.median(
        f["seconds"] / c["seconds"] for c, f in zip(clean, faulty, strict=True)
    )
    lost = sum(args.books - f["stored"] for f in faulty + clean)
    print(
        f"- command: `flock /tmp/bookrec-bench.lock .venv/bin/python bench/enrich.py llm --books {args.books} "
        f"--repeats {args.repeats}`"
    )
    print(
        f"- machine: {platform.machine()} 2-core CPU, Python {platform.python_version()}, openai "
        f"{openai.__version__} over {_transport()}; client and fake server in one process; "
        f"other jobs were running"
    )
    print(
        f"- server: {args.latency * 1000:.0f} ms latency, {args.rpm} requests/min token bucket (1 s burst), "
        f"429 + retry-after-ms when empty; batch 8, concurrency 8, client rpm {args.rpm}"
    )
    print(
        f"- fault-free (median of {args.repeats}): {med(clean, 'seconds'):.1f} s, {med(clean, 'requests'):.0f} "
        f"requests, {med(clean, 'rpm_ok'):.0f} successful requests/min = "
        f"{med(clean, 'rpm_ok') / args.rpm:.1%} of the limit, {med(clean, 'books_per_s'):.1f} books/s, "
        f"{med(clean, 'http_429'):.0f} rate-limit 429s"
    )
    print(
        f"- {args.fault_rate:.0%} injected faults (429 retry-after 1 s / 500): {med(faulty, 'seconds'):.1f} s, "
        f"{med(faulty, 'requests'):.0f} requests ({med(faulty, 'http_429'):.0f} x 429, "
        f"{med(faulty, 'http_500'):.0f} x 500), books lost {lost}, failed "
        f"{sum(f['failed'] for f in faulty)}; time ratio faulty/fault-free (median) {ratio:.3f} (target <= 1.25)"
    )
    print(
        f"- 100 books, every 5th request answered 429 (retry-after 1 s), max_attempts 5: "
        f"{med(fifth, 'seconds'):.1f} s, {med(fifth, 'requests'):.0f} requests "
        f"({med(fifth, 'http_429'):.0f} x 429), failed {sum(f['failed'] for f in fifth)} "
        f"in {args.repeats} runs"
    )
    print(
        "- per run (s): fault-free "
        + " / ".join(f"{c['seconds']:.1f}" for c in clean)
        + "; faulty "
        + " / ".join(f"{f['seconds']:.1f}" for f in faulty)
    )


def _sample_books(size: str) -> tuple[list, dict]:
    from engine import sample
    from engine.enrich.prompt import BookRef

    data = sample.generate(size, 0)
    truth = dict(data.truth_books.iter_rows())
    books = [
        BookRef(r[0].upper(), r[1], r[2], r[3], r[4])
        for r in data.books.select(
            "ISBN", "Book-Title", "Book-Author", "Year-Of-Publication", "Publisher"
        ).rows()
    ]
    return books, truth


def zeroshot(args: argparse.Namespace) -> None:
    """The zero-shot benchmark."""
    import torch

    from engine import embed
    from engine.enrich.zeroshot import ZeroShotLabeller, book_text

    books, truth = _sample_books("full")
    texts = [book_text(b) for b in books]
    t0 = time.perf_counter()
    embed.load_encoder()
    print(
        f"- model load: {time.perf_counter() - t0:.1f} s; torch {torch.__version__}, default threads "
        f"{torch.get_num_threads()}"
    )
    sweep = texts[: args.sweep]
    rates = {}
    for threads in (1, 2):
        for batch in (32, 128, 512):
            t = time.perf_counter()
            embed.encode(sweep, batch, threads=threads)
            rates[(threads, batch)] = len(sweep) / (time.perf_counter() - t)
            print(
                f"  threads {threads} batch {batch}: {rates[(threads, batch)]:.0f} texts/s",
                file=sys.stderr,
            )
    best = max(rates, key=rates.get)
    print(
        f"- encode sweep on {len(sweep):,} catalogue lines (texts/s, one run each): "
        + ", ".join(f"{t} thread(s) x batch {b}: {r:.0f}" for (t, b), r in rates.items())
    )
    subset = books[: args.subset]
    labeller = ZeroShotLabeller(threads=best[0], batch_size=best[1])
    t = time.perf_counter()
    rows = labeller.label(subset)
    secs = time.perf_counter() - t
    hit = sum(truth.get(r["isbn"]) in r["genre"] for r in rows if truth.get(r["isbn"])) / len(rows)
    top = sum(bool(r["genre"]) and truth.get(r["isbn"]) == r["genre"][0] for r in rows) / len(rows)
    print(
        f"- label {len(subset):,} books (threads {best[0]}, batch {best[1]}): {secs:.1f} s = "
        f"{len(subset) / secs:.0f} books/s -> {len(books):,} books extrapolated {len(books) / (len(subset) / secs) / 60:.1f} min; "
        f"planted-genre agreement: top-1 {top:.1%}, in label set {hit:.1%} (chance 8.3%)"
    )
    if args.full:
        import polars as pl

        from engine import db
        from engine.enrich import EnrichSettings, run

        with tempfile.TemporaryDirectory() as tmp:
            con = db.connect(Path(tmp) / "full.duckdb")
            frame = pl.DataFrame(
                [(b.isbn, b.title, b.author, b.year, b.publisher) for b in books],
                schema={
                    "isbn": pl.Utf8,
                    "title": pl.Utf8,
                    "author": pl.Utf8,
                    "year": pl.Int16,
                    "publisher": pl.Utf8,
                },
                orient="row",
            ).unique("isbn")
            db.append_table(con, "books", frame)
            t = time.perf_counter()
            result = run(
                con, EnrichSettings(provider="zero-shot", zs_threads=best[0], zs_batch_size=best[1])
            )
            secs = time.perf_counter() - t
            con.close()
        print(
            f"- full table through `enrich.run` (zero-shot, commits every 8,192 books): "
            f"{result.stats.done:,} books in {secs / 60:.1f} min = {result.stats.done / secs:.0f} books/s"
        )


def main() -> None:
    """Parse arguments and run one benchmark."""
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="which", required=True)
    a = sub.add_parser("llm")
    a.add_argument("--books", type=int, default=5000)
    a.add_argument("--rpm", type=int, default=600)
    a.add_argument("--latency", type=float, default=0.3)
    a.add_argument("--fault-rate", type=float, default=0.1)
    a.add_argument("--repeats", type=int, default=3)
    z = sub.add_parser("zeroshot")
    z.add_argument("--sweep", type=int, default=3000)
    z.add_argument("--subset", type=int, default=10000)
    z.add_argument("--full", action="store_true")
    args = ap.parse_args()
    (llm if args.which == "llm" else zeroshot)(args)


if __name__ == "__main__":
    main()
