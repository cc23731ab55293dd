"""Model subcommands: split, train, evaluate, recommend, similar (the DuckDB side of issue 3)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from engine import db
from engine.commands.options import db_option, force_option

console = Console()
_POSITIVES = click.Choice(["all", "explicit", "threshold"])


def _positives_options(fn):  # noqa: ANN001, ANN202 - a click decorator
    fn = click.option(
        "--kcore",
        type=click.IntRange(min=0),
        default=None,
        help="Iterative k-core on users and items (0 = off).",
    )(fn)
    fn = click.option(
        "--threshold", type=int, default=None, help="Minimum rating for --positives threshold."
    )(fn)
    fn = click.option(
        "--positives",
        type=_POSITIVES,
        default=None,
        help="Which ratings count: all (implicit 0 too), explicit (>= 1), threshold (>= --threshold).",
    )(fn)
    return fn


@click.command("split")
@db_option
@force_option
@click.option(
    "--method",
    type=click.Choice(["holdout", "loo"]),
    default=None,
    help="Per-user random holdout (default) or leave-one-out.",
)
@click.option(
    "--test-fraction",
    type=float,
    default=None,
    help="Holdout share of each user's positives in test (0.2).",
)
@click.option(
    "--valid-fraction",
    type=float,
    default=None,
    help="Share of the rest in validation (0.1; 0 = none).",
)
@click.option(
    "--min-user-interactions",
    type=int,
    default=None,
    help="Users with fewer positives stay train-only (3).",
)
@click.option("--seed", type=int, default=None, help="Split seed (2020).")
@_positives_options
def split_cmd(db_path: Path, force: bool, **flags) -> None:
    """Split positive interactions into train/valid/test, stored in DuckDB for every model."""
    from engine import config
    from engine.models import split

    settings = config.load_settings(split.SplitSettings, "split", flags)
    con = db.connect(db_path)
    try:
        info = split.run(con, settings, force=force)
    finally:
        con.close()
    state = "made" if info.created else "up to date (reused); --force to redo"
    console.print(f"split {info.split_id}: {state}")
    _print_summary(info.summary)


def _print_summary(summary: dict) -> None:
    table = Table(show_header=False, title="split summary")
    for key, value in summary.items():
        table.add_row(key, f"{value:,}" if isinstance(value, int) else str(value))
    console.print(table)


@click.command()
@db_option
@force_option
@click.option(
    "--model",
    "model_name",
    required=True,
    help="lightgcn | mf | ncf | gfcf | chebycf | itemknn | rp3beta | ease | als | bpr | popularity; "
    "with --final also `best`: the default model (best on validation) as its run was trained.",
)
@click.option("--epochs", type=int, default=None)
@click.option("--layers", type=int, default=None)
@click.option("--dim", type=int, default=None)
@click.option("--lr", type=float, default=None)
@click.option("--batch-size", type=int, default=None)
@click.option(
    "--eval-every", type=int, default=None, help="Validate every N epochs (early stopping)."
)
@click.option(
    "--patience",
    type=int,
    default=None,
    help="Evaluations without improvement before stopping (0 = never).",
)
@click.option("--seed", type=int, default=None)
@click.option("--device", default=None, help="auto | cpu | cuda | cuda:N")
@click.option(
    "--resume/--no-resume",
    default=None,
    help="Continue from this model's checkpoint for the same split.",
)
@click.option(
    "--tuned",
    is_flag=True,
    help="Use the best settings of `bookrec tune` on this split (flags given here still win).",
)
@click.option(
    "--final",
    is_flag=True,
    help="After training on the split, refit on all interactions and serve that run (its "
    "metrics stay the split-trained run's; also reports the train+valid refit judged on test).",
)
@click.option(
    "--nproc",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Train lightgcn / mf / ncf data-parallel on N local processes (DDP; gloo on CPU, "
    "NCCL on GPUs); rank 0, this process, alone evaluates and writes the run.",
)
@_positives_options
def train(
    db_path: Path,
    force: bool,
    model_name: str,
    tuned: bool,
    final: bool,
    nproc: int,
    positives,
    threshold,
    kcore,
    **flags,
) -> None:
    """Train one model on the current split (made if missing), evaluate it, write it back as current."""
    from engine.models import final as final_stage
    from engine.models import stage

    split_overrides = {"positives": positives, "threshold": threshold, "kcore": kcore}
    if model_name == final_stage.BEST and not final:
        from engine.errors import ConfigError

        raise ConfigError("--model best refits the default model: it needs --final")
    with contextlib.ExitStack() as stack:
        if nproc > 1 or _distributed():
            from engine.models import ddp

            ddp.check_model(model_name)
            if nproc > 1:
                device = ddp.device_spec(model_name, flags["device"])
                stack.enter_context(ddp.session(nproc, device))
        con = stack.enter_context(contextlib.closing(db.connect(db_path)))
        if final:
            done = final_stage.train_final(
                con,
                model_name,
                flags,
                db_path=db_path,
                force=force,
                tuned=tuned,
                split_overrides=split_overrides,
            )
        else:
            result = stage.train(
                con,
                model_name,
                flags,
                db_path=db_path,
                force=force,
                tuned=tuned,
                split_overrides=split_overrides,
            )
    if final:
        _print_final(done)
        return
    r = result.record
    m = r.metrics
    if result.skipped:
        console.print(
            f"{r.model}: up to date (run {r.run_id}, same settings and split); --force to retrain"
        )
        return
    console.print(
        f"{r.model}: run {r.run_id} on {result.split.split_id} · fit {r.timings['fit_s']:.1f}s · "
        f"recall@20 {m.get('recall@20', float('nan')):.4f} ndcg@20 {m.get('ndcg@20', float('nan')):.4f} · "
        f"sampled HR@10 {m.get('sampled_hr@10', float('nan')):.4f} · now current"
    )


def _distributed() -> bool:
    """Whether this process is rank 0 under torchrun (`python -m engine.models.ddp`)."""
    from engine.models import trainer

    return trainer.current_hooks().world_size > 1


def _print_final(done) -> None:  # noqa: ANN001 - engine.models.final.FinalResult
    r, m = done.record, done.record.metrics
    if done.skipped:
        console.print(f"{r.model}: final run {r.run_id} is up to date; --force to redo")
        return
    console.print(
        f"{r.model}: split run {r.params['metrics_from']} recall@20 {m.get('recall@20', float('nan')):.4f} "
        f"(valid {m.get('valid_recall@20', float('nan')):.4f}) · refit on train+valid, judged on test: "
        f"recall@20 {m.get('refit_recall@20', float('nan')):.4f} · final run {r.run_id} refitted on "
        f"all interactions in {r.timings['fit_s']:.1f}s, now current (serves recommendations)"
    )


_FULL = ["recall@20", "ndcg@20", "precision@20", "hit@20", "recall@10", "ndcg@10", "coverage@20"]
_OTHER = ["valid_recall@20", "refit_recall@20"]  # selection (valid) and the train+valid refit
_SAMPLED = ["sampled_hr@10", "sampled_ndcg@10"]


@click.command()
@db_option
@click.option("--model", "models", multiple=True, help="Evaluate only this model (repeatable).")
@click.option("--all", "all_", is_flag=True, help="Evaluate every current run (the default).")
def evaluate(db_path: Path, models: tuple[str, ...], all_: bool) -> None:
    """Leaderboard: every current run on the current split, full ranking + the prototype's sampled metric."""
    from engine.evaluate import leaderboard
    from engine.models import split

    con = db.connect(db_path)
    try:
        entries = leaderboard.evaluate(con, None if all_ or not models else list(models))
        info = split.current(con)
    finally:
        con.close()
    wide = Console(
        width=max(console.width, 130)
    )  # a table this wide wraps badly at a pipe's 80 columns
    table = Table(
        title=f"leaderboard · {info.split_id} ({info.method}) · full ranking over all items, "
        "train+valid items masked",
        caption="valid R@20 = recall@20 on the validation part (what picks the default model); "
        "refit R@20 = the same settings refitted on train+valid, judged once on test; "
        "sampled = the prototype's protocol (held-out item among 99 random unseen items): "
        "far more optimistic, not comparable with full ranking",
    )
    table.add_column("model", style="bold")
    for key in _FULL:
        table.add_column(key, justify="right")
    table.add_column("valid R@20", justify="right", style="cyan")
    table.add_column("refit R@20", justify="right", style="cyan")
    table.add_column("│", justify="center", style="dim")
    for key in _SAMPLED:
        table.add_column(key.replace("_", " ").replace("hr", "HR").replace("ndcg", "NDCG"), justify="right",
                         style="magenta")  # fmt: skip
    table.add_column("fit s", justify="right")
    notes = []
    for e in entries:
        cells = [f"{e.metrics[k]:.4f}" if k in e.metrics else "-" for k in _FULL + _OTHER]
        sampled = [f"{e.metrics[k]:.4f}" if k in e.metrics else "-" for k in _SAMPLED]
        fit = f"{e.fit_s:.1f}" if e.fit_s is not None else "-"
        table.add_row(e.model, *cells, "│", *sampled, fit)
        notes.append(
            f"  {e.model}: {e.run_id}" + ("" if e.status == "evaluated" else f" ({e.status})")
        )
    wide.print(table)
    wide.print("runs:\n" + "\n".join(notes))


def _check_model(con, model: str | None) -> None:
    from engine.errors import UnknownEntityError
    from engine.models import runs

    if model is not None and model not in runs.current_runs(con)["model"].to_list():
        raise UnknownEntityError(
            f"no trained run of model {model!r}", hint=f"Train it: bookrec train --model {model}"
        )


@click.command()
@db_option
@click.option("--user", "user_id", type=int, required=True, help="Book-Crossing User-ID.")
@click.option("--k", type=click.IntRange(min=1), default=10, show_default=True)
@click.option(
    "--model",
    default=None,
    help="Model whose current run answers (default: the one best on the validation part).",
)
def recommend(db_path: Path, user_id: int, k: int, model: str | None) -> None:
    """Top-k books for a reader (books already rated excluded; unknown readers get popular books)."""
    con = db.connect(db_path, read_only=True)
    why = None
    try:
        _check_model(con, model)
        if model is None:
            rows = db.query(con, "recommend_default", {"user_id": user_id, "k": k})
            why = _why_default(db.query(con, "default_run"))
        else:
            rows = db.query(
                con, "recommend_for_model", {"model": model, "user_id": user_id, "k": k}
            )
        n_rated = db.query(con, "user_rating_count", {"user_id": user_id})["n"][0]
    finally:
        con.close()
    if rows.is_empty():
        console.print(
            f"no books to recommend to user {user_id} (the catalogue is empty or all rated)"
        )
        return
    if rows["source"][0] == "popularity_fallback":
        who = (
            "is unknown (no ratings)"
            if n_rated == 0
            else f"has {n_rated} ratings but is unknown to the model"
        )
        console.print(
            f"[yellow]user {user_id} {who}: showing the most popular books instead "
            f"(source = popularity_fallback)[/yellow]"
        )
    elif n_rated == 0:
        console.print(
            f"[yellow]user {user_id} is unknown (no ratings): {rows['model'][0]} ranks the same for everyone[/yellow]"
        )
    title = f"recommendations for user {user_id} · model {rows['model'][0]}" + (
        f" · run {rows['run_id'][0]}" if rows["run_id"][0] else ""
    )
    _print_rows(rows, title, ["rank", "isbn", "title", "author", "score", "source"])
    if why:
        console.print(why)


def _why_default(run) -> str | None:  # noqa: ANN001 - a Polars frame
    """One line saying which model is the default and why (recommend without --model)."""
    if run.is_empty():
        return None
    r = run.row(0, named=True)
    if r["valid_recall"] is None:
        return f"default model {r['model']}: the newest run (no current run was measured on a validation part)"
    return (
        f"default model {r['model']}: best recall@20 on the validation part "
        f"({r['valid_recall']:.4f}) of the {r['rivals']} current models on this split; "
        "--model NAME picks another"
    )


@click.command()
@db_option
@click.option("--isbn", required=True, help="ISBN of the book.")
@click.option("--k", type=click.IntRange(min=1), default=10, show_default=True)
@click.option(
    "--model",
    default=None,
    help="Model whose item embeddings to use (default: lightgcn, else the best).",
)
def similar(db_path: Path, isbn: str, k: int, model: str | None) -> None:
    """Books most similar to a book (cosine similarity of item embeddings; the book itself excluded)."""
    from engine.errors import StageNotReadyError, UnknownEntityError

    con = db.connect(db_path, read_only=True)
    try:
        _check_model(con, model)
        if model is None:
            if db.query(con, "default_similar").is_empty():
                raise StageNotReadyError(
                    "no trained run with item embeddings",
                    hint="Run `bookrec train --model lightgcn`",
                )
            rows = db.query(con, "similar_default", {"isbn": isbn, "k": k})
        else:
            rows = db.query(con, "similar_for_model", {"model": model, "isbn": isbn, "k": k})
        book = db.query(con, "book_title", {"isbn": isbn.strip().upper()})
    finally:
        con.close()
    if rows.is_empty():
        raise UnknownEntityError(
            f"no embedding for ISBN {isbn} in {model or 'the default model'}",
            hint="Unrated books, books outside the split and models without item embeddings (gfcf, popularity) have none",
        )
    label = f"{book['title'][0]} by {book['author'][0]}" if book.height else isbn
    _print_rows(
        rows,
        f"books like {label} · model {rows['model'][0]} · run {rows['run_id'][0]}",
        ["rank", "isbn", "title", "author", "score"],
    )


def _print_rows(rows, title: str, cols: list[str]) -> None:
    table = Table(title=title)
    for c in cols:
        table.add_column(c, justify="right" if c in ("rank", "score") else "left", overflow="fold")
    for r in rows.iter_rows(named=True):
        table.add_row(
            *[
                f"{r[c]:.4f}"
                if c == "score" and r[c] is not None
                else str(r[c] if r[c] is not None else "-")
                for c in cols
            ]
        )
    console.print(table)


@click.command("refresh")
@db_option
@force_option
@click.option("--model", "models", multiple=True, help="Refresh only this model (repeatable).")
def refresh_cmd(db_path: Path, force: bool, models: tuple[str, ...]) -> None:
    """Serve new ratings without retraining: refit counting models, fold in changed readers."""
    from engine.models import refresh

    con = db.connect(db_path)
    try:
        done = refresh.refresh(con, models, db_path=db_path, force=force)
    finally:
        con.close()
    wide = Console(width=max(console.width, 120))
    table = Table(
        title="refresh · each model's new current run, derived from its current one",
        caption="refit = statistics recomputed from every rating; fold-in = item vectors (or item "
        "weights) kept, changed and new readers solved from them; metrics stay the source run's. "
        "A full retrain: `bookrec split`, then `bookrec train`.",
    )
    for col in (
        "model",
        "method",
        "changed readers",
        "new readers",
        "unknown books",
        "s",
        "new run",
    ):
        table.add_column(col, justify="left" if col in ("model", "method", "new run") else "right")
    for r in done:
        table.add_row(*(str(v) for v in refresh.describe(r).values()))
    wide.print(table)
    for r in done:
        if r.note:
            click.echo(f"{r.model}: {r.note}")


commands = [split_cmd, train, evaluate, recommend, similar, refresh_cmd]
