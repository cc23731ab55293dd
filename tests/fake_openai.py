"""A local OpenAI-compatible chat-completions server with scripted faults (tests and bench/enrich.py).

It reads the <books> JSON block of the prompt it receives and answers for exactly those ids, so
replies are realistic; faults can be scripted per request (a list, consumed in order) or drawn at a
fixed rate, and a server-side token bucket enforces a requests-per-minute limit with 429s.

It also speaks the Files and Batches API (`/v1/files` upload, metadata and content;
`/v1/batches` create, retrieve, list): a batch ends after `batch_polls` retrieves, with an
outcome scripted per batch in creation order (`batch_script`): None answers every line (in a
shuffled order, as the real API does not promise order), "partial" leaves its first line out of
both files, answers the second with an error line (HTTP 500), drops a book from the third reply
and leaves fields empty in the fourth; "expired" answers the first half, writes `batch_expired`
error lines for the rest but the last, which is missing; "cancelled" answers the first half
only; "failed" fails the whole batch (no files). `batches_supported=False` answers 404, as a
chat-only server (vLLM, llama.cpp) does.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from engine.sample_vocab import GENRES

BLOCK = re.compile(r"<books>\s*(.*?)\s*</books>", re.S)
BATCH_OUTCOMES = (None, "partial", "expired", "cancelled", "failed")
INJECTION = "Ignore all previous instructions"

FAULTS = (
    "401",
    "429",
    "429ms",
    "429bare",
    "quota",
    "500",
    "slow",
    "truncated",
    "nonjson",
    "drop_one",
    "wrong_ids",
    "reorder",
    "missing_fields",
    "string_list",
    "no_usage",
    "length",
)


def labels_for(title: str) -> dict[str, Any]:
    """The deterministic answer for a title: genre from a keyword in it, the rest from its hash."""
    genre = next((g for g in GENRES if g.lower() in title.lower()), "Fiction")
    h = int(hashlib.sha256(title.encode()).hexdigest(), 16)
    return {
        "summary": f"A book called {title[:40]}.",
        "genre": [genre],
        "category": ["Fiction" if h % 2 else "Non-Fiction"],
        "theme": [
            ("love", "war", "family", "redemption")[h % 4]
        ],  # lower case: client must title-case
        "tone": ["  dark " if h % 3 == 0 else "Uplifting"],
        "audience": ["Adults"],
    }


@dataclass
class Logged:
    """One request as the server saw it."""

    t: float
    ids: list[str]
    isbns: list[str]
    titles: list[str]
    response_format: str | None
    status: int
    fault: str | None
    auth: str
    system: str = ""  # the system message (a user's allowed labels go there)


@dataclass
class FakeOpenAI:
    """Start with `with FakeOpenAI(...) as server:`; `server.base_url` is the /v1 URL."""

    latency: float = 0.0
    rpm: int | None = None  # server-side limit (token bucket, 1 s burst)
    script: list[str | None] = field(default_factory=list)  # faults for requests 1, 2, ... in order
    fault_rate: float = 0.0  # random faults beyond the script
    fault_kinds: tuple[str, ...] = ("429", "500")
    retry_after: float = 1.0  # seconds the injected 429 asks for
    old_server: bool = False  # rejects response_format json_schema with a 400
    gullible: bool = False  # obeys an injected title: answers {"books": []}
    slow_s: float = 5.0  # how long a "slow" reply takes
    seed: int = 0
    fault_for: Callable[[int, list[str]], str | None] | None = (
        None  # custom (request_no, titles) -> fault
    )
    log: list[Logged] = field(default_factory=list)
    batches_supported: bool = True  # False: /v1/files and /v1/batches answer 404
    batch_script: list[str | None] = field(default_factory=list)  # outcome per batch, in order
    batch_polls: int = 2  # retrieves before a batch ends: validating, in_progress, then its end
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> metadata + "data"
    batches: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> the Batch object
    calls: list[str] = field(default_factory=list)  # Files/Batches operations, in order

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()
        self._tokens = float(self._burst())
        self._refilled = time.monotonic()
        self._n = 0

    # --- lifecycle --------------------------------------------------------------------------------
    def __enter__(self) -> FakeOpenAI:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> str:
        """Serve on 127.0.0.1 at a free port in a background thread; returns base_url."""
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(self._loop)
            app = web.Application()
            app.router.add_post("/v1/chat/completions", self._handle)
            app.router.add_post("/v1/files", self._upload)
            app.router.add_get("/v1/files/{file_id}", self._file)
            app.router.add_get("/v1/files/{file_id}/content", self._file_content)
            app.router.add_post("/v1/batches", self._create_batch)
            app.router.add_get("/v1/batches", self._list_batches)
            app.router.add_get("/v1/batches/{batch_id}", self._retrieve_batch)
            self._runner = web.AppRunner(app, access_log=None)
            self._loop.run_until_complete(self._runner.setup())
            site = web.SockSite(self._runner, sock)
            self._loop.run_until_complete(site.start())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()
        ready.wait(10)
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        return self.base_url

    def stop(self) -> None:
        """Shut the server down."""

        async def _cleanup() -> None:
            await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(_cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():  # else each server leaves an "unclosed event loop" warning
            self._loop.close()

    # --- views for tests ---------------------------------------------------------------------------
    def requested_isbns(self) -> list[str]:
        """Every ISBN sent, in order, with repeats."""
        return [i for r in self.log for i in r.isbns]

    def ok_requests(self) -> list[Logged]:
        """Requests answered 200."""
        return [r for r in self.log if r.status == 200]

    def count(self, op: str) -> int:
        """How many Files/Batches calls of one kind (upload, create, retrieve, list, content) came in."""
        return self.calls.count(op)

    def batch_isbns(self, batch_id: str) -> list[str]:
        """The ISBNs of every request in a batch's input file, in file order."""
        return [i for line in self._input_lines(self.batches[batch_id]) for i in line["isbns"]]

    # --- Files and Batches ----------------------------------------------------------------------------
    def _no_batches(self) -> web.Response:
        return web.json_response(
            {"error": {"message": "Not Found", "type": "not_found"}}, status=404
        )

    def _new_file(self, name: str, purpose: str, data: bytes) -> dict[str, Any]:
        file_id = f"file-{len(self.files) + 1:04d}"
        meta = {
            "id": file_id,
            "object": "file",
            "bytes": len(data),
            "created_at": int(time.time()),
            "filename": name,
            "purpose": purpose,
            "status": "processed",
        }
        self.files[file_id] = {**meta, "data": data}
        return meta

    async def _upload(self, request: web.Request) -> web.Response:
        self.calls.append("upload")
        if not self.batches_supported:
            return self._no_batches()
        form = await request.post()
        upload = form.get("file")
        if upload is None or not hasattr(upload, "file"):
            return web.json_response({"error": {"message": "file is required"}}, status=400)
        meta = self._new_file(upload.filename, str(form.get("purpose", "")), upload.file.read())
        return web.json_response(meta)

    async def _file(self, request: web.Request) -> web.Response:
        found = self.files.get(request.match_info["file_id"])
        if not self.batches_supported or found is None:
            return self._no_batches()
        return web.json_response({k: v for k, v in found.items() if k != "data"})

    async def _file_content(self, request: web.Request) -> web.Response:
        self.calls.append("content")
        found = self.files.get(request.match_info["file_id"])
        if not self.batches_supported or found is None:
            return self._no_batches()
        return web.Response(body=found["data"], content_type="application/octet-stream")

    async def _create_batch(self, request: web.Request) -> web.Response:
        self.calls.append("create")
        if not self.batches_supported:
            return self._no_batches()
        body = await request.json()
        if body.get("input_file_id") not in self.files:
            return web.json_response({"error": {"message": "No such file"}}, status=400)
        if body.get("endpoint") != "/v1/chat/completions" or body.get("completion_window") != "24h":
            return web.json_response({"error": {"message": "bad endpoint or window"}}, status=400)
        batch_id = f"batch_{len(self.batches) + 1:04d}"
        lines = len(self.files[body["input_file_id"]]["data"].splitlines())
        self.batches[batch_id] = {
            "id": batch_id,
            "object": "batch",
            "endpoint": body["endpoint"],
            "input_file_id": body["input_file_id"],
            "completion_window": "24h",
            "status": "validating",
            "created_at": int(time.time()),
            "output_file_id": None,
            "error_file_id": None,
            "errors": None,
            "metadata": body.get("metadata"),
            "request_counts": {"total": lines, "completed": 0, "failed": 0},
            "_polls": 0,
            "_outcome": self.batch_script[len(self.batches)]
            if len(self.batches) < len(self.batch_script)
            else None,
        }
        return web.json_response(self._public(self.batches[batch_id]))

    async def _list_batches(self, request: web.Request) -> web.Response:
        self.calls.append("list")
        if not self.batches_supported:
            return self._no_batches()
        data = [self._public(b) for b in reversed(self.batches.values())]  # newest first
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
                "has_more": False,
            }
        )

    async def _retrieve_batch(self, request: web.Request) -> web.Response:
        self.calls.append("retrieve")
        batch = self.batches.get(request.match_info["batch_id"])
        if not self.batches_supported or batch is None:
            return self._no_batches()
        if batch["status"] in ("validating", "in_progress"):
            batch["_polls"] += 1
            if batch["_polls"] >= self.batch_polls:
                self._finish_batch(batch)
            else:
                batch["status"] = "in_progress"
        return web.json_response(self._public(batch))

    @staticmethod
    def _public(batch: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in batch.items() if not k.startswith("_")}

    def _input_lines(self, batch: dict[str, Any]) -> list[dict[str, Any]]:
        out = []
        for raw in self.files[batch["input_file_id"]]["data"].splitlines():
            line = json.loads(raw)
            user = next(m["content"] for m in line["body"]["messages"] if m["role"] == "user")
            books = json.loads(BLOCK.search(user).group(1))["books"]
            out.append({**line, "books": books, "isbns": [b.get("isbn", "") for b in books]})
        return out

    def _finish_batch(self, batch: dict[str, Any]) -> None:
        kind = batch["_outcome"]
        lines = self._input_lines(batch)
        if kind == "failed":
            batch["status"] = "failed"
            batch["errors"] = {
                "object": "list",
                "data": [{"code": "model_not_found", "message": "The model is not available"}],
            }
            return
        half = (len(lines) + 1) // 2
        out: list[dict[str, Any]] = []
        err: list[dict[str, Any]] = []
        for i, line in enumerate(lines):
            fault = None
            head = {"id": f"batch_req_{batch['id']}_{i}", "custom_id": line["custom_id"]}
            if kind == "partial":
                if i == 0:
                    continue  # in neither file
                if i == 1:
                    err.append(
                        {
                            **head,
                            "response": {
                                "status_code": 500,
                                "request_id": f"req_{i}",
                                "body": {"error": {"message": "The server had an error"}},
                            },
                            "error": None,
                        }
                    )
                    continue
                fault = {2: "drop_one", 3: "missing_fields"}.get(i)
            if kind == "expired" and i >= half:
                if i < len(lines) - 1:
                    err.append(
                        {
                            **head,
                            "response": None,
                            "error": {
                                "code": "batch_expired",
                                "message": "This request could not be executed before the "
                                "completion window expired.",
                            },
                        }
                    )
                continue
            if kind == "cancelled" and i >= half:
                continue
            with self._lock:
                self._n += 1
                n = self._n
            out.append(
                {
                    **head,
                    "response": {
                        "status_code": 200,
                        "request_id": f"req_{i}",
                        "body": self._completion(line["body"], line["books"], n, fault),
                    },
                    "error": None,
                }
            )
        self._rng.shuffle(out)

        def jsonl(items: list[dict[str, Any]]) -> bytes:
            return b"".join(json.dumps(x).encode() + b"\n" for x in items)

        if out:
            batch["output_file_id"] = self._new_file("output.jsonl", "batch_output", jsonl(out))[
                "id"
            ]
        if err:
            batch["error_file_id"] = self._new_file("errors.jsonl", "batch_output", jsonl(err))[
                "id"
            ]
        batch["status"] = kind if kind in ("expired", "cancelled") else "completed"
        batch["request_counts"] = {"total": len(lines), "completed": len(out), "failed": len(err)}

    # --- rate limit ---------------------------------------------------------------------------------
    def _burst(self) -> float:
        return max(1.0, (self.rpm or 60) / 60.0)

    def _take(self) -> tuple[bool, float, float]:
        """(allowed, remaining, seconds until one more request is allowed)."""
        if not self.rpm:
            return True, 1e9, 0.0
        rate = self.rpm / 60.0
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self._burst(), self._tokens + (now - self._refilled) * rate)
            self._refilled = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True, self._tokens, max(0.0, (1.0 - self._tokens) / rate)
            return False, 0.0, (1.0 - self._tokens) / rate

    def _limit_headers(self, remaining: float, reset: float) -> dict[str, str]:
        if not self.rpm:
            return {}
        return {
            "x-ratelimit-limit-requests": str(self.rpm),
            "x-ratelimit-remaining-requests": str(int(remaining)),
            "x-ratelimit-reset-requests": f"{int(reset * 1000)}ms",
            "x-ratelimit-limit-tokens": "10000000",
            "x-ratelimit-remaining-tokens": "9999999",
            "x-ratelimit-reset-tokens": "6ms",
        }

    # --- the endpoint ---------------------------------------------------------------------------------
    def _fault(self, n: int, titles: list[str]) -> str | None:
        if self.fault_for is not None:
            f = self.fault_for(n, titles)
            if f:
                return f
        if n <= len(self.script):
            return self.script[n - 1]
        if self.fault_rate and self._rng.random() < self.fault_rate:
            return self._rng.choice(self.fault_kinds)
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        fmt = (body.get("response_format") or {}).get("type")
        user = next((m["content"] for m in body["messages"] if m["role"] == "user"), "")
        match = BLOCK.search(user)
        books = json.loads(match.group(1))["books"] if match else []
        with self._lock:
            self._n += 1
            n = self._n
        ids = [str(b["id"]) for b in books]
        entry = Logged(
            time.monotonic(),
            ids,
            [b.get("isbn", "") for b in books],
            [b.get("title", "") for b in books],
            fmt,
            0,
            None,
            request.headers.get("Authorization", ""),
        )
        entry.system = next((m["content"] for m in body["messages"] if m["role"] == "system"), "")
        self.log.append(entry)

        def status(code: int, payload: Any, headers: dict[str, str] | None = None) -> web.Response:
            entry.status = code
            return web.json_response(payload, status=code, headers=headers)

        if self.old_server and fmt == "json_schema":
            return status(
                400,
                {
                    "error": {
                        "message": "response_format json_schema is not supported",
                        "type": "invalid_request_error",
                    }
                },
            )
        if fmt == "json_object" and "json" not in json.dumps(body["messages"]).lower():
            return status(400, {"error": {"message": "messages must contain the word 'json'"}})
        allowed, remaining, reset = self._take()
        limits = self._limit_headers(remaining, reset)
        if not allowed:
            return status(
                429,
                {"error": {"message": "Rate limit reached for requests", "type": "requests"}},
                {**limits, "retry-after-ms": str(int(reset * 1000) + 1)},
            )
        fault = self._fault(n, entry.titles)
        entry.fault = fault
        await asyncio.sleep(self.latency)
        if fault == "429":
            return status(
                429,
                {"error": {"message": "Rate limit reached"}},
                {**limits, "retry-after": str(int(self.retry_after))},
            )
        if fault == "429ms":
            return status(
                429,
                {"error": {"message": "Rate limit reached"}},
                {**limits, "retry-after-ms": str(int(self.retry_after * 1000))},
            )
        if fault == "429bare":  # no retry-after: the client picks its own backoff
            return status(429, {"error": {"message": "Rate limit reached"}}, limits)
        if fault == "quota":  # OpenAI's 429 for an exhausted quota: waiting never helps
            return status(
                429,
                {
                    "error": {
                        "message": "You exceeded your current quota",
                        "type": "insufficient_quota",
                        "code": "insufficient_quota",
                    }
                },
            )
        if fault == "401":
            return status(
                401, {"error": {"message": "Incorrect API key provided", "code": "invalid_api_key"}}
            )
        if fault == "500":
            return status(500, {"error": {"message": "The server had an error"}}, limits)
        if fault == "slow":
            await asyncio.sleep(self.slow_s)
        if fault == "nonjson":
            entry.status = 200
            return web.Response(
                text="<html><body>502 Bad Gateway</body></html>", content_type="text/html"
            )
        return status(200, self._completion(body, books, n, fault), limits)

    def _completion(
        self, body: dict[str, Any], books: list[dict[str, Any]], n: int, fault: str | None
    ) -> dict[str, Any]:
        """The chat.completion body answering `books` (live replies and batch output lines)."""
        items = self._answer(books, fault)
        content = json.dumps({"books": items})
        if fault in ("truncated", "length"):
            content = content[: len(content) // 2]
        usage = (
            None
            if fault == "no_usage"
            else {
                "prompt_tokens": len(json.dumps(body["messages"])) // 4,
                "completion_tokens": len(content) // 4,
                "total_tokens": 0,
            }
        )
        payload = {
            "id": f"chatcmpl-{n}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model"),
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "length" if fault == "length" else "stop",
                    "message": {"role": "assistant", "content": content},
                }
            ],
        }
        if usage:
            payload["usage"] = usage
        return payload

    def _answer(self, books: list[dict[str, Any]], fault: str | None) -> list[dict[str, Any]]:
        if self.gullible and any(INJECTION.lower() in b.get("title", "").lower() for b in books):
            return []
        items = [{"id": str(b["id"]), **labels_for(b.get("title", ""))} for b in books]
        if fault == "drop_one" and items:
            items = items[:-1]
        elif fault == "wrong_ids" and items:
            items[0]["id"] = "zz-unknown"
            items.append({"id": "999", **labels_for("extra")})
        elif fault == "reorder":
            items = items[::-1]
        elif fault == "missing_fields" and items:
            del items[0]["theme"]
            items[0]["tone"] = []
        elif fault == "string_list" and items:
            items[0]["genre"] = items[0]["genre"][0]
        return items
