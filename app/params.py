"""Query strings and user input: parse leniently, validate strictly, never pass raw text to SQL."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

MAX_TEXT = 200


def one(value: Any) -> str | None:
    """A single query-string value (the last one if repeated), stripped; None when absent or blank."""
    if isinstance(value, list | tuple):
        value = value[-1] if value else None
    if value is None:
        return None
    text = str(value).strip()
    return text[:MAX_TEXT] or None


def many(value: Any) -> list[str]:
    """A repeated query-string value as a list of non-blank strings."""
    if value is None:
        return []
    items = value if isinstance(value, list | tuple) else [value]
    return [str(v).strip()[:MAX_TEXT] for v in items if v is not None and str(v).strip()]


def to_int(
    value: Any, default: int | None = None, *, lo: int | None = None, hi: int | None = None
) -> int | None:
    """An integer within [lo, hi], or `default` for anything else (text, floats, overflow)."""
    text = one(value)
    if text is None:
        return default
    try:
        n = int(text)
    except ValueError:
        try:
            n = int(float(text))
        except (ValueError, OverflowError):
            return default
    if (lo is not None and n < lo) or (hi is not None and n > hi):
        return default
    return n


def to_float(value: Any, default: float, *, lo: float, hi: float) -> float:
    """A float clamped to [lo, hi], or `default` when not a number."""
    text = one(value)
    try:
        x = float(text) if text is not None else default
    except ValueError:
        return default
    return default if x != x else min(max(x, lo), hi)


def reader_id(text: Any) -> tuple[int | None, str | None]:
    """(user id, None) for a valid reader id, else (None, a friendly message); (None, None) if empty."""
    raw = one(text)
    if raw is None:
        return None, None
    if raw.isdigit() and len(raw) <= 10 and int(raw) < 2**31:
        return int(raw), None
    shown = raw if len(raw) <= 40 else raw[:40] + "…"
    return None, f"“{shown}” is not a reader id: reader ids are whole numbers such as 276725."


def search(values: Mapping[str, Any]) -> str:
    """A query string ('?a=1&b=x&b=y') from non-empty values; lists become repeated keys."""
    pairs: list[tuple[str, str]] = []
    for key, value in values.items():
        if value is None or value == "" or value == []:
            continue
        items: Sequence[Any] = value if isinstance(value, list | tuple) else [value]
        pairs += [(key, str(v)) for v in items]
    return "?" + urlencode(pairs) if pairs else ""


def triggered_id() -> Any:
    """The id of the input that fired the current callback; None outside a callback (plain calls, tests)."""
    from dash import ctx
    from dash.exceptions import MissingCallbackContextException

    try:
        return ctx.triggered_id
    except (MissingCallbackContextException, LookupError, AttributeError):
        return None
