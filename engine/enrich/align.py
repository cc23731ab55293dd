"""Pure reply handling: parse the model's text, validate each item, match items to books by id."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from engine.enrich.schema import FIELDS, BookLabels

if TYPE_CHECKING:
    from engine.enrich.vocab import Vocabulary


class ReplyError(ValueError):
    """The reply as a whole is unusable (not JSON, truncated, no list of books)."""


@dataclass
class Alignment:
    """What one reply says about the books of its request."""

    complete: dict[str, BookLabels] = field(default_factory=dict)  # book id -> every field filled
    incomplete: dict[str, tuple[BookLabels, list[str]]] = field(
        default_factory=dict
    )  # id -> (labels, empty fields)
    missing: list[str] = field(default_factory=list)  # requested ids with no usable item
    dropped: list[str] = field(default_factory=list)  # ids we did not ask for, or duplicates
    # id -> field -> labels dropped because the user's vocabulary does not hold them
    outside: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    def n_outside(self) -> int:
        """How many labels of this reply were dropped as outside the vocabulary."""
        return sum(len(v) for per_field in self.outside.values() for v in per_field.values())


def _strip_fences(text: str) -> str:
    text = text.strip()
    if text.startswith("```"):
        text = text.split("\n", 1)[1] if "\n" in text else ""
        if text.rstrip().endswith("```"):
            text = text.rstrip()[:-3]
    return text.strip()


def parse_items(text: str | None) -> list[Any]:
    """The list of book items in a reply: {"books": [...]}, any single list-valued key, or a bare list."""
    if not text or not text.strip():
        raise ReplyError("empty reply")
    try:
        data = json.loads(_strip_fences(text))
    except json.JSONDecodeError as exc:
        raise ReplyError(f"reply is not valid JSON ({exc.msg} at char {exc.pos})") from None
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        if isinstance(data.get("books"), list):
            return data["books"]
        if "id" in data:  # a one-book batch answered without the wrapper
            return [data]
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) == 1:
            return lists[0]
    raise ReplyError("reply holds no list of books")


def restrict(
    labels: BookLabels, vocabulary: Vocabulary | None
) -> tuple[BookLabels, dict[str, list[str]]]:
    """`labels` with, in each field a user's vocabulary sets, only that vocabulary's labels (in its
    spelling; see vocab.label_key for the match), and the labels dropped per field. A field left
    with no label is then empty, and takes the empty-field path (asked again, then stored empty
    with the reason). Without a user's vocabulary (free labels) nothing changes."""
    if vocabulary is None or not vocabulary.custom:
        return labels, {}
    update: dict[str, list[str]] = {}
    dropped: dict[str, list[str]] = {}
    for f in FIELDS:
        if f not in vocabulary.custom:
            continue
        kept: list[str] = []
        for label in getattr(labels, f):
            name = vocabulary.allowed(f, label)
            if name is None:
                dropped.setdefault(f, []).append(label)
            elif name not in kept:
                kept.append(name)
        if kept != getattr(labels, f):
            update[f] = kept
    return (labels.model_copy(update=update) if update else labels), dropped


def empty_reason(asks: int, empty: Iterable[str], outside: Iterable[str] = ()) -> str:
    """The `empty_reason` of a book stored with empty fields, naming those that were empty only
    because the reply's labels were outside the user's vocabulary."""
    off = [f for f in empty if f in set(outside)]
    why = f"empty in reply after {asks} asks"
    return f"{why} (labels outside the vocabulary dropped: {', '.join(off)})" if off else why


def align(
    requested: list[str], items: list[Any], vocabulary: Vocabulary | None = None
) -> Alignment:
    """Match reply items to the requested ids (never by position); unknown ids and repeats are dropped.

    With a user's vocabulary, labels outside it are dropped first (`restrict`), so a field they
    empty counts as empty."""
    wanted = set(requested)
    out = Alignment()
    seen: set[str] = set()
    for raw in items:
        if not isinstance(raw, Mapping):
            continue
        try:
            labels = BookLabels.model_validate(raw)
        except ValidationError:
            continue
        if labels.id not in wanted or labels.id in seen:
            out.dropped.append(labels.id)
            continue
        seen.add(labels.id)
        labels, outside = restrict(labels, vocabulary)
        if outside:
            out.outside[labels.id] = outside
        empty = labels.empty_fields(set(raw.keys()))
        if empty:
            out.incomplete[labels.id] = (labels, empty)
        else:
            out.complete[labels.id] = labels
    out.missing = [i for i in requested if i not in seen]
    return out


def merge(first: BookLabels, second: BookLabels | None, fields: list[str]) -> BookLabels:
    """Fill `fields` of an incomplete first answer from a second one (first answer wins where it has data)."""
    if second is None:
        return first
    update = {f: getattr(second, f) for f in fields if not getattr(first, f) and getattr(second, f)}
    return first.model_copy(update=update)
