"""Benchmark subcommands: `bookrec bench lightgcn` runs any model on LightGCN-format data."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console

console = Console(soft_wrap=True)
_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.group("bench")
def bench() -> None:
    """Benchmarks on public data sets (accuracy and timings)."""


@bench.command("lightgcn")
@click.option(
    "--train",
    "train",
    type=_FILE,
    required=True,
    help="LightGCN-format train.txt (`user item item ...`).",
)
@click.option("--test", "test", type=_FILE, required=True, help="LightGCN-format test.txt.")
@click.option(
    "--model",
    type=click.Choice(
        ["lightgcn", "mf", "ncf", "gfcf", "ease", "chebycf", "itemknn", "rp3beta", "als", "bpr"]
    ),
    default="lightgcn",
    show_default=True,
)
@click.option(
    "--epochs", type=click.IntRange(min=1), default=None, help="Training epochs (trained models)."
)
@click.option("--layers", type=click.IntRange(min=0), default=None, help="LightGCN layers (3).")
@click.option("--dim", type=click.IntRange(min=1), default=None, help="Embedding size.")
@click.option("--lr", type=float, default=None, help="Adam learning rate.")
@click.option("--reg", type=float, default=None, help="L2 weight on the batch's ego embeddings.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Training batch size.")
@click.option(
    "--eval-every", type=click.IntRange(min=1), default=None, help="Evaluate every N epochs (1)."
)
@click.option(
    "--alpha", type=float, default=None, help="GF-CF weight of the ideal low-pass term (0.3)."
)
@click.option("--seed", type=int, default=None, help="Seed (2020).")
@click.option("--device", default=None, help="auto, cpu, cuda.")
@click.option(
    "--threads",
    "num_threads",
    type=click.IntRange(min=0),
    default=None,
    help="Torch threads (0 = one per core).",
)
@click.option(
    "--nproc",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Train lightgcn / mf / ncf data-parallel on N local processes (engine.models.ddp).",
)
@click.option("--progress/--no-progress", default=None, help="Show a progress bar while training.")
@click.option(
    "--json",
    "json_out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the result as JSON.",
)
def lightgcn_cmd(
    train: Path, test: Path, model: str, nproc: int, json_out: Path | None, **flags
) -> None:
    """Fit a model on LightGCN-format train/test files; print recall/ndcg/precision@20 and timings."""
    import contextlib

    from engine.models import base, benchmark, ddp

    known = {f for f in base.model_class(model).settings_cls.__dataclass_fields__}
    overrides = {k: v for k, v in flags.items() if v is not None and k in known}

    def show(e: dict) -> None:
        console.print(
            f"epoch {e['epoch']:>3}  recall@20 {e['recall@20']:.4f}  ndcg@20 {e['ndcg@20']:.4f}  "
            f"precision@20 {e['precision@20']:.4f}  train {e.get('seconds', 0):.1f}s  "
            f"eval {e.get('eval_seconds', 0):.1f}s"
        )

    with contextlib.ExitStack() as stack:
        hooks = None
        if nproc > 1:
            ddp.check_model(model)
            hooks = stack.enter_context(ddp.session(nproc, ddp.device_spec(model, flags["device"])))
        result = benchmark.run(train, test, model, overrides, on_eval=show)
    result["nproc"] = nproc
    if hooks is not None:  # what each rank trained with (rank 0 restores its own count after)
        result["torch_threads"] = hooks.threads(result["settings"]["num_threads"])
    d = result["data"]
    console.print(
        f"{model}: {d['n_users']:,} users, {d['n_items']:,} items, {d['n_train']:,} train / {d['n_test']:,} test; "
        f"load {result['load_seconds']:.1f}s, fit {result['fit_seconds']:.1f}s, total {result['total_seconds']:.1f}s, "
        f"peak RSS {result['peak_rss_gb']:.2f} GB (rank 0), {result['torch_threads']} torch threads"
        + (f" per process, {nproc} processes" if nproc > 1 else "")
    )
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(result, indent=2, default=str))


commands = [bench]
