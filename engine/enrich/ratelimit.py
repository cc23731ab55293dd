"""Client-side request and token budgets (GCRA pacing) that also obey the server's x-ratelimit-* headers."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Mapping

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def parse_duration(text: str | None) -> float | None:
    """Seconds in an x-ratelimit-reset-* value ('1s', '6m0s', '20ms', '1h2m3.5s', or a bare number)."""
    if text is None:
        return None
    text = text.strip().lower()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text.replace(" ", ""):
        return None
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(n) * scale[u] for n, u in parts)


def _number(headers: Mapping[str, str], key: str) -> float | None:
    value = headers.get(key)
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class RateBudget:
    """Spaces requests to `rpm` and tokens to `tpm` per minute; pauses everyone when the server says so.

    GCRA ("virtual scheduling"): each request moves a theoretical arrival time forward by 60/rpm
    seconds, so requests are spread evenly instead of bursting into the server's short windows.
    The server's x-ratelimit-limit-* headers can lower the limits (never raise them above the
    configured ones); remaining == 0 pauses all requests until the matching reset.
    """

    def __init__(
        self,
        rpm: float | None,
        tpm: float | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        token_burst_s: float = 10.0,
    ):
        self.configured_rpm, self.configured_tpm = rpm or None, tpm or None
        self.rpm, self.tpm = self.configured_rpm, self.configured_tpm
        self._clock = clock
        self._token_burst_s = token_burst_s
        self._req_tat = 0.0  # theoretical arrival time of the next request
        self._tok_tat = 0.0  # same for tokens
        self._paused_until = 0.0
        self._lock: asyncio.Lock | None = None
        self.waited_s = 0.0  # total time callers spent waiting here (for reports)

    def reserve(self, tokens: int, now: float | None = None) -> float:
        """Book a slot for one request of `tokens` tokens; returns the time at which it may start."""
        now = self._clock() if now is None else now
        start = max(now, self._paused_until)
        if self.rpm:
            start = max(start, self._req_tat)
        if self.tpm:
            tolerance = (
                self._token_burst_s
            )  # tokens may run ahead of the average by a few seconds' worth
            start = max(start, self._tok_tat - tolerance)
        if self.rpm:
            self._req_tat = max(self._req_tat, start) + 60.0 / self.rpm
        if self.tpm:
            self._tok_tat = max(self._tok_tat, start) + tokens * 60.0 / self.tpm
        return start

    async def acquire(self, tokens: int) -> float:
        """Wait for a slot for one request of about `tokens` tokens; returns the seconds waited."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:  # slots are handed out in order, so waits don't interleave unfairly
            now = self._clock()
            start = self.reserve(tokens, now)
        wait = start - now
        if wait > 0:
            await asyncio.sleep(wait)
            # A pause may have arrived while we slept (another request saw remaining == 0).
            extra = self._paused_until - self._clock()
            if extra > 0:
                await asyncio.sleep(extra)
                wait += extra
        self.waited_s += max(0.0, wait)
        return max(0.0, wait)

    def pause(self, seconds: float) -> None:
        """Hold every request for `seconds` from now (the server reported an exhausted budget)."""
        self._paused_until = max(self._paused_until, self._clock() + max(0.0, seconds))

    def observe(self, headers: Mapping[str, str] | None) -> None:
        """Adopt the server's limits and honour its remaining/reset counters (x-ratelimit-* headers)."""
        if not headers:
            return
        headers = {k.lower(): v for k, v in headers.items()}
        limit_req = _number(headers, "x-ratelimit-limit-requests")
        if limit_req and limit_req > 0:
            self.rpm = min(self.configured_rpm or limit_req, limit_req)
        limit_tok = _number(headers, "x-ratelimit-limit-tokens")
        if limit_tok and limit_tok > 0:
            self.tpm = min(self.configured_tpm or limit_tok, limit_tok)
        if _number(headers, "x-ratelimit-remaining-requests") == 0:
            self.pause(parse_duration(headers.get("x-ratelimit-reset-requests")) or 1.0)
        remaining_tok = _number(headers, "x-ratelimit-remaining-tokens")
        if remaining_tok is not None and remaining_tok <= 0:
            self.pause(parse_duration(headers.get("x-ratelimit-reset-tokens")) or 1.0)
