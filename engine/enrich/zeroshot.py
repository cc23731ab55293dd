"""Offline zero-shot labeller: MiniLM embeddings of the catalogue line vs label names and descriptions,
calibrated on the catalogue itself (label priors, label prototypes, author priors), with a
confidence per label.

How a field is scored, for a chunk of books (each step measured on bookcover30, bench/labels.py):
1. label vectors: each label's name in several templates ("{}", "a book about {}", ...) averaged,
   multi-part names ("Cookbooks, Food & Wine") also scored part by part (max), plus the label's
   description when it has one (mean of the two scores);
2. label priors: each label's mean score over the chunk is subtracted (labels that attract every
   book, whatever it is, stop winning by default);
3. prototypes: three rounds of soft assignment -> per-label mean book vector -> score books
   against those prototypes too (a label's meaning learnt from the catalogue's own books);
4. author prior: a book's scores are averaged with its author's mean (books by one author share
   genres);
5. confidence = softmax(scores / spread / temperature); labels below the field's threshold are not kept,
   and a field whose best label is below it stays empty ("unknown", empty_reason says so).
Steps 2-4 need a catalogue: chunks smaller than MIN_CATALOGUE books skip them.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from engine import embed
from engine.enrich import vocab
from engine.enrich.prompt import BookRef
from engine.enrich.schema import FIELDS

ALGORITHM = "zs2"
TEMPLATES = ("{}", "a book about {}", "{} books", "a {} book")
MIN_CATALOGUE = 100  # books in a chunk below which label/author priors and prototypes are skipped


@dataclass(frozen=True)
class Calibration:
    """The catalogue-level steps; each can be switched off (bench/labels.py measures each)."""

    templates: tuple[str, ...] = TEMPLATES
    name_parts: bool = True  # score "A, B & C" also as A, B and C (max)
    descriptions: bool = True  # use label descriptions when a label has one
    center: bool = True  # subtract each label's mean score over the chunk
    prototype_rounds: int = 3
    prototype_mix: float = 0.3  # weight of the text score against the prototype score
    prototype_sharpness: float = 0.01  # softmax temperature of the soft assignment
    author_weight: float = 0.5  # 0: no author prior
    # softmax temperature of the confidences, on calibrated scores divided by their spread over
    # the chunk; 0.6 makes the mean top confidence (0.38) about the top-1 accuracy (0.41) on all
    # of bookcover30 with the default vocabulary (small chunks come out more confident)
    temperature: float = 0.6
    min_catalogue: int = MIN_CATALOGUE


@dataclass(frozen=True)
class FieldRule:
    """Keep labels whose confidence is >= threshold and within `margin` of the field's best; at most
    `max_labels`. A book whose best label is below the threshold gets none ("unknown")."""

    threshold: float
    margin: float
    max_labels: int = 3


# Confidences are softmax probabilities over a field's labels. Thresholds: with the default
# genre vocabulary on bookcover30 a top label under 0.10 is right about as often as a coin
# lands on its edge (see docs/BENCHMARKS.md, "Offline labels on real books").
RULES: dict[str, FieldRule] = {
    "genre": FieldRule(0.10, 0.25, 3),
    "category": FieldRule(0.15, 0.25, 2),
    "theme": FieldRule(0.08, 0.15, 3),
    "tone": FieldRule(0.12, 0.20, 2),
    "audience": FieldRule(0.12, 0.20, 2),
}
LOW_CONFIDENCE = 0.35  # the app shows labels below this as pale chips
load_encoder = embed.load_encoder  # the facets stage reuses the same cached model


def prompt_version(
    rules: dict[str, FieldRule] = RULES,
    vocabulary: vocab.Vocabulary = vocab.DEFAULT,
    calibration: Calibration | None = None,
) -> str:
    """Version tag of the labeller: changes when vocabularies, rules or calibration change."""
    blob = json.dumps(
        {
            "rules": {f: asdict(r) for f, r in rules.items()},
            "calibration": asdict(calibration or Calibration()),
        },
        sort_keys=True,
    )
    return f"{ALGORITHM}-" + hashlib.sha256((blob + vocabulary.hash()).encode()).hexdigest()[:8]


def pick_labels(scores: np.ndarray, labels: Sequence[str], rule: FieldRule) -> list[list[str]]:
    """Per row of scores (books x labels): the labels that pass the threshold and margin rule."""
    return [[labels[j] for j, _ in row] for row in pick_scored(scores, rule)]


def pick_scored(scores: np.ndarray, rule: FieldRule) -> list[list[tuple[int, float]]]:
    """Per row: (label index, score) of the kept labels, best first."""
    if scores.size == 0:
        return [[] for _ in range(scores.shape[0])]
    order = np.argsort(-scores, axis=1, kind="stable")[:, : rule.max_labels]
    top = np.take_along_axis(scores, order, axis=1)
    keep = (top >= rule.threshold) & (top >= top[:, :1] - rule.margin)
    return [
        [(int(j), float(v)) for j, v, k in zip(row_order, row_top, row_keep, strict=True) if k]
        for row_order, row_top, row_keep in zip(order, top, keep, strict=True)
    ]


def softmax(scores: np.ndarray, temperature: float) -> np.ndarray:
    """Row-wise softmax of scores / temperature."""
    z = (scores - scores.max(axis=1, keepdims=True)) / temperature
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def name_parts(name: str) -> list[str]:
    """'Cookbooks, Food & Wine' -> ['Cookbooks', 'Food', 'Wine']; a one-part name -> []."""
    parts = [p.strip() for p in re.split(r",|&|/| and ", name) if p.strip()]
    return parts if len(parts) > 1 else []


def author_key(author: str | None) -> str:
    """Authors compared case- and punctuation-blind ('J.K. Rowling' = 'J. K. Rowling')."""
    return re.sub(r"[^a-z0-9]+", "", (author or "").lower())


def author_groups(authors: Sequence[str | None]) -> list[np.ndarray]:
    """Row indices of books sharing an author (groups of two or more)."""
    groups: dict[str, list[int]] = {}
    for i, a in enumerate(authors):
        key = author_key(a)
        if len(key) >= 3:
            groups.setdefault(key, []).append(i)
    return [np.array(g) for g in groups.values() if len(g) > 1]


def calibrate(
    scores: np.ndarray,
    vectors: np.ndarray,
    calibration: Calibration,
    authors: Sequence[str | None] | None = None,
) -> np.ndarray:
    """Steps 2-4 of the module docstring on raw scores (books x labels) of one chunk."""
    c = calibration
    if scores.shape[0] < c.min_catalogue or scores.shape[1] < 2:
        return scores
    s0 = scores - scores.mean(axis=0) if c.center else scores
    sc = s0
    for _ in range(c.prototype_rounds):
        assign = softmax(sc, c.prototype_sharpness)
        protos = _unit(assign.T @ vectors)
        sp = vectors @ protos.T
        sp = sp - sp.mean(axis=0)
        sc = c.prototype_mix * s0 + (1 - c.prototype_mix) * sp
    if c.author_weight and authors is not None:
        sc = sc.copy()
        for g in author_groups(authors):
            sc[g] = (1 - c.author_weight) * sc[g] + c.author_weight * sc[g].mean(axis=0)
    return sc


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


class ZeroShotLabeller:
    """Labels books for every field from one embedding per book; no summaries are invented."""

    def __init__(
        self,
        model: str | None = None,
        *,
        batch_size: int = 256,
        threads: int | None = None,
        rules: dict[str, FieldRule] | None = None,
        vocabulary: vocab.Vocabulary | None = None,
        calibration: Calibration | None = None,
        fields: Sequence[str] = FIELDS,
    ):
        self.model, self.batch_size, self.threads = model, batch_size, threads or None
        self.rules = rules or RULES
        self.vocabulary = vocabulary or vocab.DEFAULT
        self.calibration = calibration or Calibration()
        self.fields = tuple(fields)
        self._label_vecs: dict[str, tuple[list[str], list[np.ndarray], np.ndarray | None]] = {}

    def _encode(self, texts: list[str]) -> np.ndarray:
        return embed.encode(texts, self.batch_size, model=self.model, threads=self.threads)

    def _labels(self, field: str) -> tuple[list[str], list[np.ndarray], np.ndarray | None]:
        """(labels, per label its name-variant vectors, description vectors or None)."""
        if field not in self._label_vecs:
            c = self.calibration
            labels = self.vocabulary.labels(field)
            variants = [[name, *(name_parts(name) if c.name_parts else [])] for name in labels]
            flat = [v for vs in variants for v in vs]
            per_template = [self._encode([t.format(v) for v in flat]) for t in c.templates]
            flat_vecs = _unit(np.mean(per_template, axis=0))
            names, at = [], 0
            for vs in variants:
                names.append(flat_vecs[at : at + len(vs)])
                at += len(vs)
            desc = None
            if c.descriptions:
                texts = vocab.label_texts(field, self.vocabulary)[1]
                has = [bool(self.vocabulary.description(field, lab)) for lab in labels]
                if any(has):
                    desc = self._encode(texts)
                    desc[~np.array(has)] = np.nan  # labels without one use the name score alone
            self._label_vecs[field] = (labels, names, desc)
        return self._label_vecs[field]

    def raw_scores(self, vectors: np.ndarray, field: str) -> tuple[list[str], np.ndarray]:
        """(labels, text scores books x labels): name (max over variants), averaged with description."""
        labels, names, desc = self._labels(field)
        s = np.stack([(vectors @ n.T).max(axis=1) for n in names], axis=1)
        if desc is not None:
            d = vectors @ np.nan_to_num(desc).T
            has = ~np.isnan(desc[:, 0])
            s[:, has] = 0.5 * (s[:, has] + d[:, has])
        return labels, s

    def scores(
        self, vectors: np.ndarray, field: str, authors: Sequence[str | None] | None = None
    ) -> tuple[list[str], np.ndarray]:
        """(labels, calibrated scores books x labels) for one field."""
        labels, raw = self.raw_scores(vectors, field)
        return labels, calibrate(raw, vectors, self.calibration, authors)

    def confidences(
        self, vectors: np.ndarray, field: str, authors: Sequence[str | None] | None = None
    ) -> tuple[list[str], np.ndarray]:
        """(labels, confidences books x labels): softmax of the calibrated scores."""
        labels, sc = self.scores(vectors, field, authors)
        spread = float(sc.std()) if sc.size > 1 else 1.0
        return labels, softmax(sc / max(spread, 1e-6), self.calibration.temperature)

    def embed_books(self, books: Sequence[BookRef]) -> np.ndarray:
        """Normalised embeddings of the books' catalogue lines."""
        return self._encode([book_text(b) for b in books])

    def label(
        self, books: Sequence[BookRef], progress: Callable[[int], None] | None = None
    ) -> list[dict[str, Any]]:
        """book_enrichment rows (summary NULL, 0-3 labels per field, `confidence` per label)."""
        vectors = self.embed_books(books)
        authors = [b.author for b in books]
        picked: dict[str, list[list[tuple[str, float]]]] = {}
        for f in self.fields:
            labels, conf = self.confidences(vectors, f, authors)
            picked[f] = [
                [(labels[j], round(v, 4)) for j, v in row]
                for row in pick_scored(conf, self.rules[f])
            ]
        rows = []
        for i, book in enumerate(books):
            row: dict[str, Any] = {"isbn": book.isbn, "summary": None, "confidence": {}}
            unknown = []
            for f in FIELDS:
                kept = picked[f][i] if f in picked else []
                row[f] = [lab for lab, _ in kept]
                row["confidence"][f] = [c for _, c in kept]
                if f in picked and not kept:
                    unknown.append(f)
            row["empty_fields"] = unknown or None
            row["empty_reason"] = (
                "low confidence: no label passed the threshold" if unknown else None
            )
            rows.append(row)
        if progress:
            progress(len(books))
        return rows
