"""The only network code of enrichment: one chat-completions call through the openai SDK (retries off).

The SDK runs over aiohttp (`openai[aiohttp]`'s DefaultAioHttpClient) when that extra is installed,
else over its default httpx transport.
"""

from __future__ import annotations

import email.utils
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import openai

from engine.enrich.schema import response_format

log = logging.getLogger("engine.enrich")


@dataclass
class Completion:
    """One successful HTTP exchange: the reply text and what it cost."""

    text: str | None
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    headers: dict[str, str]
    latency_s: float
    mode: str


@dataclass
class RequestFailed(Exception):
    """A request that produced no usable HTTP reply; `retryable` says whether trying again can help."""

    reason: str
    retryable: bool
    retry_after: float | None = None
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    fatal: bool = False  # every later request would fail the same way (bad key, unknown model)
    latency_s: float = 0.0

    def __str__(self) -> str:
        return self.reason


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """The server's requested wait: retry-after-ms, else retry-after (seconds or an HTTP date)."""
    if not headers:
        return None
    headers = {k.lower(): v for k, v in headers.items()}
    try:
        if "retry-after-ms" in headers:
            return max(0.0, float(headers["retry-after-ms"]) / 1000.0)
        if "retry-after" in headers:
            return max(0.0, float(headers["retry-after"]))
    except ValueError:
        parsed = email.utils.parsedate_tz(headers.get("retry-after", ""))
        if parsed is not None:
            return max(0.0, email.utils.mktime_tz(parsed) - time.time())
    return None


def request_body(
    model: str,
    messages: list[dict[str, str]],
    mode: str,
    max_tokens: int,
    temperature: float | None,
) -> dict[str, Any]:
    """The chat-completions request body: sent live, or as the `body` of one Batch API JSONL line."""
    body: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "response_format": response_format(mode),
        "max_tokens": max_tokens,
    }
    if temperature is not None:
        body["temperature"] = temperature
    return body


def parse_completion(body: Any) -> tuple[str | None, str | None, int | None, int | None]:
    """(text, finish_reason, prompt_tokens, completion_tokens) of a chat completion's JSON body.

    ValueError when it holds no choices[0].message (live replies and Batch API output lines alike).
    """
    try:
        choice = body["choices"][0]
        text = choice["message"].get("content")
        finish = choice.get("finish_reason")
    except (KeyError, IndexError, TypeError, AttributeError):
        raise ValueError("response has no choices[0].message") from None
    usage = body.get("usage") if isinstance(body, dict) else None
    usage = usage if isinstance(usage, dict) else {}
    return text, finish, usage.get("prompt_tokens"), usage.get("completion_tokens")


class LLMClient:
    """Async chat completions against any OpenAI-compatible server, structured output when it can.

    The SDK's own retries are switched off (max_retries=0): the scheduler owns the single retry
    layer, because it must count attempts per book, pace retries through the shared rate budget,
    re-split batches, and also retry replies that arrive fine over HTTP but hold bad JSON.
    """

    def __init__(
        self,
        *,
        model: str,
        api_key: str | None,
        base_url: str | None,
        timeout: float,
        structured_output: str = "auto",
        temperature: float | None = 0.0,
    ):
        self.model = model
        self.structured_output = structured_output
        self.mode = "json_object" if structured_output == "json_object" else "json_schema"
        self.temperature = temperature
        self._secret = api_key or ""
        http_client = _aiohttp_client()
        self.transport = "httpx" if http_client is None else "aiohttp"
        # Local servers (vLLM, llama.cpp, Ollama) ignore the key but the SDK insists on one.
        self._client = openai.AsyncOpenAI(
            api_key=api_key or "no-key",
            base_url=base_url,
            timeout=timeout,
            max_retries=0,
            http_client=http_client,
        )

    def redact(self, text: str) -> str:
        """`text` with the API key blanked out, for anything that may reach a log, a screen or the DB."""
        return text.replace(self._secret, "***") if len(self._secret) >= 4 else text

    async def close(self) -> None:
        """Close the HTTP connection pool (and with it the aiohttp session, when there is one)."""
        await self._client.close()

    async def complete(self, messages: list[dict[str, str]], max_tokens: int) -> Completion:
        """Send one chat completion; raises RequestFailed with a clear, key-free reason on any failure."""
        mode = self.mode
        start = time.perf_counter()
        try:
            raw = await self._client.chat.completions.with_raw_response.create(
                **request_body(self.model, messages, mode, max_tokens, self.temperature)
            )
            headers = dict(raw.headers.items())
            body = json.loads(raw.http_response.text)
        except openai.APIStatusError as exc:
            raise self._status_failure(exc, mode, time.perf_counter() - start) from None
        except openai.APITimeoutError:
            raise RequestFailed(
                "request timed out", retryable=True, latency_s=time.perf_counter() - start
            ) from None
        except openai.APIConnectionError as exc:
            raise RequestFailed(
                self.redact(f"connection failed: {exc}"),
                retryable=True,
                latency_s=time.perf_counter() - start,
            ) from None
        except (json.JSONDecodeError, UnicodeDecodeError, openai.APIResponseValidationError):
            raise RequestFailed(
                "response body is not JSON", retryable=True, latency_s=time.perf_counter() - start
            ) from None
        latency = time.perf_counter() - start
        try:
            text, finish, prompt_tokens, completion_tokens = parse_completion(body)
        except ValueError as exc:
            raise RequestFailed(
                str(exc), retryable=True, headers=headers, latency_s=latency
            ) from None
        return Completion(text, finish, prompt_tokens, completion_tokens, headers, latency, mode)

    def _status_failure(
        self, exc: openai.APIStatusError, mode: str, latency: float
    ) -> RequestFailed:
        status = exc.status_code
        headers = dict(exc.response.headers.items()) if exc.response is not None else {}
        message = self.redact(_error_message(exc))
        if status == 400 and mode == "json_schema" and self.structured_output == "auto":
            # Older servers reject response_format=json_schema: switch once, for the whole run.
            if self.mode == "json_schema":
                log.warning(
                    "server rejected structured output (%s); falling back to json_object", message
                )
            self.mode = "json_object"
            return RequestFailed(
                "structured output unsupported; switched to json_object",
                retryable=True,
                retry_after=0.0,
                status=status,
                headers=headers,
                latency_s=latency,
            )
        retryable = status in (408, 409, 429) or status >= 500
        # A 429 for an exhausted quota is not a rate limit: waiting never ends it.
        fatal = status in (401, 403, 404) or (
            status == 429 and _error_code(exc) == "insufficient_quota"
        )
        return RequestFailed(
            f"HTTP {status}: {message}",
            retryable=retryable,
            status=status,
            retry_after=retry_after_seconds(headers),
            headers=headers,
            fatal=fatal,
            latency_s=latency,
        )


def _aiohttp_client() -> Any | None:
    """openai's aiohttp-backed HTTP client when the `aiohttp` extra is installed, else None (httpx)."""
    factory = getattr(openai, "DefaultAioHttpClient", None)  # older SDK releases lack it
    if factory is None:
        return None
    try:
        return factory()
    except RuntimeError:  # the SDK's stand-in when aiohttp / httpx-aiohttp is missing
        log.debug("openai's aiohttp transport is not installed; using httpx")
        return None


def _error_code(exc: openai.APIStatusError) -> str | None:
    code = getattr(exc, "code", None)
    if code is None and isinstance(exc.body, dict):
        inner = exc.body.get("error", exc.body)
        code = inner.get("code") if isinstance(inner, dict) else None
    return str(code) if code is not None else None


def _error_message(exc: openai.APIStatusError) -> str:
    body: Any = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])[:200]
    return str(exc.message)[:200]
