"""`bookrec sample`: write deterministic Book-Crossing-shaped sample data with planted truth."""

from __future__ import annotations

import time
from pathlib import Path

import click

from engine import sample as sample_data
from engine.config import load_settings


@click.command()
@click.option(
    "--size", type=str, default=None, help="small | medium | full | xl (10x full)  [default: small]"
)
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory to write into  [default: data/sample/<size>]",
)
@click.option(
    "--seed", type=int, default=None, help="Random seed; same seed, same bytes  [default: 0]"
)
def sample(size: str | None, out: Path | None, seed: int | None) -> None:
    """Generate Books.csv, Ratings.csv, Users.csv (Kaggle format) plus truth files."""
    settings = load_settings(
        sample_data.SampleSettings, "sample", {"size": size, "seed": seed, "out": out}
    )
    started = time.perf_counter()
    data = sample_data.generate(settings.size, settings.seed)
    out_dir = settings.out or Path("data") / "sample" / settings.size
    paths = sample_data.write(data, out_dir)
    click.echo(
        f"{out_dir}: {data.books.height:,} books, {data.users.height:,} users, {data.ratings.height:,} ratings "
        f"({settings.size}, seed {settings.seed}, {len(data.defects)} planted defects; truth in "
        f"{paths['truth'].name}) in {time.perf_counter() - started:.1f}s"
    )


commands = [sample]
