"""The enrichment reply: pydantic models, label normalisation and the JSON schema sent to the server."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

FIELDS: tuple[str, ...] = ("genre", "category", "theme", "tone", "audience")
ALL_FIELDS: tuple[str, ...] = ("summary", *FIELDS)
MAX_LABELS = 5  # per field; more is noise, and it bounds what a runaway reply can store
MAX_LABEL_CHARS = 60
MAX_SUMMARY_CHARS = 1000

_SPACE = re.compile(r"\s+")
_TRIM = (
    " .,;:\"'`"  # stripped from both ends, together, so a second pass finds nothing more to strip
)
_ACRONYM = re.compile(r"^[A-Z0-9]{2,5}$")  # YA, LGBTQ, WWII: keep as written


def _word(word: str) -> str:
    if _ACRONYM.match(word):
        return word
    # Only the first letter changes case: "children's" -> "Children's", not str.title()'s "Children'S".
    return word[:1].title() + word[1:].lower()  # title(): "ß" -> "Ss", stable on a second pass


def normalize_label(raw: Any) -> str:
    """One label, trimmed and title-cased the same way every time ('  science  fiction' -> 'Science Fiction')."""
    text = _SPACE.sub(" ", str(raw)).strip(_TRIM)
    # A shouted label, not an acronym: "SELF-HELP" -> "Self-Help". Judged by a word too long to be an
    # acronym, so that the output ("Y 4X") is judged the same way again (idempotent).
    if text.isupper() and any(len(w) > 5 for w in text.split(" ")):
        text = text.lower()
    words = [("-".join(_word(part) for part in w.split("-"))) for w in text.split(" ")]
    return " ".join(words)[:MAX_LABEL_CHARS].strip(_TRIM)


def normalize_labels(value: Any) -> list[str]:
    """A field's labels: a string becomes a one-element list; trimmed, title-cased, de-duplicated, capped."""
    if value is None:
        return []
    if isinstance(value, str):
        # A lone string may still hold several labels ("Mystery, Thriller"); split on the obvious separators.
        value = re.split(r"[;,|]", value)
    elif not isinstance(value, list | tuple):
        value = [value]
    out: list[str] = []
    seen: set[str] = set()
    for item in value:
        if not isinstance(item, str | int | float) or isinstance(item, bool):
            continue
        label = normalize_label(item)
        if label and label.lower() not in seen:
            seen.add(label.lower())
            out.append(label)
    return out[:MAX_LABELS]


class BookLabels(BaseModel):
    """One book as the server describes it; lenient on input, normalised on output."""

    model_config = ConfigDict(extra="ignore")

    id: str
    summary: str = ""
    genre: list[str] = Field(default_factory=list)
    category: list[str] = Field(default_factory=list)
    theme: list[str] = Field(default_factory=list)
    tone: list[str] = Field(default_factory=list)
    audience: list[str] = Field(default_factory=list)

    @field_validator("id", mode="before")
    @classmethod
    def _id(cls, v: Any) -> str:
        if isinstance(v, bool) or not isinstance(v, str | int):
            raise ValueError("id must be a string")
        return str(v).strip()

    @field_validator("summary", mode="before")
    @classmethod
    def _summary(cls, v: Any) -> str:
        if v is None:
            return ""
        if isinstance(v, list):
            v = " ".join(str(x) for x in v)
        return _SPACE.sub(" ", str(v)).strip()[:MAX_SUMMARY_CHARS]

    @field_validator(*FIELDS, mode="before")
    @classmethod
    def _labels(cls, v: Any) -> list[str]:
        return normalize_labels(v)

    def empty_fields(self, present: set[str]) -> list[str]:
        """Fields absent from the reply (`present` = keys the server sent) or empty after cleaning."""
        return [f for f in ALL_FIELDS if f not in present or not getattr(self, f)]


def reply_json_schema() -> dict[str, Any]:
    """The strict JSON schema for structured output: {"books": [{id, summary, genre[], ...}]}."""
    labels = {"type": "array", "items": {"type": "string"}}
    item = {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "summary": {"type": "string"},
            **{f: labels for f in FIELDS},
        },
        "required": ["id", *ALL_FIELDS],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {"books": {"type": "array", "items": item}},
        "required": ["books"],
        "additionalProperties": False,
    }


def response_format(mode: str) -> dict[str, Any]:
    """The `response_format` argument for 'json_schema' (structured output) or 'json_object' mode."""
    if mode == "json_schema":
        return {
            "type": "json_schema",
            "json_schema": {
                "name": "book_enrichment",
                "strict": True,
                "schema": reply_json_schema(),
            },
        }
    return {"type": "json_object"}
