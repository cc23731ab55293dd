"""`bookrec tune`: Optuna over a model's search space on the validation part (engine.models.tune)."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from engine import config, db
from engine.commands.options import db_option

console = Console()


@click.command()
@db_option
@click.option(
    "--model", "model_name", required=True, help="Model to tune, e.g. itemknn, rp3beta, ease."
)
@click.option(
    "--trials", type=click.IntRange(min=1), default=None, help="Trials to run now.  [default: 20]"
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Seconds after which no new trial starts.",
)
@click.option("--metric", default=None, help="Validation metric to maximise.  [default: recall@20]")
@click.option("--seed", type=int, default=None, help="Sampler seed.  [default: 2020]")
@click.option("--new", is_flag=True, help="Start a new study instead of continuing the stored one.")
def tune(db_path: Path, model_name: str, new: bool, **flags) -> None:  # fmt: skip
    """Tune a model's settings on the split's validation part; `train --tuned` then uses the best."""
    from engine.models import tune as tuning

    settings = config.load_settings(tuning.TuneSettings, "tune", flags)
    con = db.connect(db_path)
    try:
        result = tuning.run(
            con,
            model_name,
            settings,
            new=new,
            progress=lambda msg: print(f"tune {model_name}: {msg}", file=sys.stderr, flush=True),
        )
    finally:
        con.close()
    states = [t["state"] for t in result.trials]
    table = Table(
        title=f"tuning {result.model} · {result.tune_id} · {result.metric} on valid "
        f"({result.split_id}; test not used)",
        show_header=False,
    )
    table.add_row("trials", f"{len(states)} ({states.count('complete')} complete, "
                  f"{states.count('pruned')} pruned; {result.continued} from earlier runs)")  # fmt: skip
    table.add_row("time in trials", f"{result.seconds:.1f} s")
    if result.best_trial is not None:
        table.add_row(
            "best", f"{result.metric} {result.best_value:.4f} (trial {result.best_trial})"
        )
        for name, value in result.best_params.items():
            share = result.importance.get(name)
            table.add_row(
                f"  {name}", f"{value}" + (f"  (importance {share:.2f})" if share else "")
            )
    console.print(table)
    console.print(f"next: bookrec train --model {model_name} --tuned")


commands = [tune]
