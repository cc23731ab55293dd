"""Facet subcommands: facets (label normalisation), content (embeddings), report (static HTML)."""

from __future__ import annotations

from pathlib import Path

import click

from engine import db
from engine.commands.options import db_option, force_option


def _k_option(field: str):  # noqa: ANN202 - a click decorator
    return click.option(
        f"--k-{field}",
        type=click.IntRange(min=1),
        default=None,
        help=f"Fixed number of {field} facets (default: chosen by silhouette).",
    )


@click.command()
@db_option
@force_option
@_k_option("genre")
@_k_option("category")
@_k_option("theme")
@_k_option("tone")
@_k_option("audience")
@click.option(
    "--prototype-k", is_flag=True, default=None, help="Use the prototype's k (20/20/25/20/15)."
)
@click.option(
    "--model", default=None, help="SentenceTransformer name or path (default all-MiniLM-L6-v2)."
)
@click.option("--seed", type=int, default=None, help="KMeans / silhouette sampling seed.")
def facets(
    db_path: Path, force: bool, model: str | None, seed: int | None, **ks: int | None
) -> None:
    """Cluster raw enrichment labels into human-named facets per field."""
    from engine import facets as stage

    settings = stage.load({"model": model, "seed": seed, **ks})
    con = db.connect(db_path)
    try:
        result = stage.run(con, settings, force=force, progress=click.echo)
    finally:
        con.close()
    if result["status"] == "up to date":
        click.echo(f"facets: up to date ({result['fingerprint']}); --force to rerun")
    else:
        click.echo(f"facets: {result['book_facets']:,} book facets for {result['books']:,} books")


@click.command()
@db_option
@force_option
@click.option(
    "--scope", type=click.Choice(["all", "enriched"]), default=None, help="Which books to embed."
)
@click.option("--model", default=None, help="SentenceTransformer name or path (384-dim).")
@click.option(
    "--neighbours",
    type=click.IntRange(0, 200),
    default=None,
    help="Nearest books precomputed per book for the dashboard (0: none).  [default: 20]",
)
def content(
    db_path: Path, force: bool, scope: str | None, model: str | None, neighbours: int | None
) -> None:
    """Embed each book's content (title, author, facets, summary) and each reader's history, and
    precompute each book's nearest books by content."""
    from engine.facets import content as stage

    settings = stage.load({"scope": scope, "model": model, "neighbours": neighbours})
    con = db.connect(db_path)
    try:
        result = stage.run(con, settings, force=force, progress=click.echo)
    finally:
        con.close()
    if result["status"] == "up to date":
        click.echo(f"content: up to date ({result['fingerprint']}); --force to rerun")


@click.command()
@db_option
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder for the HTML report.",
)
def report(db_path: Path, out_dir: Path) -> None:
    """Write a static HTML report of facet distributions and co-occurrences."""
    # the CLI's only door into app/, imported here so that engine never loads plotly
    from app.report import write_report

    con = db.connect(db_path, read_only=True)
    try:
        path = write_report(con, out_dir)
    finally:
        con.close()
    click.echo(f"report: {path}")


commands = [facets, content, report]
