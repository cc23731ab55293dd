"""JSON API speed: p50/p95/p99 under 8 concurrent clients over real HTTP (issue 13).

    flock /tmp/bookrec-bench.lock .venv/bin/python bench/api.py --db PATH
        [--clients 8] [--requests 400] [--serve-args "--workers 2"] [--foldin-models rp3beta als mf]
        [--similar-models hybrid]

Starts `bookrec serve` on a free port and, per kind, has N client threads (one keep-alive
connection each) send requests with random inputs drawn from the database:
  * reader:  GET  /api/v1/readers/{id}/recommendations?k=20 (readers with ratings, default model)
  * fold-in: POST /api/v1/recommendations with 20 books from a random reader's history, per model
  * similar: GET  /api/v1/books/{isbn}/similar?k=20 (books with item embeddings)
Targets (issue 13): p95 <= 50 / 80 / 50 ms.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import shlex
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sample(db: Path, seed: int) -> tuple[list[int], list[list[str]], list[str], list[str]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        readers = [
            r[0]
            for r in con.execute(
                "SELECT user_id FROM ratings GROUP BY user_id HAVING count(*) >= 2"
            ).fetchall()
        ]
        hist = con.execute(
            "SELECT list(isbn ORDER BY isbn) FROM ratings GROUP BY user_id HAVING count(*) >= 5"
        ).fetchall()
        books = [
            r[0]
            for r in con.execute(
                "SELECT DISTINCT isbn FROM item_embeddings WHERE run_id IN "
                "(SELECT run_id FROM default_similar_run)"
            ).fetchall()
        ]
        models = [
            r[0] for r in con.execute("SELECT model FROM model_runs WHERE is_current").fetchall()
        ]
    finally:
        con.close()
    rng = random.Random(seed)
    picks = [rng.sample(h[0], min(20, len(h[0]))) for h in hist]  # 20 books (fewer: small data)
    return readers, picks, books, models


def run(port: int, clients: int, total: int, make) -> list[float]:
    """Latencies (ms) of `total` requests from `clients` threads; make(rng) -> (method, path, body)."""
    times: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        rng = random.Random(i)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine = []
        for _ in range(total // clients):
            method, path, body = make(rng)
            headers = {"Content-Type": "application/json"} if body is not None else {}
            t = time.perf_counter()
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            mine.append(1000 * (time.perf_counter() - t))
            if resp.status != 200:
                errors.append(f"{resp.status} {path} {data[:200]!r}")
        conn.close()
        with lock:
            times.extend(mine)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        print(f"  {len(errors)} errors, e.g. {errors[0]}")
    return times


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", type=Path, required=True)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--serve-args", default="")
    ap.add_argument("--foldin-models", nargs="*", default=None)
    ap.add_argument("--similar-models", nargs="*", default=[], help="also similar?model=M per M")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    readers, picks, books, models = sample(args.db, args.seed)
    fold_models = args.foldin_models or sorted(models)
    port = free_port()
    cmd = [
        str(ROOT / ".venv/bin/bookrec"),
        "serve",
        "--db",
        str(args.db),
        "--port",
        str(port),
        *shlex.split(args.serve_args),
    ]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        t0 = time.perf_counter()
        while True:
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                c.request("GET", "/api/v1/health")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.perf_counter() - t0 > 180:
                sys.exit(f"serve did not start: {proc.stdout.read() if proc.stdout else ''}")
            time.sleep(0.5)
        print(f"serve ready in {time.perf_counter() - t0:.1f} s ({' '.join(cmd[1:])})")
        kinds = {
            "reader (k=20, default model)": lambda r: (
                "GET",
                f"/api/v1/readers/{r.choice(readers)}/recommendations?k=20",
                None,
            ),
            "similar (k=20, by model)": lambda r: (
                "GET",
                f"/api/v1/books/{r.choice(books)}/similar?k=20",
                None,
            ),
        }
        for m in args.similar_models:
            kinds[f"similar (k=20, {m})"] = lambda r, m=m: (
                "GET",
                f"/api/v1/books/{r.choice(books)}/similar?k=20&model={m}",
                None,
            )
        for m in fold_models:
            kinds[f"fold-in 20 books ({m})"] = lambda r, m=m: (
                "POST",
                "/api/v1/recommendations",
                json.dumps({"isbns": r.choice(picks), "k": 20, "model": m}),
            )
        print(
            f"{args.clients} clients, {args.requests} requests per kind (+ {args.clients * 5} warm-up)\n"
        )
        print("| request | p50 ms | p95 ms | p99 ms | req/s |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for label, make in kinds.items():
            run(port, args.clients, args.clients * 5, make)  # warm-up: caches, connections
            t = time.perf_counter()
            times = run(port, args.clients, args.requests, make)
            rate = len(times) / (time.perf_counter() - t)
            print(
                f"| {label} | {statistics.median(times):.1f} | {pct(times, 0.95):.1f} | "
                f"{pct(times, 0.99):.1f} | {rate:.0f} |",
                flush=True,
            )
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
