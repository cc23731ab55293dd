"""Enrichment stage: every book gets summary, genre, category, theme, tone, audience (LLM or zero-shot)."""

from __future__ import annotations

import asyncio
import math
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import duckdb

from engine import db, pipeline
from engine.enrich import prompt, store
from engine.enrich.prompt import BookRef
from engine.enrich.scheduler import Stats
from engine.enrich.settings import EnrichSettings
from engine.errors import ConfigError

STAGE = "enrich"
__all__ = ["EnrichResult", "EnrichSettings", "Stats", "run", "plan"]


@dataclass
class EnrichResult:
    """What a run did (or, for --dry-run, would do)."""

    provider: str
    source: str
    prompt_version: str
    pending: int  # books that needed work when the run started
    already_current: int  # books skipped: enriched by this source + prompt version
    dry_run: bool = False
    est_requests: int = 0
    est_prompt_tokens: int = 0
    est_completion_tokens: int = 0
    est_cost_usd: float = 0.0
    est_batches: int = 0  # --batch-api: input files / batches the books take
    stats: Stats = field(default_factory=Stats)
    batch: dict[str, Any] | None = None  # --batch-api: engine.enrich.batch.BatchStats as a dict
    seconds: float = 0.0
    run_id: str = ""

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly summary (for the stage record and --json output)."""
        out = asdict(self)
        out["stats"] = asdict(self.stats)
        return out


def _source(provider: str, settings: EnrichSettings) -> tuple[str, str]:
    model = settings.resolved_model(provider)
    vocabulary = settings.vocabulary()  # a malformed --vocab file stops here, before any work
    if provider == "zero-shot":
        from engine import embed
        from engine.enrich import zeroshot

        return f"zero-shot:{embed.model_label(model)}", zeroshot.prompt_version(
            vocabulary=vocabulary
        )
    return f"openai:{model}", prompt.version(vocabulary)


def plan(books: list[BookRef], settings: EnrichSettings) -> tuple[int, int, int, float]:
    """(requests, prompt tokens, completion tokens, USD) that enriching `books` by LLM should take."""
    n_req, p_tok, c_tok = 0, 0, 0
    vocabulary = settings.vocabulary()
    for i in range(0, len(books), settings.batch_size):
        chunk = books[i : i + settings.batch_size]
        p, c = prompt.estimate_request([(str(n + 1), b) for n, b in enumerate(chunk)], vocabulary)
        n_req, p_tok, c_tok = n_req + 1, p_tok + p, c_tok + c
    cost = (p_tok * settings.price_input_per_mtok + c_tok * settings.price_output_per_mtok) / 1e6
    return n_req, p_tok, c_tok, cost


def run(
    con: duckdb.DuckDBPyConnection,
    settings: EnrichSettings,
    *,
    progress: Callable[[Stats], None] | None = None,
    on_commit: Callable[[int], None] | None = None,
    on_batch_event: Callable[[str, dict[str, Any]], None] | None = None,
) -> EnrichResult:
    """Enrich the books that lack a current enrichment; each finished batch is committed as it lands."""
    provider = settings.resolved_provider()
    if settings.batch_api and provider != "openai":
        raise ConfigError(
            "--batch-api needs the openai provider (an OpenAI API key or base URL)",
            hint="Set OPENAI_API_KEY, or drop --batch-api to label offline",
        )
    source, version = _source(provider, settings)
    total = db.fetch(con, "SELECT count(*) AS n FROM books").item()
    books = store.pending_books(
        con, source, version, only_missing=settings.only_missing, limit=settings.limit
    )
    current = store.count_current(con, source, version)["n"]
    result = EnrichResult(
        provider,
        source,
        version,
        len(books),
        current,
        dry_run=settings.dry_run,
        run_id=uuid.uuid4().hex[:12],
    )
    result.stats.books = len(books)
    if provider == "openai":
        (
            result.est_requests,
            result.est_prompt_tokens,
            result.est_completion_tokens,
            result.est_cost_usd,
        ) = plan(books, settings)
        if settings.batch_api:
            from engine.enrich.batch import plan_batches

            result.est_cost_usd *= settings.batch_price_factor
            result.est_batches = plan_batches(books, settings)
    elif settings.dry_run:
        result.est_requests = math.ceil(len(books) / settings.zs_chunk)
    if settings.dry_run or not books:
        if not books and not settings.dry_run and total:
            _record(con, result, settings)
        return result
    sink = store.DuckSink(
        con, run_id=result.run_id, source=source, prompt_version=version, on_commit=on_commit
    )
    start = time.perf_counter()
    try:
        if provider == "openai" and settings.batch_api:
            result.stats, result.batch = _run_batch(
                con, books, settings, sink, progress, on_batch_event
            )
        elif provider == "openai":
            result.stats = asyncio.run(_run_llm(books, settings, sink, progress))
        else:
            result.stats = _run_zero_shot(books, settings, sink, progress)
    finally:
        result.seconds = time.perf_counter() - start
    _record(con, result, settings)
    return result


def _api(settings: EnrichSettings) -> tuple[str | None, str | None]:
    """(API key, base URL) from the settings or OPENAI_API_KEY / OPENAI_BASE_URL; one is needed."""
    api_key = settings.api_key or os.environ.get("OPENAI_API_KEY")
    base_url = settings.base_url or os.environ.get("OPENAI_BASE_URL") or None
    if not api_key and not base_url:
        raise ConfigError(
            "the openai provider needs OPENAI_API_KEY or a base URL",
            hint="Set OPENAI_API_KEY / OPENAI_BASE_URL, or use --provider zero-shot",
        )
    return api_key, base_url


def _run_batch(
    con: duckdb.DuckDBPyConnection,
    books: list[BookRef],
    settings: EnrichSettings,
    sink: store.DuckSink,
    progress: Callable[[Stats], None] | None,
    on_event: Callable[[str, dict[str, Any]], None] | None,
) -> tuple[Stats, dict[str, Any]]:
    """Batch API first; what the batches left unanswered then goes live (batch_retry = live)."""
    from engine.enrich.batch import BatchAPI, BatchRun, books_by_isbn

    api_key, base_url = _api(settings)
    api = BatchAPI(api_key=api_key, base_url=base_url, timeout=settings.request_timeout)
    try:
        runner = BatchRun(con, settings, sink, api, progress=progress, on_event=on_event)
        runner.run(books)
    finally:
        api.close()
    stats = runner.stats
    if runner.live:
        refs = books_by_isbn(con, sorted(runner.live))
        live = asyncio.run(
            _run_llm(
                refs,
                settings,
                sink,
                progress,
                history=runner.live,
                first_request_no=runner.request_no + 1,
            )
        )
        for name, value in asdict(live).items():
            if name != "books":
                setattr(stats, name, getattr(stats, name) + value)
    stats.books = len(books)
    return stats, asdict(runner.batch)


async def _run_llm(
    books: list[BookRef],
    settings: EnrichSettings,
    sink: store.DuckSink,
    progress: Callable[[Stats], None] | None,
    history: dict[str, Any] | None = None,
    first_request_no: int = 1,
) -> Stats:
    from engine.enrich.llm import LLMClient
    from engine.enrich.ratelimit import RateBudget
    from engine.enrich.scheduler import Scheduler

    api_key, base_url = _api(settings)
    client = LLMClient(
        model=settings.resolved_model("openai"),
        api_key=api_key,
        base_url=base_url,
        timeout=settings.request_timeout,
        structured_output=settings.structured_output,
        temperature=settings.temperature,
    )
    budget = RateBudget(settings.rpm, settings.tpm)
    scheduler = Scheduler(
        client,
        budget,
        sink,
        batch_size=settings.batch_size,
        concurrency=settings.concurrency,
        max_attempts=settings.max_attempts,
        backoff_base=settings.backoff_base,
        backoff_max=settings.backoff_max,
        rate_limit_wait=settings.rate_limit_wait or None,
        price_in=settings.price_input_per_mtok,
        price_out=settings.price_output_per_mtok,
        seed=settings.seed,
        progress=progress,
        first_request_no=first_request_no,
        vocabulary=settings.vocabulary(),
    )
    try:
        return await scheduler.run(books, history)
    finally:
        await client.close()


def _run_zero_shot(
    books: list[BookRef],
    settings: EnrichSettings,
    sink: store.DuckSink,
    progress: Callable[[Stats], None] | None,
) -> Stats:
    from engine.enrich.zeroshot import ZeroShotLabeller

    labeller = ZeroShotLabeller(
        settings.resolved_model("zero-shot"),
        batch_size=settings.zs_batch_size,
        threads=settings.zs_threads or None,
        vocabulary=settings.vocabulary(),
    )
    stats = Stats(books=len(books))
    for i in range(0, len(books), settings.zs_chunk):
        rows = labeller.label(books[i : i + settings.zs_chunk])
        sink.commit(rows, [], None)  # one chunk per transaction: a kill loses at most one chunk
        stats.done += len(rows)
        stats.requests += 1
        if progress:
            progress(stats)
    return stats


def _record(con: duckdb.DuckDBPyConnection, result: EnrichResult, settings: EnrichSettings) -> None:
    """Record the stage with a fingerprint of what book_enrichment now holds for downstream stages."""
    current = store.count_current(con, result.source, result.prompt_version)
    inputs = {
        "ingest": pipeline.upstream(con, "ingest"),
        "source": result.source,
        "prompt_version": result.prompt_version,
        "enriched": current["n"],
        "last_at": current["last_at"],
    }
    fp = pipeline.fingerprint(
        {"source": result.source, "prompt_version": result.prompt_version}, inputs
    )
    summary = {k: v for k, v in result.as_dict().items() if k != "stats"} | {
        k: v for k, v in asdict(result.stats).items()
    }
    with db.transaction(con):
        pipeline.record(con, STAGE, fp, settings.public(), inputs, summary)
