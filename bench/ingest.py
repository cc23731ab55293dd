"""Benchmark `bookrec ingest` on the full-size sample against the pandas reference (bench/ingest_pandas.py).

Each run is a fresh process (interpreter start and imports included) on a fresh DuckDB file; the
implementations alternate so background load hits them alike. Three are timed: `bookrec ingest`
end to end (read, clean, DuckDB write), bookrec's read + clean alone (`engine.ingest.load_inputs`
+ `prepare`: the same work as the reference) and the pandas reference. Reports the median wall
time and peak RSS of each, and the ratios.

    flock /tmp/bookrec-bench.lock .venv/bin/python bench/ingest.py [--data DIR] [--runs 3]

--data defaults to data/sample/full, generated with `bookrec sample --size full` when missing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FILES = ("Books.csv", "Ratings.csv", "Users.csv")
KINDS = ("bookrec", "polars", "pandas")
LABELS = {
    "bookrec": "`bookrec ingest` (read + clean + DuckDB write)",
    "polars": "bookrec read + clean only (`load_inputs` + `prepare`)",
    "pandas": "pandas reference read + clean (`bench/ingest_pandas.py`)",
}


def _child(kind: str, data: Path, db_path: Path) -> None:
    """Run one workload in this process and print its peak RSS (the parent times the process)."""
    books, ratings, users = (str(data / f) for f in FILES)
    if kind == "bookrec":
        from engine.cli import main

        argv = [
            "ingest",
            "--books",
            books,
            "--ratings",
            ratings,
            "--users",
            users,
            "--db",
            str(db_path),
        ]
        if code := main(argv):
            sys.exit(code)
    elif kind == "polars":
        from engine.ingest import IngestSettings, load_inputs, prepare

        settings = IngestSettings()
        prepare(settings, load_inputs(settings, books, ratings, users))
    else:
        sys.path.insert(0, str(ROOT / "bench"))
        from ingest_pandas import read_clean

        read_clean(books, ratings, users)
    print(json.dumps({"maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def _once(kind: str, data: Path) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        db_path = Path(tmp) / "b.duckdb"
        cmd = [sys.executable, __file__, "--child", kind, "--data", str(data), "--db", str(db_path)]
        t = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        wall = time.perf_counter() - t
    if proc.returncode:
        raise SystemExit(f"{kind} failed:\n{proc.stderr[-2000:]}")
    rss = json.loads(proc.stdout.strip().splitlines()[-1])["maxrss_mb"]
    return {"wall_s": wall, "maxrss_mb": rss}


def _ensure_data(data: Path) -> None:
    if all((data / f).exists() for f in FILES):
        return
    print(f"generating the full-size sample into {data} ...", flush=True)
    bookrec = str(Path(sys.executable).parent / "bookrec")
    subprocess.run([bookrec, "sample", "--size", "full", "--out", str(data)], check=True, cwd=ROOT)


def main() -> None:
    """Parse arguments, run the alternating benchmark, print a Markdown table and save JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "sample" / "full")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--child", choices=KINDS)
    ap.add_argument("--db", type=Path)
    args = ap.parse_args()
    if args.child:
        _child(args.child, args.data, args.db)
        return
    _ensure_data(args.data)
    runs: dict[str, list[dict[str, float]]] = {k: [] for k in KINDS}
    for i in range(args.runs):
        for kind in KINDS:
            r = _once(kind, args.data)
            runs[kind].append(r)
            print(
                f"run {i + 1} {kind:8s} {r['wall_s']:6.2f} s {r['maxrss_mb']:7.0f} MB", flush=True
            )
    med = {
        k: {m: statistics.median(r[m] for r in v) for m in ("wall_s", "maxrss_mb")}
        for k, v in runs.items()
    }
    ratio = {k: med["pandas"]["wall_s"] / med[k]["wall_s"] for k in ("bookrec", "polars")}
    load = os.getloadavg()
    sizes = {f: (args.data / f).stat().st_size for f in FILES}
    print(
        f"\nmachine: {platform.machine()} {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}"
    )
    print("| implementation | wall (median) | peak RSS (median) | runs (s) |")
    print("| --- | --- | --- | --- |")
    for kind in KINDS:
        walls = " / ".join(f"{r['wall_s']:.2f}" for r in runs[kind])
        print(
            f"| {LABELS[kind]} | {med[kind]['wall_s']:.2f} s | {med[kind]['maxrss_mb']:.0f} MB | {walls} |"
        )
    print(
        f"\npandas / bookrec ingest: {ratio['bookrec']:.2f}x; pandas / bookrec read+clean: {ratio['polars']:.2f}x"
    )
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    summary = {"runs": runs, "median": med, "ratio": ratio, "loadavg": load, "sizes": sizes}
    (out / "ingest.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
