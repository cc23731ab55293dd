"""Gowalla benchmark: LightGCN (paper settings) accuracy curve and speed, PyG's LightGCN, and the
training-free models (GF-CF, ChebyCF; published settings, nothing tuned on test).

Run under the shared lock so benchmarks don't overlap:
    flock /tmp/bookrec-bench.lock .venv/bin/python bench/gowalla.py --epochs 3 --repeats 1 --pyg-steps 20 --threads 2,1
    flock /tmp/bookrec-bench.lock .venv/bin/python bench/gowalla.py --skip-lightgcn --pyg-steps 0 --free-models gfcf,chebycf --repeats 3
Writes bench/results/gowalla-<time>.json and .md (bench/results/ is gitignored).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.data import lightgcn_txt  # noqa: E402
from engine.evaluate.metrics import full_ranking  # noqa: E402
from engine.models import benchmark  # noqa: E402
from engine.models.sampling import UniformSampler  # noqa: E402

# The official LightGCN code (gusye1234/LightGCN-PyTorch, seed 2020) run on this machine.
OFFICIAL = {1: (0.0867, 0.0723), 2: (0.0971, 0.0815), 3: (0.1025, 0.0863)}
PAPER = {"layers": 3, "dim": 64, "lr": 1e-3, "reg": 1e-4, "batch_size": 2048, "seed": 2020}
# Published Gowalla recall@20 / ndcg@20 of the training-free models (GF-CF: Shen et al. 2021;
# ChebyCF: Kim et al. 2025, the authors' settings, which are our defaults; its ndcg not checked).
PUBLISHED = {"gfcf": ("0.1849", "0.1518"), "chebycf": ("0.1941", "-")}


def load_avg() -> list[float]:
    """1/5/15-minute load averages: how busy the machine was."""
    return list(os.getloadavg())


def run_ours(train: Path, test: Path, epochs: int, threads: int, model: str = "lightgcn") -> dict:
    """Our LightGCN (or MF) with the paper's settings, evaluated on test after every epoch."""

    def show(e: dict) -> None:
        print(
            f"  {model} epoch {e['epoch']}: recall@20 {e['recall@20']:.4f} ndcg@20 {e['ndcg@20']:.4f} "
            f"train {e['seconds']:.1f}s eval {e['eval_seconds']:.2f}s",
            flush=True,
        )

    overrides = {**PAPER, "epochs": epochs, "num_threads": threads, "progress": False}
    if model == "mf":
        overrides["layers"] = 0
    return benchmark.run(train, test, model, overrides, on_eval=show)


def run_free(train: Path, test: Path, model: str, threads: int) -> dict:
    """A training-free model end to end (load + fit + full ranking), its default settings."""
    return benchmark.run(train, test, model, {"num_threads": threads})


def run_pyg(train: Path, test: Path, steps: int, threads: int) -> dict:
    """PyG's LightGCN, same settings and sampler, timed per step; then scored with our evaluator."""
    from torch_geometric.nn.models import LightGCN

    torch.set_num_threads(threads)
    torch.manual_seed(2020)
    data = lightgcn_txt.load(train, test)
    coo = data.train.tocoo()
    u = torch.from_numpy(coo.row.astype(np.int64))
    i = torch.from_numpy(coo.col.astype(np.int64)) + data.n_users
    edge_index = torch.stack([torch.cat([u, i]), torch.cat([i, u])])
    model = LightGCN(data.n_users + data.n_items, embedding_dim=64, num_layers=3)
    torch.nn.init.normal_(model.embedding.weight, std=0.1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    users, pos, neg = (
        torch.from_numpy(a) for a in UniformSampler(data.train, np.random.default_rng(2020)).epoch()
    )
    neg = neg[:, 0]
    times = []
    for step in range(steps + 1):  # the first step warms up and is not timed
        sl = slice(step * 2048, (step + 1) * 2048)
        b_u, b_p, b_n = users[sl], pos[sl] + data.n_users, neg[sl] + data.n_users
        t0 = time.perf_counter()
        label_index = torch.stack([torch.cat([b_u, b_u]), torch.cat([b_p, b_n])])
        rank = model(edge_index, label_index)
        pos_rank, neg_rank = rank.chunk(2)
        nodes = torch.cat([b_u, b_p, b_n])
        # PyG's BPRLoss has no 1/2 on the L2 term: halve lambda to match the official loss.
        loss = model.recommendation_loss(pos_rank, neg_rank, node_id=nodes, lambda_reg=0.5e-4)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step:
            times.append(time.perf_counter() - t0)
    n_batches = -(-data.train.nnz // 2048)
    t0 = time.perf_counter()
    with torch.no_grad():
        emb = model.get_embedding(edge_index)
    users_e, items_e = emb[: data.n_users], emb[data.n_users :]
    metrics = full_ranking(lambda b: users_e[b] @ items_e.T, data.train, data.test, ks=(20,))
    return {
        "steps": steps,
        "seconds_per_step": statistics.median(times),
        "seconds_per_epoch_extrapolated": statistics.median(times) * n_batches,
        "eval_seconds": time.perf_counter() - t0,
        "recall@20_after_steps": metrics["recall@20"],
    }


def run_interleaved(train: Path, test: Path, rounds: int, threads: int) -> dict:
    """Ours vs PyG per step in one process, alternating 10 of ours and 2 of PyG per round (fair under drifting load)."""
    from torch_geometric.nn.models import LightGCN as PyGLightGCN

    from engine.models.lightgcn import LightGCN

    torch.set_num_threads(threads)
    torch.manual_seed(2020)
    data = lightgcn_txt.load(train, test)
    ours = LightGCN()
    ours.init_module(data, torch.device("cpu"))
    opt = torch.optim.Adam(ours.module.parameters(), lr=1e-3, fused=True)
    users, pos, neg = (
        torch.from_numpy(a) for a in UniformSampler(data.train, np.random.default_rng(2020)).epoch()
    )
    neg = neg[:, 0]
    coo = data.train.tocoo()
    u = torch.from_numpy(coo.row.astype(np.int64))
    i = torch.from_numpy(coo.col.astype(np.int64)) + data.n_users
    edge_index = torch.stack([torch.cat([u, i]), torch.cat([i, u])])
    pyg = PyGLightGCN(data.n_users + data.n_items, 64, 3)
    popt = torch.optim.Adam(pyg.parameters(), lr=1e-3)

    full = max(1, len(users) // 2048)

    def our_step(k: int) -> None:
        k %= full
        sl = slice(k * 2048, (k + 1) * 2048)
        loss = ours.batch_loss(users[sl], pos[sl], neg[sl])
        opt.zero_grad()
        loss.backward()
        opt.step()

    def pyg_step(k: int) -> None:
        k %= full
        sl = slice(k * 2048, (k + 1) * 2048)
        b_u, b_p, b_n = users[sl], pos[sl] + data.n_users, neg[sl] + data.n_users
        rank = pyg(edge_index, torch.stack([torch.cat([b_u, b_u]), torch.cat([b_p, b_n])]))
        loss = pyg.recommendation_loss(
            *rank.chunk(2), node_id=torch.cat([b_u, b_p, b_n]), lambda_reg=0.5e-4
        )
        popt.zero_grad()
        loss.backward()
        popt.step()

    our_step(0)
    pyg_step(0)
    t_ours, t_pyg = [], []
    for r in range(rounds):
        for k in range(10):
            t0 = time.perf_counter()
            our_step(1 + r * 10 + k)
            t_ours.append(time.perf_counter() - t0)
        for k in range(2):
            t0 = time.perf_counter()
            pyg_step(1 + r * 2 + k)
            t_pyg.append(time.perf_counter() - t0)
    o, p = statistics.median(t_ours), statistics.median(t_pyg)
    n_batches = -(-data.train.nnz // 2048)
    return {
        "threads": threads,
        "ours_s_per_step": o,
        "pyg_s_per_step": p,
        "ours_s_per_epoch": o * n_batches,
        "pyg_s_per_epoch": p * n_batches,
        "ratio": p / o,
        "load": load_avg(),
    }


def summarize(result: dict) -> str:
    """A short markdown summary: per thread count, medians over repeats."""
    lines = [
        f"# Gowalla benchmark ({result['started']})",
        "",
        f"load average (1/5/15 min) before {fmt_load(result['load_before'])}, after {fmt_load(result['load_after'])}",
        "",
    ]
    for threads, run in result["runs"].items():
        ours = run["lightgcn"]
        lines.append(f"## {threads} torch thread(s)\n")
        if ours:
            lines += [
                "| epoch | recall@20 | ndcg@20 | official | diff recall / ndcg | train s (median) | eval s (median) |",
                "|---|---|---|---|---|---|---|",
            ]
            for e in range(len(ours[0]["history"])):
                rows = [r["history"][e] for r in ours]
                rec, nd = rows[0]["recall@20"], rows[0]["ndcg@20"]
                off = OFFICIAL.get(e + 1)
                diff = (
                    f"{100 * (rec / off[0] - 1):+.1f}% / {100 * (nd / off[1] - 1):+.1f}%"
                    if off
                    else "-"
                )
                lines.append(
                    f"| {e + 1} | {rec:.4f} | {nd:.4f} | {off or '-'} | {diff} | "
                    f"{statistics.median(r['seconds'] for r in rows):.1f} | "
                    f"{statistics.median(r['eval_seconds'] for r in rows):.2f} |"
                )
            lines.append(f"\npeak RSS {max(r['peak_rss_gb'] for r in ours):.2f} GB")
        p = run.get("pyg")
        if p:
            ours_epoch = (
                statistics.median(h["seconds"] for r in ours for h in r["history"])
                if ours
                else float("nan")
            )
            lines.append(
                f"\nPyG LightGCN: {p['seconds_per_step']:.2f} s/step (median of {p['steps']} steps) -> "
                f"{p['seconds_per_epoch_extrapolated']:.0f} s/epoch; ours {ours_epoch:.1f} s/epoch: "
                f"{p['seconds_per_epoch_extrapolated'] / ours_epoch:.1f}x faster\n"
            )
        q = run.get("interleaved")
        if q:
            lines.append(
                f"Interleaved: ours {q['ours_s_per_step']:.3f} s/step ({q['ours_s_per_epoch']:.1f} s/epoch), "
                f"PyG {q['pyg_s_per_step']:.2f} s/step ({q['pyg_s_per_epoch']:.0f} s/epoch): "
                f"{q['ratio']:.1f}x\n"
            )
    free = result.get("free", {})
    if free:
        lines += [
            "\n## training-free models (medians over repeats)\n",
            "| model | recall@20 | ndcg@20 | fit s | score s | total s | peak RSS GB | published | runs (total s) |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
    for model, rows in free.items():
        med = statistics.median
        f = [r["final"] for r in rows]
        pub = PUBLISHED.get(model)
        each = " / ".join(f"{r['total_seconds']:.1f}" for r in rows)
        lines.append(
            f"| {model} | {med(x['recall@20'] for x in f):.4f} | {med(x['ndcg@20'] for x in f):.4f} | "
            f"{med(r['fit_seconds'] for r in rows):.1f} | {med(x['eval_seconds'] for x in f):.1f} | "
            f"{med(r['total_seconds'] for r in rows):.1f} | {max(r['peak_rss_gb'] for r in rows):.2f} | "
            f"{f'{pub[0]} / {pub[1]}' if pub else '-'} | "
            f"{each} |"
        )
    return "\n".join(lines) + "\n"


def fmt_load(load: list[float]) -> str:
    """Load averages as '1.2/3.4/5.6'."""
    return "/".join(f"{x:.1f}" for x in load)


def main() -> None:
    """Parse flags, run what was asked, write JSON and markdown."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "gowalla")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--pyg-steps", type=int, default=20, help="0 skips PyG")
    ap.add_argument(
        "--threads", default="2", help="comma-separated torch thread counts to compare, e.g. 2,1"
    )
    ap.add_argument(
        "--interleave-rounds",
        type=int,
        default=0,
        help="also time ours vs PyG interleaved in one process (rounds of 10 + 2 steps)",
    )
    ap.add_argument("--skip-lightgcn", action="store_true")
    ap.add_argument("--skip-gfcf", action="store_true", help="skip every training-free model")
    ap.add_argument(
        "--free-models",
        default="gfcf",
        help="comma-separated training-free models, e.g. gfcf,chebycf",
    )
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = ap.parse_args()
    train, test = args.data / "train.txt", args.data / "test.txt"
    if not train.exists():
        sys.exit(f"Gowalla not found at {args.data}")
    thread_counts = [int(t) for t in str(args.threads).split(",")]
    result = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "threads": thread_counts,
        "epochs": args.epochs,
        "repeats": args.repeats,
        "load_before": load_avg(),
        "runs": {},
        "free": {},
    }
    for threads in thread_counts:
        run = {"lightgcn": [], "pyg": None}
        print(f"{threads} thread(s)", flush=True)
        for _ in range(0 if args.skip_lightgcn else args.repeats):
            run["lightgcn"].append(run_ours(train, test, args.epochs, threads))
        if args.pyg_steps > 0:
            run["pyg"] = run_pyg(train, test, args.pyg_steps, threads)
            print(f"  pyg: {run['pyg']['seconds_per_step']:.2f} s/step", flush=True)
        if args.interleave_rounds > 0:
            run["interleaved"] = run_interleaved(train, test, args.interleave_rounds, threads)
            print(
                f"  interleaved: ours {run['interleaved']['ours_s_per_step']:.3f} s/step, "
                f"pyg {run['interleaved']['pyg_s_per_step']:.2f} s/step",
                flush=True,
            )
        result["runs"][threads] = run
    free_models = [] if args.skip_gfcf else [m for m in args.free_models.split(",") if m]
    for _ in range(args.repeats):  # models alternate within each repeat: fair under drifting load
        for model in free_models:
            g = run_free(train, test, model, thread_counts[0])
            f = g["final"]
            print(
                f"  {model}: recall@20 {f['recall@20']:.4f} ndcg@20 {f['ndcg@20']:.4f} "
                f"fit {g['fit_seconds']:.1f}s score {f['eval_seconds']:.1f}s total {g['total_seconds']:.1f}s "
                f"load {fmt_load(load_avg())}",
                flush=True,
            )
            result["free"].setdefault(model, []).append(g)
    result["load_after"] = load_avg()
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"gowalla-{result['started'].replace(':', '')}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2, default=str))
    summary = summarize(result)
    stem.with_suffix(".md").write_text(summary)
    print(summary)


if __name__ == "__main__":
    main()
