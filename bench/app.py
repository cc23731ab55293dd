"""Dashboard speed: callback latency under 8 concurrent clients, and first page load, at full size.

    flock /tmp/bookrec-bench.lock .venv/bin/python bench/app.py [--db PATH | --synthetic PATH]
        [--only browse reader similar] [--serve-args "--workers 1"] [--page-loads 0]

Starts `bookrec serve` on a free port, then
  * first page load: headless Chromium (Debian's /usr/bin/chromium) opens each page with a cold
    cache and waits until the page's data is on screen;
  * callbacks: N clients POST to Dash's /_dash-update-component, as the browser does, for the
    browse, reader and similar-books callbacks with random inputs (facets, sorts, pages, readers,
    books, models); p50/p95/p99 after a warm-up;
  * reference, in the same run: the same questions through the public SQL macros (facet_search,
    recommend_model, similar_books_model, similar_books_by_content) on one DuckDB cursor, which is
    what the callbacks would cost without engine.query's in-memory indexes.
Without --db it builds (once) a synthetic Book-Crossing-sized database with bench/app_synth.py.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(db_path: Path, extra: list[str]) -> tuple[subprocess.Popen, str, float, str]:
    """`bookrec serve` on a free port; returns once every worker has loaded its indexes."""
    port = _free_port()
    start = time.perf_counter()
    # the server's log goes to a file, not a pipe nobody reads (a full pipe would block it)
    log = tempfile.NamedTemporaryFile("w+", prefix="bookrec-serve-", suffix=".log", delete=False)  # noqa: SIM115 - lives with the server
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "serve", "--db", str(db_path), "--port", str(port)]
        + extra,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )
    base = f"http://127.0.0.1:{port}"
    while True:
        text = Path(log.name).read_text()
        banner = re.search(r"dashboard on \S+ \((\d+) workers? x (\d+) threads", text)
        ready = len(re.findall(r"worker \d+ ready in", text))
        if banner and ready >= int(banner.group(1)):
            urllib.request.urlopen(base + "/_dash-layout", timeout=10).read()
            setup = f"{banner.group(1)} workers x {banner.group(2)} threads"
            return proc, base, time.perf_counter() - start, setup
        if proc.poll() is not None:
            raise SystemExit(text)
        time.sleep(0.2)


class Callbacks:
    """Builds /_dash-update-component payloads from the app's own dependency list."""

    def __init__(self, base: str):
        deps = json.loads(urllib.request.urlopen(base + "/_dash-dependencies").read())
        self.by_first_output = {}
        for d in deps:
            first = d["output"].strip(".").split("...")[0]
            self.by_first_output[first] = d

    def payload(self, first_output: str, values: dict[str, object], changed: str) -> bytes:
        dep = self.by_first_output[first_output]
        outs = [o.split(".", 1) for o in dep["output"].strip(".").split("...")]
        multi = dep["output"].startswith("..")
        outputs = [{"id": i, "property": p} for i, p in outs]
        inputs = [{**x, "value": values.get(f"{x['id']}.{x['property']}")} for x in dep["inputs"]]
        state = [{**x, "value": values.get(f"{x['id']}.{x['property']}")} for x in dep["state"]]
        body = {
            "output": dep["output"],
            "outputs": outputs if multi else outputs[0],
            "inputs": inputs,
            "changedPropIds": [changed],
            "state": state,
        }
        return json.dumps(body).encode()


def _samples(con: duckdb.DuckDBPyConnection, rng: random.Random) -> dict[str, list]:
    users = [
        r[0]
        for r in con.execute(
            "SELECT user_id FROM ratings GROUP BY user_id USING SAMPLE 2000 ROWS"
        ).fetchall()
    ]
    isbns = [
        r[0]
        for r in con.execute(
            "SELECT isbn FROM item_embeddings WHERE run_id = (SELECT run_id FROM model_runs WHERE model = $m "
            "AND is_current) USING SAMPLE 2000 ROWS",
            {"m": MODEL[0]},
        ).fetchall()
    ] or [  # a model without item vectors: any books
        r[0] for r in con.execute("SELECT isbn FROM books USING SAMPLE 2000 ROWS").fetchall()
    ]
    facets = {
        f: [
            r[0]
            for r in con.execute(
                "SELECT DISTINCT label FROM book_facets WHERE field = $f", {"f": f}
            ).fetchall()
        ]
        for f in ("genre", "tone", "audience")
    }
    models = [r[0] for r in con.execute("SELECT model FROM model_runs WHERE is_current").fetchall()]
    words = ["the", "night", "love", "winter", "king", "secret", "road", "zz-no-match"]
    return {"users": users, "isbns": isbns, "facets": facets, "models": models, "words": words}


def _browse_values(rng: random.Random, s: dict) -> tuple[dict, str]:
    kind = rng.random()
    v: dict[str, object] = {
        "browse-text.value": "",
        "browse-years.value": [1900, 2005],
        "browse-min.value": 0,
        "browse-m.value": rng.choice([10, 50, 100]),
        "browse-pages.active_page": 1,
        "browse-sort.data": {"sort": "score", "desc": True},
    }
    for f in ("genre", "category", "theme", "tone", "audience"):
        v[f"browse-{f}.value"] = []
    changed = "browse-pages.active_page"
    if kind < 0.3:
        v["browse-pages.active_page"] = rng.randint(1, 200)
    elif kind < 0.6:
        v["browse-genre.value"] = rng.sample(
            s["facets"]["genre"], k=min(2, len(s["facets"]["genre"]))
        )
        v["browse-tone.value"] = rng.sample(s["facets"]["tone"], k=min(1, len(s["facets"]["tone"])))
        changed = "browse-genre.value"
    elif kind < 0.8:
        v["browse-sort.data"] = {
            "sort": rng.choice(["title", "year", "mean_rating", "n_explicit", "score"]),
            "desc": rng.random() < 0.5,
        }
        v["browse-min.value"] = rng.choice([0, 5])
        changed = "browse-sort.data"
    else:
        v["browse-text.value"] = rng.choice(s["words"])
        changed = "browse-text.value"
    return v, changed


def _reader_values(rng: random.Random, s: dict) -> tuple[dict, str]:
    user = (
        rng.choice(s["users"]) if rng.random() < 0.95 else rng.randint(10**8, 10**9)
    )  # some unknown readers
    model = MODEL[0] if rng.random() < 0.7 else rng.choice(s["models"])
    return {"reader-id.value": str(user), "reader-model.value": model}, "reader-id.value"


def _similar_values(rng: random.Random, s: dict) -> tuple[dict, str]:
    return {
        "similar-book.value": rng.choice(s["isbns"]),
        "similar-model.value": MODEL[0],
    }, "similar-book.value"


KINDS = {
    "browse": ("browse-table.children", _browse_values),
    "reader": ("reader-profile.children", _reader_values),
    "similar": ("similar-info.children", _similar_values),
}


def _load(
    base: str, cbs: Callbacks, kind: str, samples: dict, clients: int, per_client: int, seed: int
) -> list[float]:
    first, make = KINDS[kind]
    times: list[float] = []
    lock = threading.Lock()
    host, port = base.removeprefix("http://").split(":")

    def client(i: int) -> None:
        rng = random.Random(seed * 1000 + i)
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        mine = []
        for _ in range(per_client):
            values, changed = make(rng, samples)
            body = cbs.payload(first, values, changed)
            t0 = time.perf_counter()
            conn.request(
                "POST", "/_dash-update-component", body, {"Content-Type": "application/json"}
            )
            resp = conn.getresponse()
            data = resp.read()
            mine.append(time.perf_counter() - t0)
            if resp.status != 200:
                raise SystemExit(f"{kind}: HTTP {resp.status}: {data[:300]!r}")
        conn.close()
        with lock:
            times.extend(mine)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return times


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] * 1000


def _reference(db_path: Path, samples: dict, n: int, seed: int) -> dict[str, float]:
    """Median ms of the same questions through the public SQL macros, one cursor, one at a time."""
    rng = random.Random(seed)
    con = duckdb.connect(str(db_path), read_only=True)
    content = con.execute("SELECT count(*) > 0 FROM book_content_embeddings").fetchall()[0][0]
    genres = samples["facets"]["genre"]
    sqls = {
        "browse": (
            "SELECT * FROM facet_search(filters := $f, k := 20, m := 50)",
            lambda: {"f": [{"field": "genre", "label": rng.choice(genres)}] if genres else []},
        ),
        "reader": (
            "SELECT * FROM recommend_model($m, $u, k := 12)",
            lambda: {"m": MODEL[0], "u": rng.choice(samples["users"])},
        ),
        "similar": (
            "SELECT * FROM similar_books_model($m, $i, k := 10)"
            + (
                " UNION ALL BY NAME SELECT * FROM similar_books_by_content($i, k := 10)"
                if content
                else ""
            ),
            lambda: {"m": MODEL[0], "i": rng.choice(samples["isbns"])},
        ),
    }
    out = {}
    for kind, (sql, make) in sqls.items():
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            con.execute(sql, make()).fetchall()
            times.append(time.perf_counter() - t0)
        out[kind] = statistics.median(times) * 1000
    con.close()
    return out


def _first_loads(base: str, runs: int) -> dict[str, float]:
    """Median seconds from navigation to the page's data on screen, fresh browser profile each run."""
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        return {}
    from playwright.sync_api import sync_playwright

    pages = {
        "overview": ("/", "Long tail per book"),
        "browse": ("/browse", "books · page 1"),
        "reader": ("/reader?user=%s", "Because you rated"),
        "similar": ("/similar?isbn=%s", "Readers of this"),
        "metadata": ("/metadata", "co-occurrence"),
        "models": ("/models", "Leaderboard"),
    }
    out: dict[str, list[float]] = {k: [] for k in pages}
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
    ]
    with sync_playwright() as p:
        for _ in range(runs):
            with tempfile.TemporaryDirectory() as profile:
                ctx = p.chromium.launch_persistent_context(
                    profile,
                    executable_path=str(chromium),
                    args=flags,
                    headless=True,
                    viewport={"width": 1400, "height": 1000},
                )
                tab = ctx.new_page()
                for name, (path, text) in pages.items():
                    if "%s" in path:
                        path = path % _FIRST_IDS[name]
                    t0 = time.perf_counter()
                    tab.goto(base + path, wait_until="commit")
                    tab.get_by_text(text, exact=False).first.wait_for(
                        state="visible", timeout=60_000
                    )
                    out[name].append(time.perf_counter() - t0)
                ctx.close()
    return {k: statistics.median(v) for k, v in out.items()}


_FIRST_IDS: dict[str, object] = {}
MODEL = ["lightgcn"]  # the model the reader and similar callbacks ask most (--model)


def _memory(pid: int) -> list[tuple[str, float, float, float]]:
    """(process, RSS, PSS, USS) in GB of the server and its workers: PSS shares each page among
    the processes that map it, so the PSS sum is what the server costs the machine."""
    import psutil

    root = psutil.Process(pid)
    out = []
    for i, proc in enumerate([root, *root.children(recursive=True)]):
        try:
            m = proc.memory_full_info()
        except psutil.Error:
            continue
        out.append(
            ("master" if i == 0 else f"worker {proc.pid}", m.rss / 1e9, m.pss / 1e9, m.uss / 1e9)
        )
    return out


def main() -> None:
    """Run the benchmark and print a Markdown block for docs/BENCHMARKS.md."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--db", type=Path, help="an existing full-size database with a trained model")
    ap.add_argument(
        "--synthetic",
        type=Path,
        default=ROOT / "data" / "bench" / "app_synthetic.duckdb",
        help="where to build (once) the synthetic database when --db is not given",
    )
    ap.add_argument(
        "--model", default="lightgcn", help="the model most reader/similar requests ask"
    )
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=50, help="requests per client per callback")
    ap.add_argument("--page-loads", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--only", nargs="+", choices=list(KINDS), help="time only these callbacks (default: all)"
    )
    ap.add_argument(
        "--serve-args",
        default="",
        help="extra `bookrec serve` flags, e.g. '--workers 1' (default: the server's defaults)",
    )
    args = ap.parse_args()
    MODEL[0] = args.model
    db_path = args.db
    if db_path is None:
        db_path = args.synthetic
        if not db_path.exists():
            import app_synth

            db_path.parent.mkdir(parents=True, exist_ok=True)
            t0 = time.perf_counter()
            app_synth.build(db_path)
            print(f"built {db_path} in {time.perf_counter() - t0:.0f} s", flush=True)
    subprocess.run(
        [sys.executable, "-m", "engine.cli", "migrate", "--db", str(db_path)],
        check=True,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    con = duckdb.connect(str(db_path), read_only=True)
    stale = con.execute(
        "SELECT (SELECT count(*) FROM book_content_neighbours) = 0 "
        "OR (SELECT count(*) FROM item_neighbours) = 0"
    ).fetchall()[0][0]
    con.close()
    if stale and args.db is None:  # built before the neighbour lists were precomputed
        import app_synth

        print("adding the precomputed neighbour lists to the synthetic database (~13 min)")
        app_synth.add_lists(db_path)
    con = duckdb.connect(str(db_path), read_only=True)
    sizes = con.execute(
        "SELECT (SELECT count(*) FROM books), (SELECT count(*) FROM users), "
        "(SELECT count(*) FROM ratings), (SELECT max(dim) FROM model_runs)"
    ).fetchall()[0]
    samples = _samples(con, random.Random(args.seed))
    con.close()
    load_before = f"{os.getloadavg()[0]:.1f}"
    ref = _reference(db_path, samples, 15, args.seed)
    proc, base, startup, setup = _serve(db_path, shlex.split(args.serve_args))
    try:
        cbs = Callbacks(base)
        _FIRST_IDS.update(reader=samples["users"][0], similar=samples["isbns"][0])
        results = {}
        for kind in args.only or KINDS:
            _load(base, cbs, kind, samples, args.clients, 10, args.seed + 1)  # warm-up
            single = _load(base, cbs, kind, samples, 1, args.requests, args.seed + 2)
            times = _load(base, cbs, kind, samples, args.clients, args.requests, args.seed + 3)
            results[kind] = (times, single)
        memory = _memory(proc.pid)
        loads = _first_loads(base, args.page_loads) if args.page_loads > 0 else {}
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    print(
        f"\nload average before / after: {load_before} / {os.getloadavg()[0]:.1f} (2-core machine, shared)"
    )
    print(
        f"database: {db_path.name}: {sizes[0]:,} books, {sizes[1]:,} users, {sizes[2]:,} ratings, dim {sizes[3]}"
    )
    print(f"server: {setup}; start incl. loading indexes: {startup:.1f} s\n")
    print(
        "| callback | p50 ms | p95 ms | p99 ms | 1 client p50 ms | SQL macros, 1 client, median ms | p95 target |"
    )
    print("|---|---|---|---|---|---|---|")
    for kind, (times, single) in results.items():
        print(
            f"| {kind} ({args.clients} clients x {args.requests}) | {_pct(times, 50):.0f} | {_pct(times, 95):.0f} | "
            f"{_pct(times, 99):.0f} | {_pct(single, 50):.0f} | {ref[kind]:.0f} | "
            f"{'ok' if _pct(times, 95) <= 300 else 'MISSED'} (<= 300) |"
        )
    print("\n| process (after the callbacks) | RSS GB | PSS GB | USS GB |\n|---|---|---|---|")
    for name, rss, pss, uss in memory:
        print(f"| {name} | {rss:.2f} | {pss:.2f} | {uss:.2f} |")
    print(
        f"| **all** | {sum(m[1] for m in memory):.2f} | **{sum(m[2] for m in memory):.2f}** | {sum(m[3] for m in memory):.2f} |"
    )
    if loads:
        print("\n| first page load (cold browser, data on screen) | median s |\n|---|---|")
        for name, secs in loads.items():
            print(f"| {name} | {secs:.2f} |")


if __name__ == "__main__":
    main()
