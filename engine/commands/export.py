"""`bookrec export`: every table (and the current runs' embeddings) as Parquet, for Spark/Trino/DuckDB."""

from __future__ import annotations

from pathlib import Path

import click

from engine import db
from engine.commands.options import db_option
from engine.config import load_settings


@click.command("export")
@db_option
@click.option(
    "--format", "fmt", type=click.Choice(["parquet"]), default=None, help="Output format (parquet)."
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="Directory to create: one sub-directory per table plus manifest.json.",
)
@click.option(
    "--overwrite", is_flag=True, help="Replace a previous export in --out (nothing else)."
)
@click.option(
    "--buckets",
    type=click.IntRange(1, 1024),
    default=None,
    help="Hive partitions of ratings: bucket = user_id mod N (16).",
)
def export(db_path: Path, fmt: str | None, out: Path, overwrite: bool, buckets: int | None) -> None:
    """Write every table as Parquet (Hive-partitioned where large) with a JSON manifest."""
    from engine.export import ExportSettings, check_out
    from engine.export import export as run

    settings = load_settings(ExportSettings, "export", {"format": fmt, "buckets": buckets})
    check_out(out, overwrite)  # before opening the database: a refused --out costs nothing
    con = db.connect(db_path, read_only=True)
    try:
        result = run(con, out, settings, overwrite=overwrite, database=db_path.name)
    finally:
        con.close()
    click.echo(
        f"export: {len(result.tables)} tables, {result.rows:,} rows in {result.files:,} Parquet "
        f"files -> {result.out} ({result.seconds:.1f} s; manifest.json lists them)"
    )


commands = [export]
