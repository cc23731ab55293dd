"""Core subcommands: migrate, status."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from engine import db
from engine.commands.options import db_option

console = Console()


@click.command()
@db_option
def migrate(db_path: Path) -> None:
    """Create or upgrade the DuckDB file (tables, views, macros)."""
    con = db.connect(db_path)
    con.close()
    click.echo(f"{db_path}: schema up to date")


@click.command()
@db_option
def status(db_path: Path) -> None:
    """Show dataset numbers and the last run of every stage."""
    con = db.connect(db_path, read_only=True)
    stats = db.fetch(con, "SELECT * FROM dataset_stats").row(0, named=True)
    table = Table(title=f"bookrec · {db_path}", show_header=False)
    for key, value in stats.items():
        table.add_row(
            key,
            f"{value:,.4g}"
            if isinstance(value, float)
            else f"{value:,}"
            if value is not None
            else "-",
        )
    console.print(table)
    runs = db.query(con, "stage_history", {"limit": 20})
    stages = Table(title="stage runs (newest first)")
    for col in ("stage", "fingerprint", "finished_at", "summary"):
        stages.add_column(col)
    for r in runs.iter_rows(named=True):
        summary = json.loads(r["summary"])
        stages.add_row(
            r["stage"], r["fingerprint"], str(r["finished_at"])[:19], json.dumps(summary)[:80]
        )
    console.print(stages)


commands = [migrate, status]
