"""A local OpenAI-compatible chat-completions server with scripted faults (tests and bench/enrich.py).

It reads the <books> JSON block of the prompt it receives and answers for exactly those ids, so
replies are realistic; faults can be scripted per request (a list, consumed in order) or drawn at a
fixed rate, and a server-side token bucket enforces a requests-per-minute limit with 429s.
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
        return status(200, payload, limits)

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
