"""Async LLM enrichment: batches in flight under a rate budget, one retry layer, results aligned by id."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import backoff

from engine.enrich import prompt
from engine.enrich.align import ReplyError, align, empty_reason, merge, parse_items
from engine.enrich.llm import Completion, LLMClient, RequestFailed
from engine.enrich.prompt import BookRef
from engine.enrich.ratelimit import RateBudget
from engine.enrich.schema import ALL_FIELDS, BookLabels
from engine.errors import ProviderError

log = logging.getLogger("engine.enrich")


@dataclass
class Stats:
    """Running totals of one enrichment run (what the progress bar shows and the result reports)."""

    books: int = 0
    done: int = 0
    failed: int = 0
    incomplete: int = 0  # stored with some fields empty (and the reason)
    retries: int = 0  # requests sent again after a failure
    requests: int = 0
    failed_requests: int = 0
    rate_limited: int = 0  # 429 replies (they cost no book an attempt)
    reasked: int = 0  # books asked again (missing from a reply, or fields empty)
    dropped_ids: int = 0  # reply items with ids we never asked for
    outside_vocab: int = 0  # labels dropped as not in the user's vocabulary (--vocab)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0


class Sink(Protocol):
    """Where finished work goes; `commit` must be atomic (one transaction per call)."""

    def commit(
        self, rows: list[dict[str, Any]], failures: list[dict[str, Any]], request: dict[str, Any]
    ) -> None: ...


class _Again(Exception):
    """Raised out of one try of a job: backoff waits (see Scheduler._wait) and sends the job again."""

    def __init__(self, reason: str, tries: int, retry_after: float | None):
        super().__init__(reason)
        self.reason, self.tries, self.retry_after = reason, tries, retry_after


class _Stopped(Exception):
    """The run is ending on an error raised elsewhere: send nothing more."""


@dataclass
class _Job:
    isbns: list[str]
    refill: bool = False  # asking again for fields a first reply left empty
    rate_limited: int = 0  # 429s in a row for this job (their backoff exponent)
    failure: _Again | None = None  # split off a failed batch: wait like it before the first send


@dataclass
class _Book:
    ref: BookRef
    attempts: int = 0
    partial: BookLabels | None = None  # first answer with empty fields, kept for the refill
    partial_fields: list[str] = field(default_factory=list)
    outside: set[str] = field(default_factory=set)  # fields whose labels were outside the vocab


@dataclass(frozen=True)
class Asked:
    """What earlier requests did for one book: attempts spent and a first answer with empty fields."""

    attempts: int
    partial: BookLabels | None = None
    partial_fields: list[str] = field(default_factory=list)
    outside: tuple[str, ...] = ()  # fields whose labels were outside the user's vocabulary


@dataclass
class _Outcome:
    rows: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    requeue: list[_Job] = field(default_factory=list)  # new jobs, sent when a worker is free
    again: _Again | None = None  # send (what is left of) this job again after a backoff


def labels_row(
    isbn: str, labels: BookLabels, empty: list[str], reason: str | None
) -> dict[str, Any]:
    """One book_enrichment row (without source/prompt_version, which the sink adds)."""
    row: dict[str, Any] = {"isbn": isbn, "summary": labels.summary or None}
    for f in ALL_FIELDS[1:]:
        row[f] = list(getattr(labels, f))
    row["empty_fields"] = empty or None
    row["empty_reason"] = reason
    return row


# Workers per request slot: a worker waiting out a backoff holds no slot, so the others keep
# every slot busy unless most jobs are backing off at once.
WORKERS_PER_SLOT = 4
# A run that gets nothing but 429s for this many times backoff_max seconds stops (ProviderError).
RATE_LIMIT_PATIENCE = 10


class Scheduler:
    """Runs every book to an end state: enriched (maybe with empty fields and a reason) or failed.

    Retrying is the `backoff` library's: each job runs in `backoff.on_exception`, one try per
    request, waiting `_wait(exc)` between tries (the server's retry-after, else full-jitter
    exponential in the books' attempts). What a try leaves to send again (a halved batch, books
    with attempts left) is decided here, so attempts are counted per book across re-splits.
    """

    def __init__(
        self,
        client: LLMClient,
        budget: RateBudget,
        sink: Sink,
        *,
        batch_size: int,
        concurrency: int,
        max_attempts: int,
        backoff_base: float,
        backoff_max: float,
        price_in: float,
        price_out: float,
        seed: int = 0,
        progress: Callable[[Stats], None] | None = None,
        rate_limit_wait: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        first_request_no: int = 1,
        vocabulary: Any = None,  # engine.enrich.vocab.Vocabulary: a user's allowed labels
    ):
        self.client, self.budget, self.sink = client, budget, sink
        self.vocabulary = vocabulary
        self.batch_size, self.concurrency, self.max_attempts = batch_size, concurrency, max_attempts
        self.backoff_base, self.backoff_max = backoff_base, backoff_max
        self.rate_limit_wait = (
            RATE_LIMIT_PATIENCE * backoff_max if rate_limit_wait is None else rate_limit_wait
        )
        self.price_in, self.price_out = price_in, price_out
        self.rng = random.Random(seed)
        self.progress = progress
        self.stats = Stats()
        self._clock = clock
        self._books: dict[str, _Book] = {}
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._open = 0  # books not yet in an end state
        self._finished = asyncio.Event()
        self._request_no = first_request_no - 1  # request_no is unique per run (batch lines first)
        self._slots = asyncio.Semaphore(concurrency)  # requests in flight
        self._throttled_since: float | None = None  # first 429 since the last other reply
        self._stopping = False  # a worker died (fatal API error, sink error): start no request
        # The single retry layer. jitter=None: _wait jitters itself but never the server's value.
        self._send = backoff.on_exception(
            backoff.runtime,
            _Again,
            value=self._wait,
            jitter=None,
            on_backoff=self._on_backoff,
            logger=log,
            backoff_log_level=logging.DEBUG,
        )(self._try)

    async def run(self, books: list[BookRef], history: Mapping[str, Asked] | None = None) -> Stats:
        """Enrich `books`; returns totals. A sink or hook exception aborts the run (committed work stays).

        `history` carries what earlier requests for a book already did (the Batch API's answer):
        attempts spent, and a first answer with empty fields to complete, as if asked here.
        """
        history = history or {}
        self._books = {}
        for b in books:
            h = history.get(b.isbn)
            self._books[b.isbn] = (
                _Book(b, h.attempts, h.partial, list(h.partial_fields), set(h.outside))
                if h
                else _Book(b)
            )
        self.stats.books = self._open = len(self._books)
        isbns = list(self._books)
        for i in range(0, len(isbns), self.batch_size):
            self._queue.put_nowait(_Job(isbns[i : i + self.batch_size]))
        if not self._open:
            return self.stats
        workers = [
            asyncio.create_task(self._worker()) for _ in range(self.concurrency * WORKERS_PER_SLOT)
        ]
        finished = asyncio.create_task(self._finished.wait())
        try:
            while not finished.done():
                await asyncio.wait([finished, *workers], return_when=asyncio.FIRST_COMPLETED)
                for w in workers:
                    if w.done() and not w.cancelled() and w.exception() is not None:
                        raise w.exception()  # type: ignore[misc]
        finally:
            for w in [*workers, finished]:
                w.cancel()
            await asyncio.gather(*workers, finished, return_exceptions=True)
        return self.stats

    async def _worker(self) -> None:
        while True:
            job = await self._queue.get()
            job.isbns = [i for i in job.isbns if i in self._books]  # ended meanwhile? (defensive)
            if not job.isbns:
                continue
            try:
                await self._send(job)  # until nothing of it is left to send again
            except _Stopped:
                return
            except BaseException:
                self._stopping = True  # set before a worker waiting for the slot wakes up
                raise

    async def _try(self, job: _Job) -> None:
        """One request for `job`; raises _Again when what is left of it should go again."""
        if job.failure is not None:
            failure, job.failure = job.failure, None
            raise failure  # so backoff waits before this piece's first request, as for its batch
        async with self._slots:  # held for the request only, never for a backoff wait
            if self._stopping:
                raise _Stopped
            outcome, request = await self._request(job)
        self._finish(outcome, request)
        if outcome.again is not None:
            raise outcome.again

    def _wait(self, again: _Again) -> float:
        """Seconds before the next try: the server's retry-after, else full-jitter exponential."""
        if again.retry_after is not None:
            return again.retry_after  # the server knows best; jitter would make us early or late
        cap = min(self.backoff_max, self.backoff_base * 2 ** (again.tries - 1))
        return self.rng.uniform(0, cap)

    def _on_backoff(self, details: dict[str, Any]) -> None:
        self.stats.retries += 1

    async def _request(self, job: _Job) -> tuple[_Outcome, dict[str, Any]]:
        pairs = [(str(n + 1), self._books[i].ref) for n, i in enumerate(job.isbns)]
        ids = {str(n + 1): i for n, i in enumerate(job.isbns)}
        messages = prompt.build_messages(pairs, self.vocabulary)
        est_prompt, est_out = prompt.estimate_request(pairs, self.vocabulary)
        await self.budget.acquire(est_prompt + est_out)
        for isbn in job.isbns:
            self._books[isbn].attempts += 1
        self._request_no += 1
        request: dict[str, Any] = {
            "request_no": self._request_no,
            "n_books": len(job.isbns),
            "mode": self.client.mode,
        }
        self.stats.requests += 1
        try:
            reply = await self.client.complete(messages, prompt.max_tokens(len(job.isbns)))
        except RequestFailed as exc:
            self.budget.observe(exc.headers)
            outcome = self._failed_request(job, exc, request)
        else:
            self.budget.observe(reply.headers)
            self._throttled_since = None
            outcome = self._reply(job, ids, reply, request, est_prompt)
        return outcome, request

    # --- outcomes -------------------------------------------------------------------------------

    def _failed_request(self, job: _Job, exc: RequestFailed, request: dict[str, Any]) -> _Outcome:
        request.update(
            status="failed",
            http_status=exc.status,
            error=exc.reason,
            latency_ms=exc.latency_s * 1000.0,
        )
        self.stats.failed_requests += 1
        if exc.status == 429:
            self.stats.rate_limited += 1
        if exc.fatal:
            hint = (
                "Check the account's quota and billing"
                if exc.status == 429
                else "Check the API key, base URL and model name"
            )
            raise ProviderError(f"the API refused the request: {exc.reason}", hint=hint)
        if exc.status != 429:
            self._throttled_since = None
        if exc.retry_after == 0.0 and exc.reason.startswith("structured output unsupported"):
            self._refund(job)  # a capability probe, not the book's fault
            return _Outcome(again=_Again(exc.reason, 1, 0.0))
        if exc.status == 429:
            return self._rate_limited(job, exc)
        if not exc.retryable:
            return self._give_up(job.isbns, exc.reason)
        return self._retry(job, exc.reason, exc.retry_after)

    def _refund(self, job: _Job) -> None:
        for isbn in job.isbns:
            self._books[isbn].attempts -= 1

    def _rate_limited(self, job: _Job, exc: RequestFailed) -> _Outcome:
        """A 429 is the server's doing: it costs no book an attempt; only time bounds it."""
        self._refund(job)
        now = self._clock()
        if self._throttled_since is None:
            self._throttled_since = now
        throttled = now - self._throttled_since
        if throttled + (exc.retry_after or 0.0) > self.rate_limit_wait:
            asked = f", asked to wait {exc.retry_after:.0f} s more" if exc.retry_after else ""
            raise ProviderError(
                f"the API answered nothing but 429 (rate limited) for {throttled:.0f} s{asked}: "
                f"{exc.reason}",
                hint="Lower rpm/concurrency or check the account's rate limits; a rerun resumes",
            )
        job.rate_limited += 1
        return _Outcome(again=_Again(exc.reason, job.rate_limited, exc.retry_after))

    def _retry(self, job: _Job, reason: str, retry_after: float | None) -> _Outcome:
        """Books with attempts left go again after a backoff; the batch is halved after two failures."""
        out = _Outcome()
        alive = [i for i in job.isbns if self._books[i].attempts < self.max_attempts]
        out.rows, out.failures = self._end_exhausted(
            [i for i in job.isbns if i not in alive], reason
        )
        if not alive:
            return out
        attempt = max(self._books[i].attempts for i in alive)
        # A batch that keeps failing may hold one poison book: halve it so the others get through.
        # On its last try each book goes alone, so one bad book cannot take its batch-mates down.
        size = len(alive)
        if retry_after is None and attempt >= 2:
            size = 1 if self.max_attempts - attempt <= 1 else (len(alive) + 1) // 2
        job.isbns, job.rate_limited = alive[:size], 0
        out.again = _Again(reason, attempt, retry_after)
        for i in range(size, len(alive), size):
            piece = _Job(alive[i : i + size], job.refill)
            piece.failure = _Again(reason, attempt, retry_after)
            out.requeue.append(piece)
        return out

    def _give_up(self, isbns: list[str], reason: str) -> _Outcome:
        out = _Outcome()
        out.rows, out.failures = self._end_exhausted(isbns, reason)
        return out

    def _end_exhausted(self, isbns: list[str], reason: str) -> tuple[list[dict], list[dict]]:
        """Books out of attempts: keep a partial first answer (fields empty, with reason), else fail."""
        rows, failures = [], []
        for isbn in isbns:
            book = self._books[isbn]
            if book.partial is not None:
                rows.append(
                    labels_row(
                        isbn,
                        book.partial,
                        book.partial_fields,
                        f"empty in reply; asking again failed: {reason}",
                    )
                )
            else:
                failures.append({"isbn": isbn, "reason": reason, "attempts": book.attempts})
        return rows, failures

    def _reply(
        self,
        job: _Job,
        ids: dict[str, str],
        reply: Completion,
        request: dict[str, Any],
        est_prompt: int,
    ) -> _Outcome:
        estimated = reply.prompt_tokens is None or reply.completion_tokens is None
        pt = reply.prompt_tokens if reply.prompt_tokens is not None else est_prompt
        ct = (
            reply.completion_tokens
            if reply.completion_tokens is not None
            else prompt.estimate_tokens(reply.text or "")
        )
        cost = (pt * self.price_in + ct * self.price_out) / 1e6
        request.update(
            status="ok",
            http_status=200,
            prompt_tokens=pt,
            completion_tokens=ct,
            tokens_estimated=estimated,
            cost_usd=cost,
            latency_ms=reply.latency_s * 1000.0,
            mode=reply.mode,
        )
        self.stats.prompt_tokens += pt
        self.stats.completion_tokens += ct
        self.stats.cost_usd += cost
        try:
            items = parse_items(reply.text)
        except ReplyError as exc:
            request.update(status="unusable", error=str(exc))
            if reply.finish_reason == "length" and len(job.isbns) > 1:
                half = (len(job.isbns) + 1) // 2  # cut off by max_tokens: smaller batches fit
                return self._retry_split(job, half)
            return self._retry(job, f"unusable reply: {exc}", None)
        found = align(list(ids), items, self.vocabulary)
        self.stats.dropped_ids += len(found.dropped)
        self.stats.outside_vocab += found.n_outside()
        for local, per_field in found.outside.items():
            self._books[ids[local]].outside.update(per_field)
            log.debug("book %s: labels outside the vocabulary dropped: %s", ids[local], per_field)
        out = _Outcome()
        for local, labels in found.complete.items():
            isbn = ids[local]
            book = self._books[isbn]
            if book.partial is not None:
                labels = merge(book.partial, labels, book.partial_fields)
            out.rows.append(labels_row(isbn, labels, [], None))
        refill: list[str] = []
        for local, (labels, empty) in found.incomplete.items():
            isbn = ids[local]
            book = self._books[isbn]
            if book.partial is None and book.attempts < self.max_attempts:
                book.partial, book.partial_fields = labels, empty
                refill.append(isbn)
                continue
            merged = merge(book.partial, labels, book.partial_fields) if book.partial else labels
            still = merged.empty_fields(set(ALL_FIELDS))
            reason = empty_reason(book.attempts, still, book.outside) if still else None
            out.rows.append(labels_row(isbn, merged, still, reason))
        if refill:
            self.stats.reasked += len(refill)
            out.requeue.append(_Job(refill, refill=True))
        missing = [ids[m] for m in found.missing]
        if missing:
            self.stats.reasked += len(missing)
            retry = [i for i in missing if self._books[i].attempts < self.max_attempts]
            rows, fails = self._end_exhausted(
                [i for i in missing if i not in retry],
                f"missing from {self._books[missing[0]].attempts} replies",
            )
            out.rows += rows
            out.failures += fails
            size = max(
                1, min(len(retry), len(job.isbns) // 2)
            )  # smaller batches than the one that lost them
            if retry and self.max_attempts - max(self._books[i].attempts for i in retry) <= 1:
                size = 1  # last try: alone
            for i in range(0, len(retry), size):
                out.requeue.append(_Job(retry[i : i + size], job.refill))
        return out

    def _retry_split(self, job: _Job, size: int) -> _Outcome:
        out = _Outcome()
        for i in range(0, len(job.isbns), size):
            out.requeue.append(_Job(job.isbns[i : i + size], job.refill))
        self.stats.retries += 1
        return out

    # --- bookkeeping ----------------------------------------------------------------------------

    def _finish(self, out: _Outcome, request: dict[str, Any]) -> None:
        self.sink.commit(out.rows, out.failures, request)  # committed before anything else happens
        for row in out.rows:
            self._books.pop(row["isbn"], None)
            self.stats.done += 1
            self.stats.incomplete += bool(row["empty_fields"])
        for fail in out.failures:
            self._books.pop(fail["isbn"], None)
            self.stats.failed += 1
            log.info("book %s failed: %s", fail["isbn"], fail["reason"])
        self._open -= len(out.rows) + len(out.failures)
        for job in out.requeue:
            self._queue.put_nowait(job)
        if self.progress:
            self.progress(self.stats)
        if self._open <= 0:
            self._finished.set()
