"""10x Book-Crossing on one machine: the xl pipeline stage by stage, wall time and peak RSS each.

Every stage is its own process, run under `/usr/bin/time` (peak RSS of that process alone) with a
wall-clock cap: sample xl, ingest into its own DuckDB file, split, train popularity / itemknn
(rp3beta with --rp3beta), and gfcf / ease, which must refuse up front. `fit:<model>` times the
model's fit alone on the split (the train stage adds full-ranking evaluation and the top-N
write-back, O(users x items), which is what does not fit a 2-core machine at xl) and
`rank:<model>` times full ranking for --rank-users test users, to extrapolate to all of them.

    flock /tmp/bookrec-bench.lock .venv/bin/python bench/xl.py [--out /tmp/xl] [--reuse]

--reuse keeps sample files and the DB already in --out (skips sample and ingest when present).
Evaluation score blocks are kept small with BOOKREC_EVALUATE_BATCH_SIZE (default here 128:
128 x 2.7M items x 4 B = 1.4 GB per block, against 11 GB at the default 1024), and train judges a
seeded sample of test / valid users, BOOKREC_EVALUATE_MAX_USERS (default here 20,000, as `just xl`).
--enrich N adds the content side on a slice: `bookrec enrich --provider zero-shot --limit N`,
`bookrec facets`, `bookrec content --scope enriched` (each timed; the enrich line projects the
whole catalogue at the slice's rate).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BOOKREC = str(ROOT / ".venv/bin/bookrec")
PYTHON = sys.executable

# In-process fit (and a timed full ranking of a few users) on the current split: argv model, users.
FIT = """
import sys, time, duckdb, numpy as np
from engine.models import split, stage
from engine.models.base import build
from engine.evaluate.metrics import full_ranking
con = duckdb.connect(sys.argv[1], read_only=True)
model = build(sys.argv[2], {})
data, maps = stage.dataset_for(con, model, split.current(con))
con.close()
print(f"dataset: {data.n_users:,} users x {data.n_items:,} items, {data.train.nnz:,} train")
t0 = time.perf_counter(); model.fit(data); fit = time.perf_counter() - t0
print(f"fit {fit:.1f}s")
n = int(sys.argv[3])
if n:
    users = np.flatnonzero(np.diff(data.test.indptr) > 0)
    t0 = time.perf_counter()
    full_ranking(model.score, stage.known(data, "valid"), data.test, users=users[:n],
                 batch_size=int(sys.argv[4]))
    per = (time.perf_counter() - t0) / n
    print(f"rank {n} users: {per * 1e3:.2f} ms/user; all {len(users):,} test users ~{per * len(users) / 60:.0f} min")
"""


def stage(name: str, cmd: list[str], cap: int, env: dict[str, str], mem_gb: float = 0) -> dict:
    """Run one stage under /usr/bin/time; wall, peak RSS, exit code and the output's last lines.

    mem_gb > 0 caps the stage's address space (a MemoryError in it, not the kernel's OOM killer
    picking a neighbour on a shared machine)."""

    def limit() -> None:
        if mem_gb > 0:
            cap_bytes = int(mem_gb * 2**30)
            resource.setrlimit(resource.RLIMIT_AS, (cap_bytes, cap_bytes))

    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(
                ["/usr/bin/time", "-o", tf.name, "-f", "%M", *cmd],
                capture_output=True,
                text=True,
                timeout=cap,
                env=env,
                cwd=ROOT,
                preexec_fn=limit,
            )
            code, out = proc.returncode, (proc.stdout + proc.stderr).strip()
        except subprocess.TimeoutExpired as exc:
            code = "timeout"
            out = ((exc.stdout or b"").decode() + (exc.stderr or b"").decode()).strip()
        wall = time.perf_counter() - t0
        rss = tf.read().strip().splitlines()
    peak = int(rss[-1]) / 2**20 if rss and rss[-1].isdigit() else float("nan")
    lines = [ln for ln in out.splitlines() if ln.strip() and "Command exited" not in ln]
    row = {"stage": name, "wall_s": wall, "rss_gb": peak, "rc": code, "out": lines[-3:]}
    print(f"== {name}: {wall:.1f}s, {peak:.2f} GB, rc {code}", flush=True)
    for ln in lines[-6:]:
        print("   ", ln[:300], flush=True)
    return row


def _projection(row: dict, n: int, db: Path) -> str:
    """The enrich slice's rate applied to every book in the file."""
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    books = con.execute("SELECT count(*) FROM books").fetchall()[0][0]
    con.close()
    rate = n / row["wall_s"]
    return f"{rate:.0f} books/s: all {books:,} books ~{books / rate / 3600:.1f} h"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/xl"))
    parser.add_argument("--reuse", action="store_true")
    parser.add_argument("--size", default="xl", help="sample size (small: a quick smoke run)")
    parser.add_argument("--rp3beta", action="store_true")
    parser.add_argument("--cap", type=int, default=1800, help="wall-clock cap per stage (s)")
    parser.add_argument("--train-cap", type=int, default=600, help="cap for bookrec train (s)")
    parser.add_argument("--rank-users", type=int, default=2048)
    parser.add_argument(
        "--enrich", type=int, default=0, help="zero-shot slice of N books (0: none)"
    )
    parser.add_argument("--skip-fit", action="store_true", help="no in-process fit+rank stages")
    parser.add_argument("--mem-gb", type=float, default=16.0, help="address-space cap of fits")
    parser.add_argument(
        "--train", nargs="*", default=None, help="models to run `bookrec train` for (capped)"
    )
    args = parser.parse_args()
    data, db = args.out / "sample", args.out / "bookrec.duckdb"
    env = dict(os.environ)
    env.setdefault("BOOKREC_EVALUATE_BATCH_SIZE", "128")
    env.setdefault("BOOKREC_EVALUATE_MAX_USERS", "20000")
    batch = env["BOOKREC_EVALUATE_BATCH_SIZE"]
    print(f"load: {os.getloadavg()}, nproc {os.cpu_count()}", flush=True)
    rows = []
    files = ["--books", data / "Books.csv", "--ratings", data / "Ratings.csv"]
    files += ["--users", data / "Users.csv"]
    if not (args.reuse and (data / "truth.json").exists()):
        rows.append(
            stage(
                f"sample {args.size}",
                [BOOKREC, "sample", "--size", args.size, "--out", str(data)],
                args.cap,
                env,
            )
        )
    if not (args.reuse and db.exists()):
        db.unlink(missing_ok=True)
        cmd = [BOOKREC, "ingest", *map(str, files), "--db", str(db)]
        rows.append(stage("ingest", cmd, args.cap, env))
    rows.append(stage("split", [BOOKREC, "split", "--db", str(db)], args.cap, env))
    models = ["popularity", "itemknn"] + (["rp3beta"] if args.rp3beta else [])
    for m in ("gfcf", "ease"):  # must refuse in seconds
        rows.append(
            stage(f"train {m}", [BOOKREC, "train", "--model", m, "--db", str(db)], 300, env)
        )
    for m in [] if args.skip_fit else models[1:]:
        cmd = [PYTHON, "-c", FIT, str(db), m, str(args.rank_users), batch]
        rows.append(stage(f"fit+rank {m}", cmd, args.cap, env, args.mem_gb))
    if args.enrich:
        enrich = [BOOKREC, "enrich", "--provider", "zero-shot", "--limit", str(args.enrich)]
        rows.append(
            stage(f"enrich zero-shot {args.enrich:,}", [*enrich, "--db", str(db)], args.cap, env)
        )
        rows[-1]["out"].append(_projection(rows[-1], args.enrich, db))
        rows.append(stage("facets", [BOOKREC, "facets", "--db", str(db)], args.cap, env))
        cmd = [BOOKREC, "content", "--scope", "enriched", "--db", str(db)]
        rows.append(stage(f"content {args.enrich:,} books", cmd, args.cap, env))
    if args.train is None or args.train:
        for m in models if args.train is None else args.train:
            cmd = [BOOKREC, "train", "--model", m, "--db", str(db)]
            rows.append(stage(f"train {m}", cmd, args.train_cap, env, args.mem_gb))
    print(f"\nload after: {os.getloadavg()}\n")
    print("| stage | wall (s) | peak RSS (GB) | exit | last output |")
    print("| --- | ---: | ---: | --- | --- |")
    for r in rows:
        last = " / ".join(r["out"][-1:])[:160].replace("|", "\\|")
        print(f"| {r['stage']} | {r['wall_s']:.1f} | {r['rss_gb']:.2f} | {r['rc']} | {last} |")


if __name__ == "__main__":
    main()
