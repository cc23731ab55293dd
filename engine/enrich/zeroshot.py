"""Offline zero-shot labeller: MiniLM embeddings of the catalogue line vs curated label descriptions."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from engine import embed
from engine.enrich import vocab
from engine.enrich.prompt import BookRef
from engine.enrich.schema import FIELDS


@dataclass(frozen=True)
class FieldRule:
    """Keep labels scoring >= threshold and within `margin` of the field's best; at most `max_labels`."""

    threshold: float
    margin: float
    max_labels: int = 3


# Tuned on the sample generator's books (see docs/BENCHMARKS.md ## enrichment): MiniLM cosine
# similarities between a catalogue line and a label description sit around 0.1-0.5.
RULES: dict[str, FieldRule] = {
    "genre": FieldRule(0.20, 0.05, 3),
    "category": FieldRule(0.15, 0.04, 2),
    "theme": FieldRule(0.22, 0.04, 3),
    "tone": FieldRule(0.18, 0.03, 2),
    "audience": FieldRule(0.18, 0.03, 2),
}
load_encoder = embed.load_encoder  # the facets stage reuses the same cached model


def prompt_version(rules: dict[str, FieldRule] = RULES) -> str:
    """Version tag of the labeller: changes when vocabularies or rules change, so books get redone."""
    blob = json.dumps({f: asdict(r) for f, r in rules.items()}, sort_keys=True) + vocab.vocab_hash()
    return "zs1-" + hashlib.sha256(blob.encode()).hexdigest()[:8]


def book_text(book: BookRef, summary: str | None = None) -> str:
    """What gets embedded for a book: 'title, author, publisher, year' (+ summary when there is one)."""
    parts = [
        book.title or "",
        book.author or "",
        book.publisher or "",
        str(book.year) if book.year else "",
    ]
    text = ", ".join(p.strip() for p in parts if p and p.strip())
    return f"{text}. {summary}" if summary else text


def pick_labels(scores: np.ndarray, labels: Sequence[str], rule: FieldRule) -> list[list[str]]:
    """Per row of cosine scores (books x labels): the labels that pass the threshold and margin rule."""
    if scores.size == 0:
        return [[] for _ in range(scores.shape[0])]
    order = np.argsort(-scores, axis=1, kind="stable")[:, : rule.max_labels]
    top = np.take_along_axis(scores, order, axis=1)
    keep = (top >= rule.threshold) & (top >= top[:, :1] - rule.margin)
    return [
        [labels[j] for j, k in zip(row_order, row_keep, strict=True) if k]
        for row_order, row_keep in zip(order, keep, strict=True)
    ]


class ZeroShotLabeller:
    """Labels books for every field from one embedding per book; no summaries are invented."""

    def __init__(
        self,
        model: str | None = None,
        *,
        batch_size: int = 256,
        threads: int | None = None,
        rules: dict[str, FieldRule] | None = None,
    ):
        self.model, self.batch_size, self.threads = model, batch_size, threads or None
        self.rules = rules or RULES
        self._label_vecs: dict[str, tuple[list[str], np.ndarray]] = {}

    def _labels(self, field: str) -> tuple[list[str], np.ndarray]:
        if field not in self._label_vecs:
            labels, texts = vocab.label_texts(field)
            self._label_vecs[field] = (
                labels,
                embed.encode(texts, self.batch_size, model=self.model, threads=self.threads),
            )
        return self._label_vecs[field]

    def scores(self, vectors: np.ndarray, field: str) -> tuple[list[str], np.ndarray]:
        """(labels, cosine scores books x labels) for one field."""
        labels, label_vecs = self._labels(field)
        return labels, vectors @ label_vecs.T

    def embed_books(self, books: Sequence[BookRef]) -> np.ndarray:
        """Normalised embeddings of the books' catalogue lines."""
        return embed.encode(
            [book_text(b) for b in books], self.batch_size, model=self.model, threads=self.threads
        )

    def label(
        self, books: Sequence[BookRef], progress: Callable[[int], None] | None = None
    ) -> list[dict[str, Any]]:
        """book_enrichment rows (summary NULL, 0-3 labels per field) for `books`."""
        vectors = self.embed_books(books)
        picked = {
            f: pick_labels(self.scores(vectors, f)[1], self._labels(f)[0], self.rules[f])
            for f in FIELDS
        }
        rows = []
        for i, book in enumerate(books):
            row: dict[str, Any] = {"isbn": book.isbn, "summary": None}
            for f in FIELDS:
                row[f] = picked[f][i]
            row["empty_fields"] = None
            row["empty_reason"] = None
            rows.append(row)
        if progress:
            progress(len(books))
        return rows
