"""`bookrec enrich`: label books with an OpenAI-compatible LLM or the offline zero-shot labeller."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from engine import db
from engine.commands.options import db_option
from engine.config import load_settings

console = Console(stderr=True)


@click.command()
@db_option
@click.option(
    "--provider",
    type=click.Choice(["auto", "openai", "zero-shot"]),
    default=None,
    help="openai (any compatible server) or zero-shot (offline MiniLM). Default: openai when "
    "OPENAI_API_KEY or OPENAI_BASE_URL is set, else zero-shot.",
)
@click.option(
    "--model", default=None, help="Chat model (default gpt-4o-mini) or sentence-transformer."
)
@click.option(
    "--base-url", default=None, help="OpenAI-compatible base URL (default $OPENAI_BASE_URL)."
)
@click.option("--limit", type=click.IntRange(min=0), default=None, help="Enrich at most N books.")
@click.option(
    "--only-missing", is_flag=True, default=None, help="Skip books enriched by any source."
)
@click.option(
    "--dry-run",
    is_flag=True,
    default=None,
    help="Estimate requests, tokens and cost; send nothing.",
)
@click.option(
    "--batch-api",
    is_flag=True,
    default=None,
    help="Send requests through the OpenAI Batch API (files + batches, ~half price, up to 24 h); "
    "a rerun resumes polling the stored batches.",
)
@click.option(
    "--batch-size", type=click.IntRange(min=1), default=None, help="Books per request (8)."
)
@click.option(
    "--concurrency", type=click.IntRange(min=1), default=None, help="Requests in flight (8)."
)
@click.option(
    "--vocab",
    type=click.Path(dir_okay=False),
    default=None,
    help="Your own labels (TOML or CSV: field, label, description) for zero-shot and LLM alike.",
)
def enrich(db_path: Path, **flags: object) -> None:
    """Give books a summary and genre/category/theme/tone/audience labels (resumable)."""
    from engine import enrich as stage

    settings = load_settings(stage.EnrichSettings, "enrich", flags)
    con = db.connect(db_path)
    try:
        plan = settings.dry_run
        with _progress(not plan) as bar:
            task = bar.add_task("enrich", total=None, failed=0, retries=0, tokens=0)

            def update(stats: stage.Stats) -> None:
                bar.update(
                    task,
                    total=stats.books,
                    completed=stats.done + stats.failed,
                    failed=stats.failed,
                    retries=stats.retries,
                    tokens=stats.prompt_tokens + stats.completion_tokens,
                )

            result = stage.run(con, settings, progress=update)
    finally:
        con.close()
    _report(result)


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(
            "failed {task.fields[failed]} · retries {task.fields[retries]} · tokens {task.fields[tokens]:,}"
        ),
        TimeElapsedColumn(),
        console=console,
        disable=not enabled,
        transient=False,
    )


def _report(result: object) -> None:
    r = result  # EnrichResult
    head = f"enrich [{r.source}, prompt {r.prompt_version}]"
    if r.dry_run:
        click.echo(
            f"{head}: dry run, nothing sent; {r.pending:,} books to do, {r.already_current:,} already current"
        )
        if r.provider == "openai":
            via = f" in {r.est_batches:,} Batch API batches" if r.est_batches else ""
            click.echo(
                f"  ~{r.est_requests:,} requests{via}, ~{r.est_prompt_tokens:,} prompt + "
                f"~{r.est_completion_tokens:,} completion tokens, ~${r.est_cost_usd:.4f} "
                "(prices: [enrich] price_input_per_mtok / price_output_per_mtok"
                + (" x batch_price_factor)" if via else ")")
            )
        return
    if not r.pending:
        click.echo(f"{head}: up to date ({r.already_current:,} books enriched)")
        return
    s = r.stats
    click.echo(
        f"{head}: {s.done:,} enriched, {s.failed:,} failed, {s.incomplete:,} with empty fields "
        f"in {r.seconds:.1f}s"
    )
    if r.provider == "openai":
        click.echo(
            f"  {s.requests:,} requests ({s.retries:,} retries), {s.prompt_tokens:,} prompt + "
            f"{s.completion_tokens:,} completion tokens, ~${s.cost_usd:.4f}"
        )
    if r.batch is not None:
        _report_batch(r.batch)
    if s.failed:
        click.echo(
            "  failed books are listed in the enrichment_failures table; rerun to try them again"
        )


def _report_batch(b: dict) -> None:
    click.echo(
        f"  batch API: {b['submitted']:,} submitted, {b['resumed']:,} resumed, "
        f"{b['completed']:,} completed, {b['expired']:,} expired "
        f"({b['resubmitted']:,} books resubmitted), {b['failed']:,} failed; lines "
        f"{b['lines_ok']:,} ok, {b['lines_failed']:,} errors, {b['lines_missing']:,} missing; "
        f"{b['retried_live']:,} books retried live, {b['left_for_next_run']:,} left for the next run"
    )
    for err in b["errors"]:
        click.echo(f"  batch failed: {err}")
    if b["still_open"]:
        click.echo(
            f"  {b['still_open']:,} batches still running (batch_max_wait reached); "
            "rerun `bookrec enrich --batch-api` to resume polling them"
        )


commands = [enrich]
