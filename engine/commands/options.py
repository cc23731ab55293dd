"""Options shared by several subcommands."""

from __future__ import annotations

from pathlib import Path

import click

from engine.config import default_db_path

db_option = click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=default_db_path,
    show_default="$BOOKREC_DB or data/bookrec.duckdb",
    help="DuckDB file to use.",
)

force_option = click.option(
    "--force", is_flag=True, help="Run even if inputs and settings are unchanged."
)
