"""Settings of the enrich stage ([enrich] in bookrec.toml, BOOKREC_ENRICH_* in the environment, CLI flags)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Literal

from engine.config import as_dict

DEFAULT_LLM_MODEL = "gpt-4o-mini"
DEFAULT_ZS_MODEL = "all-MiniLM-L6-v2"
# Fields that only steer how a run goes (not what it produces) or must never be stored.
_PRIVATE = {"api_key"}


@dataclass(frozen=True)
class EnrichSettings:
    """How books get their summary/genre/category/theme/tone/audience."""

    provider: Literal["auto", "openai", "zero-shot"] = (
        "auto"  # auto: openai when an API is configured
    )
    model: str | None = None  # default gpt-4o-mini (openai) / all-MiniLM-L6-v2 (zero-shot)
    base_url: str | None = None  # else $OPENAI_BASE_URL, else api.openai.com
    api_key: str | None = field(
        default=None, repr=False
    )  # else $OPENAI_API_KEY; never stored or shown
    limit: int | None = None  # at most this many books this run
    only_missing: bool = False  # skip books enriched by any source/prompt, not only the current one
    dry_run: bool = False
    batch_size: int = 8  # books per request
    concurrency: int = 8  # requests in flight
    rpm: int = 500  # client-side budgets (0: none); the server's x-ratelimit-* lower them
    tpm: int = 200_000
    request_timeout: float = 60.0  # seconds per HTTP request
    max_attempts: int = 5  # requests that may hold one book before it is failed (429s don't count)
    backoff_base: float = 0.5  # seconds; exponential with full jitter, capped at backoff_max
    backoff_max: float = 30.0  # seconds; the longest wait between two tries of a batch
    # seconds of nothing but 429s (rate limited) after which the run stops; 0: 10 x backoff_max
    rate_limit_wait: float = 0.0
    structured_output: Literal["auto", "json_schema", "json_object"] = "auto"
    temperature: float | None = 0.0  # None: leave it out (models that only take their default)
    price_input_per_mtok: float = 0.15  # USD per million prompt tokens (gpt-4o-mini list price)
    price_output_per_mtok: float = 0.60
    seed: int = 0  # for backoff jitter
    # --batch-api: JSONL through the Files API, one Batch API batch per file (resumable, cheaper)
    batch_api: bool = False
    batch_max_requests: int = 50_000  # requests (JSONL lines) per batch: the API's cap
    batch_max_bytes: int = 190_000_000  # bytes per JSONL input file (the API takes up to 200 MB)
    batch_poll_interval: float = 30.0  # seconds between two status checks of the open batches
    batch_max_wait: float = 0.0  # seconds to poll before leaving batches running (0: until done)
    batch_price_factor: float = 0.5  # Batch API price = this x the live prices above
    # books a batch left unanswered (error/missing lines, ids missing from a reply, empty fields):
    # "live" sends them through the live path now; "next-run" records them in enrichment_failures
    # and the next run submits them in a new batch
    batch_retry: Literal["live", "next-run"] = "live"
    zs_batch_size: int = 256  # zero-shot: texts per encoder batch
    zs_threads: int = 0  # zero-shot: torch threads (0 = torch's default)
    zs_chunk: int = 8192  # zero-shot: books labelled and committed together
    # a user's taxonomy (TOML or CSV: field, label, description), for both providers; None: defaults
    vocab: str | None = None

    def __post_init__(self) -> None:
        for name in ("batch_size", "concurrency", "max_attempts", "zs_batch_size", "zs_chunk"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.limit is not None and self.limit < 0:
            raise ValueError("limit must be >= 0")
        if self.batch_max_requests < 1 or self.batch_max_bytes < 1:
            raise ValueError("batch_max_requests and batch_max_bytes must be at least 1")
        if self.batch_poll_interval < 0 or self.batch_max_wait < 0 or self.batch_price_factor < 0:
            raise ValueError(
                "batch_poll_interval, batch_max_wait and batch_price_factor must be >= 0"
            )
        if self.batch_retry not in ("live", "next-run"):
            raise ValueError("batch_retry must be live or next-run")
        if self.rate_limit_wait < 0:
            raise ValueError("rate_limit_wait must be >= 0 seconds (0: 10 x backoff_max)")

    def resolved_provider(self, environ: dict[str, str] | None = None) -> str:
        """'openai' when a key or base URL is configured (settings or environment), else 'zero-shot'."""
        if self.provider != "auto":
            return self.provider
        env = os.environ if environ is None else environ
        configured = (
            self.api_key or self.base_url or env.get("OPENAI_API_KEY") or env.get("OPENAI_BASE_URL")
        )
        return "openai" if configured else "zero-shot"

    def resolved_model(self, provider: str) -> str:
        """The model name for `provider` when none is set."""
        return self.model or (DEFAULT_LLM_MODEL if provider == "openai" else DEFAULT_ZS_MODEL)

    def vocabulary(self):  # -> engine.enrich.vocab.Vocabulary (imported lazily)
        """The label vocabulary: `vocab` loaded (a ConfigError when malformed), else the defaults."""
        from engine.enrich import vocab

        return vocab.load_vocab(self.vocab) if self.vocab else vocab.DEFAULT

    def public(self) -> dict[str, Any]:
        """Settings safe to store or print (no API key)."""
        return {k: v for k, v in as_dict(self).items() if k not in _PRIVATE}
