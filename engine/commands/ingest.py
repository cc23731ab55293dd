"""`bookrec ingest`: Book-Crossing CSVs (2004 dump, Kaggle, split-column) into the DuckDB file.

`--append` adds a day's ratings (and new books/users) to an ingested database instead.
"""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from engine import db
from engine.commands.options import db_option, force_option
from engine.config import load_settings
from engine.ingest import STEPS, IngestResult, IngestSettings, run, run_append
from engine.ingest.formats import FORMATS

_SOURCES = ("books", "users", "ratings")
# Rule counts shown in the cleaning table, with their label.
_RULES = {
    "duplicates": "duplicate keys resolved",
    "invalid_isbn": "ISBN checksum fails (kept, flagged)",
    "years_out_of_range": "year outside range -> NULL",
    "ages_out_of_range": "age outside range -> NULL",
    "html_unescaped": "HTML entities unescaped",
    "mojibake_repaired": "mojibake repaired",
    "shifted_rows_repaired": "shifted Kaggle rows repaired",
    "unknown_book": "ratings of ISBNs not in books (kept)",
    "unknown_user": "ratings by users not in users (kept)",
    "blank_lines": "blank lines skipped",
    "explicit_kept": "implicit 0 kept the existing explicit rating",
}
# What an append did to each file's loaded rows (books/users: added or known; ratings: the rest).
_UPSERT = ("added", "updated", "unchanged", "known")


def summary_tables(result: IngestResult) -> list[Table]:
    """Per file: format and read/loaded/rejected; an append's added/updated/unchanged/known; rules."""
    sources = [s for s in _SOURCES if s in result.counts]  # an append may leave out books/users
    title = "ingest --append" if result.mode == "append" else "ingest"
    files = Table(title=f"{title} {result.run_id} ({result.seconds:.1f} s)")
    for col in ("source", "file", "format", "encoding", "read", "loaded", "rejected"):
        files.add_column(col, justify="right" if col in ("read", "loaded", "rejected") else "left")
    for src in sources:
        c, f = result.counts[src], result.files[src]
        files.add_row(
            src,
            f["name"],
            f"{f['format']} {f['delimiter']!r}" if f["delimiter"] else f["format"],
            f["encoding"],
            f"{c['read']:,}",
            f"{c['loaded']:,}",
            f"{sum(c['rejected'].values()):,}",
        )
    tables = [files]
    if result.mode == "append":
        upsert = Table(title="into the database")
        for col in ("source", *_UPSERT):
            upsert.add_column(col, justify="left" if col == "source" else "right")
        for src in sources:
            c = result.counts[src]
            upsert.add_row(src, *(f"{c[k]:,}" if k in c else "" for k in _UPSERT))
        tables.append(upsert)
    rules = Table(title="cleaning")
    for col in ("rule", *sources):
        rules.add_column(col, justify="left" if col == "rule" else "right")
    reasons = sorted({r for src in sources for r in result.counts[src]["rejected"]})
    rows = [
        (f"rejected: {r}", {s: result.counts[s]["rejected"].get(r) for s in sources})
        for r in reasons
    ]
    rows += [
        (label, {s: result.counts[s].get(key) for s in sources}) for key, label in _RULES.items()
    ]
    for label, per_source in rows:
        if any(per_source.values()):
            rules.add_row(
                label,
                *(f"{per_source[s]:,}" if per_source[s] is not None else "" for s in sources),
            )
    return [*tables, rules]


@click.command()
@click.option(
    "--books",
    type=click.Path(path_type=Path, dir_okay=True),
    help="Books CSV or Parquet (required unless --append).",
)
@click.option(
    "--ratings",
    type=click.Path(path_type=Path, dir_okay=True),
    required=True,
    help="Ratings CSV or Parquet.",
)
@click.option(
    "--users",
    type=click.Path(path_type=Path, dir_okay=True),
    help="Users CSV or Parquet (required unless --append).",
)
@click.option(
    "--append",
    is_flag=True,
    help="Add these files to the ingested database (upsert ratings, insert new books/users)"
    " instead of replacing it; the same file twice adds nothing.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default=None,
    help="Input format (default auto: detected per file).",
)
@click.option(
    "--encoding",
    type=click.Choice(["auto", "utf-8", "cp1252"]),
    default=None,
    help="Input encoding (default auto: UTF-8 if valid, else Windows-1252).",
)
@db_option
@force_option
def ingest(
    books: Path | None,
    ratings: Path,
    users: Path | None,
    append: bool,
    fmt: str | None,
    encoding: str | None,
    db_path: Path,
    force: bool,
) -> None:
    """Read, clean and load Book-Crossing books, ratings and users (atomic; a no-op when unchanged).

    With --append, upsert a day's ratings (and new books/users) into the existing database.
    """
    if not append and (books is None or users is None):
        missing = " and ".join(
            f"--{n}" for n, p in (("books", books), ("users", users)) if p is None
        )
        raise click.UsageError(f"Missing option {missing} (required unless --append)")
    settings = load_settings(IngestSettings, "ingest", {"format": fmt, "encoding": encoding})
    err = Console(stderr=True)
    con = db.connect(db_path)
    try:
        with Progress(
            TextColumn("[bold]ingest[/] {task.description:<18}"),
            BarColumn(),
            TimeElapsedColumn(),
            console=err,
            transient=True,
            disable=not err.is_terminal,
        ) as bar:
            task = bar.add_task("", total=len(STEPS))

            def step(message: str) -> None:
                bar.update(
                    task,
                    description=message,
                    completed=STEPS.index(message) if message in STEPS else None,
                )

            if append:
                result = run_append(
                    con, settings, ratings, books, users, force=force, progress=step
                )
            else:
                result = run(con, settings, books, ratings, users, force=force, progress=step)
    finally:
        con.close()
    if result.skipped and append:
        click.echo(
            "ingest --append: every file was already applied; nothing changed. Use --force to apply again."
        )
        return
    if result.skipped:
        click.echo(
            f"ingest: up to date (fingerprint {result.fingerprint}); nothing changed. Use --force to run again."
        )
        return
    out = Console()
    for table in summary_tables(result):
        out.print(table)
    verb = "appended to" if append else "loaded into"
    click.echo(f"ingest: {verb} {db_path} (fingerprint {result.fingerprint})")


commands = [ingest]
