"""Enrichment through the OpenAI Batch API: JSONL in through the Files API, one batch per file.

The requests are the live path's, byte for byte in their `body` (same prompt, same structured
output, 8 books per request with local ids "1".."8"); each JSONL line's `custom_id` is
"<first ISBN>+<books>", and `enrich_batch_requests` keeps the ISBNs behind every custom_id, so
answers are matched back by id with `align`, exactly as live replies are. Every step is written
down before the next one starts (file uploaded -> row; batch created -> its id; each poll ->
status; results -> rows, failures, request records and `processed` in one transaction), so a run
killed at any point resumes polling on the next run instead of paying for the same books again.

What a batch leaves unanswered (an error line, a line missing from the output, ids missing from a
reply, fields left empty, an unusable reply) is retried through the live path right away
(`batch_retry = "live"`, the default: the same scheduler, with the batch's try counted against
`max_attempts` and a first answer with empty fields completed as live) or recorded in
`enrichment_failures` and submitted again by the next run (`batch_retry = "next-run"`). The
books of an expired batch that it never ran are resubmitted in a new batch at once.

The control calls (upload, create, retrieve, list, download) use the SDK's own retries (3): unlike
chat requests they cost nothing per try and hold no book attempts.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import duckdb
import openai
import polars as pl

from engine import db
from engine.enrich import prompt
from engine.enrich.align import ReplyError, align, empty_reason, parse_items
from engine.enrich.llm import _error_message, parse_completion, request_body
from engine.enrich.prompt import BookRef
from engine.enrich.scheduler import Asked, Stats, labels_row
from engine.enrich.schema import BookLabels
from engine.enrich.settings import EnrichSettings
from engine.enrich.store import DuckSink
from engine.enrich.vocab import Vocabulary
from engine.errors import ConfigError, ProviderError

log = logging.getLogger("engine.enrich")

ENDPOINT = "/v1/chat/completions"
WINDOW = "24h"
TERMINAL = frozenset({"completed", "expired", "failed", "cancelled"})
EXPIRED_CODE = "batch_expired"  # error-file code of requests an expired batch never ran
_INCOMING = "_batch_requests_incoming"  # the name sql/queries/enrich_batch.sql reads from


@dataclass
class Line:
    """One request of a batch: its custom_id, the books it holds (prompt order) and its JSONL line."""

    custom_id: str
    isbns: list[str]
    text: bytes  # one JSON object and "\n"


@dataclass
class BatchStats:
    """What the batch side of a run did (the live retries are in the run's Stats)."""

    submitted: int = 0  # batches created by this run
    resumed: int = 0  # batches found unfinished in the database and polled again
    completed: int = 0
    expired: int = 0
    failed: int = 0
    cancelled: int = 0
    still_open: int = 0  # left running when batch_max_wait ran out (a rerun resumes them)
    lines_ok: int = 0
    lines_failed: int = 0  # error lines (or a status other than 200)
    lines_missing: int = 0  # requests with no line in a completed batch's files
    resubmitted: int = 0  # books an expired batch never ran, sent again in a new batch
    retried_live: int = 0  # books handed to the live path
    left_for_next_run: int = 0  # books recorded in enrichment_failures (batch_retry = next-run)
    errors: list[str] = field(default_factory=list)  # why batches failed


def structured_mode(settings: EnrichSettings) -> str:
    """The response_format of batch requests (no 400 fallback is possible inside a batch)."""
    return "json_object" if settings.structured_output == "json_object" else "json_schema"


def build_lines(
    books: Iterable[BookRef],
    *,
    model: str,
    mode: str,
    temperature: float | None,
    batch_size: int,
    vocabulary: Vocabulary | None = None,
) -> Iterator[Line]:
    """The JSONL requests for `books`, `batch_size` books each, built as the live path builds them
    (with the user's vocabulary, when there is one, in the system prompt)."""
    chunk: list[BookRef] = []

    def line(chunk: list[BookRef]) -> Line:
        pairs = [(str(n + 1), b) for n, b in enumerate(chunk)]
        messages = prompt.build_messages(pairs, vocabulary)
        body = request_body(model, messages, mode, prompt.max_tokens(len(chunk)), temperature)
        custom_id = f"{chunk[0].isbn}+{len(chunk)}"
        record = {"custom_id": custom_id, "method": "POST", "url": ENDPOINT, "body": body}
        text = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
        return Line(custom_id, [b.isbn for b in chunk], text.encode("utf-8"))

    for book in books:
        chunk.append(book)
        if len(chunk) == batch_size:
            yield line(chunk)
            chunk = []
    if chunk:
        yield line(chunk)


def split_files(lines: Iterable[Line], max_requests: int, max_bytes: int) -> Iterator[list[Line]]:
    """Group lines into input files of at most `max_requests` lines and `max_bytes` bytes."""
    current: list[Line] = []
    size = 0
    for line in lines:
        n = len(line.text)
        if n > max_bytes:
            raise ConfigError(
                f"one batch request is {n:,} bytes, more than batch_max_bytes ({max_bytes:,})",
                hint="Lower batch_size or raise batch_max_bytes (the API takes files up to 200 MB)",
            )
        if current and (len(current) >= max_requests or size + n > max_bytes):
            yield current
            current, size = [], 0
        current.append(line)
        size += n
    if current:
        yield current


def plan_batches(books: list[BookRef], settings: EnrichSettings) -> int:
    """How many batches (input files) `books` would take; builds the lines, uploads nothing."""
    lines = build_lines(
        books,
        model=settings.resolved_model("openai"),
        mode=structured_mode(settings),
        temperature=settings.temperature,
        batch_size=settings.batch_size,
        vocabulary=settings.vocabulary(),
    )
    return sum(1 for _ in split_files(lines, settings.batch_max_requests, settings.batch_max_bytes))


class BatchAPI:
    """The Files and Batches endpoints through the openai SDK; failures become one-line ProviderErrors."""

    def __init__(self, *, api_key: str | None, base_url: str | None, timeout: float):
        self._secret = api_key or ""
        self._client = openai.OpenAI(
            api_key=api_key or "no-key",
            base_url=base_url,
            timeout=max(timeout, 300.0),  # an upload of up to 200 MB
            max_retries=3,
        )

    def close(self) -> None:
        self._client.close()

    def upload(self, name: str, data: bytes) -> str:
        """Upload one JSONL input file (purpose "batch"); its file id."""
        return self._call(
            "upload the batch input file",
            lambda: self._client.files.create(
                file=(name, data, "application/jsonl"), purpose="batch"
            ),
        ).id

    def create(self, input_file_id: str, metadata: dict[str, str]) -> Any:
        return self._call(
            "create the batch",
            lambda: self._client.batches.create(
                input_file_id=input_file_id,
                endpoint=ENDPOINT,
                completion_window=WINDOW,
                metadata=metadata,
            ),
        )

    def retrieve(self, batch_id: str) -> Any:
        return self._call(
            f"check batch {batch_id}", lambda: self._client.batches.retrieve(batch_id)
        )

    def find(self, input_file_id: str) -> Any | None:
        """The batch created from `input_file_id`, if any (a run killed right after creating it)."""

        def scan() -> Any | None:
            for batch in self._client.batches.list(limit=100):  # the SDK pages on
                if batch.input_file_id == input_file_id:
                    return batch
            return None

        return self._call("list the batches", scan)

    def content(self, file_id: str) -> bytes:
        return self._call(
            f"download file {file_id}", lambda: self._client.files.content(file_id)
        ).content

    def _redact(self, text: str) -> str:
        return text.replace(self._secret, "***") if len(self._secret) >= 4 else text

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        resume = "submitted batches are stored; a rerun resumes polling them"
        try:
            return fn()
        except openai.APIStatusError as exc:
            status, message = exc.status_code, self._redact(_error_message(exc))
            if status in (404, 405, 501) and what in (
                "upload the batch input file",
                "create the batch",
            ):
                raise ProviderError(
                    f"the server has no Batch API: could not {what} (HTTP {status}: {message})",
                    hint="Drop --batch-api: the live path works with any OpenAI-compatible "
                    "server (vLLM, llama.cpp, Ollama)",
                ) from None
            hint = (
                "Check the API key and base URL"
                if status in (401, 403)
                else f"Try again later; {resume}"
            )
            raise ProviderError(f"could not {what}: HTTP {status}: {message}", hint=hint) from None
        except (openai.APIConnectionError, openai.APITimeoutError) as exc:
            raise ProviderError(
                f"could not {what}: {self._redact(str(exc))}",
                hint=f"Check OPENAI_BASE_URL and the network; {resume}",
            ) from None


@dataclass
class _Out:
    """What processing one finished batch writes (in one transaction)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    unfinished: list[str] = field(default_factory=list)  # never run: resubmit
    live: dict[str, Asked] = field(default_factory=dict)  # to retry live after the commit


class BatchRun:
    """Submits pending books as batches, polls every open batch to its end and stores the results."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        settings: EnrichSettings,
        sink: DuckSink,
        api: BatchAPI,
        *,
        progress: Callable[[Stats], None] | None = None,
        on_event: Callable[[str, dict[str, Any]], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.con, self.settings, self.sink, self.api = con, settings, sink, api
        self.progress, self.on_event = progress, on_event  # on_event: a test hook
        self._sleep, self._clock = sleep, clock
        self.model = settings.resolved_model("openai")
        self.mode = structured_mode(settings)
        self.vocabulary = settings.vocabulary()  # the live path's: same prompt, same filter
        self.price_in = settings.price_input_per_mtok * settings.batch_price_factor
        self.price_out = settings.price_output_per_mtok * settings.batch_price_factor
        self.stats = Stats()
        self.batch = BatchStats()
        self.live: dict[str, Asked] = {}  # books to send through the live path when polling ends
        self.request_no = 0
        self._files = 0
        self._key = {"source": sink.source, "prompt_version": sink.prompt_version}

    # --- the run ----------------------------------------------------------------------------------
    def run(self, books: list[BookRef]) -> None:
        """Submit what no open batch holds yet, then poll until every open batch is stored."""
        self.stats.books = len(books)
        held = set(db.query(self.con, "batch_open_isbns", self._key)["isbn"].to_list())
        self.batch.resumed = self._open().height
        self.submit([b for b in books if b.isbn not in held])
        start = self._clock()
        while True:
            for row in self._open().iter_rows(named=True):
                self._poll(row)
            still = self._open().height
            if not still:
                return
            if (
                self.settings.batch_max_wait
                and self._clock() - start >= self.settings.batch_max_wait
            ):
                self.batch.still_open = still
                return
            self._sleep(self.settings.batch_poll_interval)

    def submit(self, books: list[BookRef]) -> None:
        """Upload `books` as JSONL files (bounded by count and size) and create one batch per file."""
        lines = build_lines(
            books,
            model=self.model,
            mode=self.mode,
            temperature=self.settings.temperature,
            batch_size=self.settings.batch_size,
            vocabulary=self.vocabulary,
        )
        for chunk in split_files(
            lines, self.settings.batch_max_requests, self.settings.batch_max_bytes
        ):
            self._files += 1
            name = f"bookrec-{self.sink.run_id}-{self._files}.jsonl"
            file_id = self.api.upload(name, b"".join(line.text for line in chunk))
            frame = pl.DataFrame(
                {"custom_id": [ln.custom_id for ln in chunk], "isbns": [ln.isbns for ln in chunk]},
                schema={"custom_id": pl.Utf8, "isbns": pl.List(pl.Utf8)},
            )
            with db.transaction(self.con):
                db.execute(
                    self.con,
                    "batch_insert",
                    {
                        **self._key,
                        "input_file_id": file_id,
                        "n_requests": len(chunk),
                        "n_books": sum(len(ln.isbns) for ln in chunk),
                        "run_id": self.sink.run_id,
                    },
                )
                self.con.register(_INCOMING, frame.to_arrow())
                try:
                    db.execute(self.con, "batch_insert_requests", {"input_file_id": file_id})
                finally:
                    self.con.unregister(_INCOMING)
            self._event("uploaded", input_file_id=file_id, requests=len(chunk))
            self._create(file_id, recover=False)
            self.batch.submitted += 1

    def _open(self) -> pl.DataFrame:
        return db.query(self.con, "batch_open", self._key)

    def _event(self, kind: str, **info: Any) -> None:
        log.debug("batch %s %s", kind, info)
        if self.on_event is not None:
            self.on_event(kind, info)

    def _create(self, input_file_id: str, *, recover: bool) -> str:
        """Create the batch of an uploaded file; after a kill, first look for one already created."""
        batch = self.api.find(input_file_id) if recover else None
        if batch is None:
            batch = self.api.create(
                input_file_id, {"bookrec_run": self.sink.run_id, "source": self.sink.source[:500]}
            )
        self._event("created", batch_id=batch.id, input_file_id=input_file_id)
        db.execute(
            self.con,
            "batch_set_id",
            {"batch_id": batch.id, "status": batch.status, "input_file_id": input_file_id},
        )
        return batch.id

    def _poll(self, row: dict[str, Any]) -> None:
        batch_id = row["batch_id"] or self._create(row["input_file_id"], recover=True)
        batch = self.api.retrieve(batch_id)
        status = str(batch.status)
        error = _batch_errors(batch) if status == "failed" else None
        db.execute(
            self.con,
            "batch_update",
            {
                "input_file_id": row["input_file_id"],
                "status": status,
                "output_file_id": batch.output_file_id,
                "error_file_id": batch.error_file_id,
                "error": error,
                "terminal": status in TERMINAL,
            },
        )
        self._event("polled", batch_id=batch_id, status=status)
        if status in TERMINAL:
            self._process(row["input_file_id"], batch, error)

    # --- results ----------------------------------------------------------------------------------
    def _process(self, input_file_id: str, batch: Any, error: str | None) -> None:
        """Store one finished batch: answers by custom_id, then what is left, in one transaction."""
        status = str(batch.status)
        requests = {
            r["custom_id"]: r["isbns"]
            for r in db.query(
                self.con, "batch_requests", {"input_file_id": input_file_id}
            ).iter_rows(named=True)
        }
        answers = self._lines(batch.output_file_id, requests)
        errors = self._lines(batch.error_file_id, requests)
        out = _Out()
        for custom_id, isbns in requests.items():
            item = answers.get(custom_id) or errors.get(custom_id)
            if item is None:
                if status == "expired":
                    out.unfinished += isbns
                elif status == "failed":
                    reason = f"batch failed: {error or 'no reason given'}"
                    out.failures += [{"isbn": i, "reason": reason, "attempts": 1} for i in isbns]
                elif status == "cancelled":
                    self._leftover(out, isbns, "batch cancelled before this request ran")
                else:
                    self.batch.lines_missing += 1
                    self._leftover(out, isbns, "missing from the batch output")
                continue
            response = item.get("response") or {}
            err = item.get("error") or {}
            if response.get("status_code") == 200 and isinstance(response.get("body"), dict):
                self._answer(out, isbns, response["body"], batch.id)
            elif isinstance(err, dict) and err.get("code") == EXPIRED_CODE:
                out.unfinished += isbns
            else:
                reason = _line_error(response, err)
                self.batch.lines_failed += 1
                self.stats.requests += 1
                self.stats.failed_requests += 1
                self.request_no += 1
                out.requests.append(
                    {
                        "request_no": self.request_no,
                        "n_books": len(isbns),
                        "status": "failed",
                        "http_status": response.get("status_code"),
                        "error": reason,
                        "mode": self.mode,
                        "batch_id": batch.id,
                    }
                )
                self._leftover(out, isbns, reason)
        setattr(self.batch, status, getattr(self.batch, status) + 1)
        if error:
            self.batch.errors.append(f"{batch.id}: {error}")

        def mark(con: duckdb.DuckDBPyConnection) -> None:
            db.execute(con, "batch_mark_processed", {"input_file_id": input_file_id})

        self.sink.commit_many(out.rows, out.failures, out.requests, then=mark)
        self.stats.done += len(out.rows)
        self.stats.incomplete += sum(bool(r["empty_fields"]) for r in out.rows)
        self.stats.failed += len(out.failures)
        self.live.update(out.live)
        self._event("processed", batch_id=batch.id, status=status, unfinished=len(out.unfinished))
        if self.progress:
            self.progress(self.stats)
        if out.unfinished:
            self.batch.resubmitted += len(out.unfinished)
            self.submit(books_by_isbn(self.con, out.unfinished))

    def _lines(self, file_id: str | None, requests: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """The JSONL lines of an output or error file by custom_id (unknown ids and bad lines skipped)."""
        found: dict[str, dict[str, Any]] = {}
        if not file_id:
            return found
        for raw in self.api.content(file_id).splitlines():
            try:
                item = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue  # counts as missing: its request is retried like any other
            if isinstance(item, dict) and item.get("custom_id") in requests:
                found.setdefault(item["custom_id"], item)
        return found

    def _answer(self, out: _Out, isbns: list[str], body: dict[str, Any], batch_id: str) -> None:
        """One 200 line: usage and cost recorded, items aligned by id as in the live path."""
        ids = {str(n + 1): isbn for n, isbn in enumerate(isbns)}
        self.request_no += 1
        request: dict[str, Any] = {
            "request_no": self.request_no,
            "n_books": len(isbns),
            "status": "ok",
            "http_status": 200,
            "mode": self.mode,
            "batch_id": batch_id,
        }
        out.requests.append(request)
        try:
            text, _finish, pt, ct = parse_completion(body)
        except ValueError as exc:
            request.update(status="unusable", error=str(exc))
            self.batch.lines_failed += 1
            self.stats.requests += 1
            self.stats.failed_requests += 1
            self._leftover(out, isbns, str(exc))
            return
        self.batch.lines_ok += 1
        estimated = pt is None or ct is None
        if pt is None:
            refs = books_by_isbn(self.con, isbns)
            pairs = [(str(n + 1), b) for n, b in enumerate(refs)]
            pt = prompt.estimate_request(pairs, self.vocabulary)[0]
        if ct is None:
            ct = prompt.estimate_tokens(text or "")
        cost = (pt * self.price_in + ct * self.price_out) / 1e6
        request.update(
            prompt_tokens=pt, completion_tokens=ct, tokens_estimated=estimated, cost_usd=cost
        )
        self.stats.requests += 1
        self.stats.prompt_tokens += pt
        self.stats.completion_tokens += ct
        self.stats.cost_usd += cost
        try:
            items = parse_items(text)
        except ReplyError as exc:
            request.update(status="unusable", error=str(exc))
            self._leftover(out, isbns, f"unusable reply: {exc}")
            return
        found = align(list(ids), items, self.vocabulary)
        self.stats.dropped_ids += len(found.dropped)
        self.stats.outside_vocab += found.n_outside()
        for local, labels in found.complete.items():
            out.rows.append(labels_row(ids[local], labels, [], None))
        for local, (labels, empty) in found.incomplete.items():
            outside = tuple(found.outside.get(local, {}))
            self._leftover(out, [ids[local]], "empty in reply", (labels, empty), outside)
        if found.missing:
            self.stats.reasked += len(found.missing)
            self._leftover(out, [ids[m] for m in found.missing], "missing from 1 replies")

    def _leftover(
        self,
        out: _Out,
        isbns: list[str],
        reason: str,
        partial: tuple[BookLabels, list[str]] | None = None,
        outside: tuple[str, ...] = (),
    ) -> None:
        """A book the batch did not finish: live retry, end state (no attempts left), or next run."""
        labels, empty = partial if partial else (None, [])
        for isbn in isbns:
            if self.settings.batch_retry == "live" and self.settings.max_attempts > 1:
                out.live[isbn] = Asked(1, labels, list(empty), outside)
                self.batch.retried_live += 1
            elif self.settings.batch_retry == "live" and labels is not None:
                # The live rule with no attempt left: stored with its empty fields and the reason.
                out.rows.append(labels_row(isbn, labels, empty, empty_reason(1, empty, outside)))
            else:
                if self.settings.batch_retry == "next-run":
                    self.batch.left_for_next_run += 1
                why = f"{reason}: {', '.join(empty)}" if labels is not None else reason
                off = [f for f in empty if f in outside]
                if off:
                    why += f" (labels outside the vocabulary dropped: {', '.join(off)})"
                out.failures.append({"isbn": isbn, "reason": f"batch: {why}", "attempts": 1})


def books_by_isbn(con: duckdb.DuckDBPyConnection, isbns: list[str]) -> list[BookRef]:
    """Catalogue fields of `isbns` (ISBN order), for resubmission and live retries."""
    frame = db.query(con, "batch_books", {"isbns": list(isbns)})
    return [
        BookRef(r["isbn"], r["title"], r["author"], r["year"], r["publisher"])
        for r in frame.iter_rows(named=True)
    ]


def _batch_errors(batch: Any) -> str:
    errors = getattr(batch, "errors", None)
    data = getattr(errors, "data", None) or []
    parts = [
        f"{getattr(e, 'code', None) or 'error'}: {getattr(e, 'message', None) or ''}".strip()
        for e in data
    ]
    return "; ".join(parts)[:300] or "no reason given"


def _line_error(response: dict[str, Any], err: Any) -> str:
    """One error line's reason: HTTP status and the server's message, or the line's error code."""
    status = response.get("status_code")
    body = response.get("body")
    message = None
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            message = inner.get("message")
    if message is None and isinstance(err, dict):
        message = err.get("message") or err.get("code")
    head = f"HTTP {status}" if status else "error line"
    return f"{head}: {str(message or 'no message')[:200]}"
