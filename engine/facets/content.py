"""Content embeddings per book and per reader (`bookrec content`).

A book's vector is built from parts (the way that measured best in cold start, docs/BENCHMARKS.md
"Content vectors as parts"): unit(MiniLM("title, author[. summary]") + author_weight x a fixed
random unit vector of its author + publisher_weight x one of its publisher [+ facet_weight x the
confidence-weighted mean of its facet labels' vectors]). A reader's profile is the unit mean of
their books' vectors, so it also points at the authors and imprints they read and a never-rated
book by one of them ranks higher. `vector = "text"` embeds the whole catalogue string instead.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import duckdb
import numpy as np
import polars as pl
import scipy.sparse as sp

from engine import config, db, pipeline
from engine.errors import ConfigError, StageNotReadyError
from engine.facets import default_encoder, model_label
from engine.facets.normalise import Encoder
from engine.neighbours import NEIGHBOURS, nearest
from engine.neighbours import load as neighbour_search

DIM = 384  # book_content_embeddings.embedding is FLOAT[384] (MiniLM-L6)


@dataclass(frozen=True)
class ContentSettings:
    """Settings of `bookrec content` ([content] in bookrec.toml, BOOKREC_CONTENT_*)."""

    model: str = "all-MiniLM-L6-v2"
    scope: Literal["all", "enriched"] = "all"  # all books, or only enriched ones
    profile_min_rating: int = 6  # explicit ratings below this say "disliked": not in a profile
    # "parts": the text part below plus identity (and facet) parts, unit-normalised together;
    # "text": one embedding of "Title by Author (Publisher, Year). facets. summary" (before issue 12)
    vector: Literal["parts", "text"] = "parts"
    # weight of a fixed random unit vector per author (case/punctuation-blind name): 1.0 measured
    # best; with publisher 0.3, cold-start recall@20 1.27x / 1.32x the "title, author" profile
    # (BENCHMARKS, bench/coldstart.py); 0 leaves the part out
    author_weight: float = 1.0
    publisher_weight: float = 0.3  # the same per publisher (imprint); 0.3 measured best with 1.0
    # facet labels' vectors weighted by their confidence (zero-shot; LLM labels count 1). 0: left
    # out, because zero-shot facets lowered cold-start recall even so (0.95x, BENCHMARKS)
    facet_weight: float = 0.0
    summary: bool = True  # parts: append the enrichment summary (LLM) to the text part
    max_summary_chars: int = 500
    batch_size: int = 128
    threads: int | None = None
    neighbours: int = NEIGHBOURS  # nearest books kept per book (book_content_neighbours); 0: none

    def __post_init__(self) -> None:
        if self.vector not in ("parts", "text"):
            raise ValueError("vector must be parts or text")
        for name in ("author_weight", "publisher_weight", "facet_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")


def load(overrides: dict | None = None) -> ContentSettings:
    """ContentSettings from bookrec.toml [content], BOOKREC_CONTENT_* and CLI overrides."""
    return config.load_settings(ContentSettings, "content", overrides)


def content_texts(books: pl.DataFrame, max_summary_chars: int = 500) -> pl.DataFrame:
    """(isbn, text): "Title by Author (Publisher, Year). genre: ...; tone: .... Summary" per book."""

    def part(col: str) -> pl.Expr:
        return pl.col(col).cast(pl.Utf8).fill_null("").str.strip_chars()

    head = pl.concat_str([part("title"), pl.lit(" by "), part("author")])
    imprint = pl.concat_str([part("publisher"), pl.lit(", "), part("year")]).str.strip_chars(", ")
    summary = part("summary").str.slice(0, max_summary_chars)
    text = pl.concat_str(
        [
            head,
            pl.when(imprint != "").then(pl.lit(" (") + imprint + pl.lit(")")).otherwise(pl.lit("")),
            pl.lit(". "),
            pl.when(part("facets") != "").then(part("facets") + pl.lit(". ")).otherwise(pl.lit("")),
            summary,
        ]
    ).str.strip_chars()
    return books.select("isbn", text.alias("text"))


def part_texts(
    books: pl.DataFrame, settings: ContentSettings, facets: pl.DataFrame | None = None
) -> pl.DataFrame:
    """(isbn, text, author_key, publisher_key, recipe) of the parts: "Title, Author" (+ ". summary"),
    the identity keys and a recipe string that changes whenever a part or weight of the book does."""
    titles, authors = books["title"].to_list(), books["author"].to_list()
    summaries = (
        books["summary"].to_list()
        if settings.summary and "summary" in books.columns
        else [None] * books.height
    )
    texts = []
    for title, author, summary in zip(titles, authors, summaries, strict=True):
        head = ", ".join(x for x in ((title or "").strip(), (author or "").strip()) if x)
        summary = (summary or "").strip()[: settings.max_summary_chars]
        texts.append(f"{head}. {summary}" if summary else head)
    publishers = books["publisher"] if "publisher" in books.columns else [None] * books.height
    a_keys = [_key(a) if settings.author_weight else "" for a in authors]
    p_keys = [_key(p) if settings.publisher_weight else "" for p in publishers]
    frame = pl.DataFrame(
        {"isbn": books["isbn"], "text": texts, "author_key": a_keys, "publisher_key": p_keys},
        schema={k: pl.Utf8 for k in ("isbn", "text", "author_key", "publisher_key")},
    )
    recipe = pl.concat_str(
        [
            pl.lit(f"parts|a{settings.author_weight:g}:"),
            pl.col("author_key"),
            pl.lit(f"|p{settings.publisher_weight:g}:"),
            pl.col("publisher_key"),
        ]
    )
    if settings.facet_weight and facets is not None:
        keys = facets.select("isbn", "facet_key").unique("isbn")
        frame = frame.join(keys, on="isbn", how="left", maintain_order="left")
        recipe = pl.concat_str(
            [recipe, pl.lit(f"|f{settings.facet_weight:g}:"), pl.col("facet_key").fill_null("")]
        )
        return frame.with_columns(recipe.alias("recipe")).drop("facet_key")
    return frame.with_columns(recipe.alias("recipe"))


def _key(name: str | None) -> str:
    """A name compared case- and punctuation-blind ('J.K. Rowling' = 'J. K. Rowling'), as
    engine.enrich.zeroshot.author_key does (not imported: engine.enrich loads the openai SDK)."""
    key = re.sub(r"[^a-z0-9]+", "", (name or "").lower())
    return key if len(key) >= 3 else ""  # "", "-", "NA": no identity worth a part


def identity_vectors(keys: list[str], salt: str, dim: int = DIM) -> np.ndarray:
    """A fixed random unit vector per key, seeded by its hash (the same on every run and catalogue);
    zeros for an empty key."""
    out = np.zeros((len(keys), dim), dtype=np.float32)
    table: dict[str, np.ndarray] = {}
    for i, key in enumerate(keys):
        if not key:
            continue
        vec = table.get(key)
        if vec is None:
            seed = int.from_bytes(
                hashlib.blake2b(f"{salt}\x00{key}".encode(), digest_size=8).digest(), "little"
            )
            vec = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
            vec /= np.linalg.norm(vec)
            table[key] = vec
        out[i] = vec
    return out


def facet_table(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """(isbn, field, label, confidence) of every book facet: the best confidence of the raw labels
    behind it (zero-shot), 1.0 where there is none (LLM labels), plus a per-book `facet_key`."""
    facets = db.fetch(con, "SELECT isbn, field, label FROM book_facets")
    raw = db.fetch(con, "SELECT field, raw_label, label FROM facet_labels")
    conf = db.fetch(
        con, "SELECT isbn, field, label AS raw_label, confidence FROM book_label_confidence"
    )
    best = (
        conf.with_columns(pl.col("raw_label").str.to_lowercase().alias("k"))
        .join(
            raw.with_columns(pl.col("raw_label").str.to_lowercase().alias("k")).drop("raw_label"),
            on=["field", "k"],
        )
        .group_by("isbn", "field", "label")
        .agg(pl.col("confidence").max())
    )
    out = facets.join(best, on=["isbn", "field", "label"], how="left").with_columns(
        pl.col("confidence").fill_null(1.0).cast(pl.Float32)
    )
    keys = (
        out.sort("field", "label")
        .group_by("isbn")
        .agg(
            pl.concat_str(
                [pl.col("field"), pl.lit("="), pl.col("label"), pl.lit("@"),
                 pl.col("confidence").round(2).cast(pl.Utf8)]
            ).str.join(";").alias("facet_key")
        )
    )  # fmt: skip
    return out.join(keys, on="isbn", how="left")


def facet_vectors(
    isbns: list[str], facets: pl.DataFrame, encode: Encoder, template: str = "a {} book"
) -> np.ndarray:
    """Per book, the mean of its facet labels' vectors each times its confidence (zeros: no facet),
    so facets the labeller was unsure of add little and LLM labels (confidence 1) count fully."""
    out = np.zeros((len(isbns), DIM), dtype=np.float32)
    rows = {isbn: i for i, isbn in enumerate(isbns)}
    facets = facets.filter(pl.col("isbn").is_in(isbns))
    if facets.is_empty():
        return out
    labels = facets["label"].unique().sort().to_list()
    vecs = encode([template.format(label) for label in labels])
    col = {label: j for j, label in enumerate(labels)}
    r = np.array([rows[i] for i in facets["isbn"]], dtype=np.int64)
    c = np.array([col[label] for label in facets["label"]], dtype=np.int64)
    per_book = np.bincount(r, minlength=len(isbns)).astype(np.float32)
    weights = facets["confidence"].to_numpy().astype(np.float32) / per_book[r]
    m = sp.csr_matrix((weights, (r, c)), shape=(len(isbns), len(labels)))
    return np.asarray(m @ vecs, dtype=np.float32)


def combine(
    frame: pl.DataFrame,
    text_vectors: np.ndarray,
    settings: ContentSettings,
    facet_part: np.ndarray | None = None,
) -> np.ndarray:
    """unit(text + author_weight x author + publisher_weight x publisher [+ facet_weight x facets])."""
    x = np.array(text_vectors, dtype=np.float32)
    if settings.author_weight:
        x += settings.author_weight * identity_vectors(frame["author_key"].to_list(), "author")
    if settings.publisher_weight:
        x += settings.publisher_weight * identity_vectors(
            frame["publisher_key"].to_list(), "publisher"
        )
    if settings.facet_weight and facet_part is not None:
        x += settings.facet_weight * facet_part
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def text_hashes(texts: list[str], model: str) -> list[str]:
    """A short hash of (model, text) per book: unchanged books keep their embedding on reruns."""
    salt = model.encode() + b"\x00"
    return [hashlib.blake2b(salt + t.encode(), digest_size=8).hexdigest() for t in texts]


def embed_books(
    texts: pl.DataFrame,
    existing: pl.DataFrame,
    model: str,
    encode: Encoder,
    parts: Callable[[pl.DataFrame, np.ndarray], np.ndarray] | None = None,
) -> tuple[pl.DataFrame, int]:
    """(isbn, text_hash, model, embedding) for every book, encoding only new or changed texts.

    With `parts`, the hash also covers the frame's `recipe` and `parts(rows, text vectors)` turns
    the new rows' text vectors into their stored vectors."""
    keyed = texts["text"]
    if "recipe" in texts.columns:
        keyed = texts["text"] + "\x00" + texts["recipe"]
    hashes = text_hashes(keyed.to_list(), model)
    frame = texts.with_columns(pl.Series("text_hash", hashes))
    keep = existing.filter(pl.col("model") == model).select("isbn", "text_hash", "embedding")
    frame = frame.join(keep, on=["isbn", "text_hash"], how="left")
    todo = frame["embedding"].is_null().to_numpy()
    vectors = np.zeros((frame.height, DIM), dtype=np.float32)
    if (~todo).any():
        vectors[~todo] = np.stack(frame.filter(~pl.Series(todo))["embedding"].to_numpy())
    if todo.any():
        rows = frame.filter(pl.Series(todo))
        new = encode(rows["text"].to_list())
        if new.shape[1] != DIM:
            raise ConfigError(
                f"content model gives {new.shape[1]}-dim vectors; book_content_embeddings holds FLOAT[{DIM}]",
                where=model,
                hint="Use a 384-dimension model such as all-MiniLM-L6-v2",
            )
        vectors[todo] = new if parts is None else parts(rows, new)
    out = frame.select("isbn", "text_hash", pl.lit(model).alias("model")).with_columns(
        pl.Series("embedding", vectors, dtype=pl.Array(pl.Float32, DIM))
    )
    return out, int(todo.sum())


def user_profiles(
    interactions: pl.DataFrame, isbns: list[str], vectors: np.ndarray
) -> pl.DataFrame:
    """(user_id, n_books, embedding): unit-length mean content vector of each reader's books."""
    index = pl.DataFrame({"isbn": isbns, "col": np.arange(len(isbns), dtype=np.int64)})
    pairs = interactions.join(index, on="isbn").select("user_id", "col")
    if pairs.is_empty():
        return pl.DataFrame(
            schema={
                "user_id": pl.Int32,
                "n_books": pl.Int32,
                "embedding": pl.Array(pl.Float32, DIM),
            }
        )
    users, rows = np.unique(pairs["user_id"].to_numpy(), return_inverse=True)
    m = sp.csr_matrix(
        (np.ones(pairs.height, dtype=np.float32), (rows, pairs["col"].to_numpy())),
        shape=(len(users), len(isbns)),
    )
    sums = np.asarray(m @ vectors, dtype=np.float32)
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    profiles = sums / np.maximum(norms, 1e-12)
    return pl.DataFrame(
        {
            "user_id": users.astype(np.int32),
            "n_books": np.diff(m.indptr).astype(np.int32),
        }
    ).with_columns(pl.Series("embedding", profiles, dtype=pl.Array(pl.Float32, DIM)))


def run(
    con: duckdb.DuckDBPyConnection,
    settings: ContentSettings,
    *,
    force: bool = False,
    encoder: Encoder | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Build book_content_embeddings and user_content_profiles and swap them in atomically."""
    say = progress or (lambda _msg: None)
    params = config.as_dict(settings)
    digest = db.query(con, "content_digest").row(0, named=True)
    if digest["n_books"] == 0:
        raise StageNotReadyError(
            "no books to embed", where="books", hint="Run `bookrec ingest` first"
        )
    label = (
        model_label(settings.model) if encoder is None else getattr(encoder, "__name__", "custom")
    )
    inputs = {
        "facets": pipeline.upstream(con, "facets"),
        "enrich": pipeline.upstream(con, "enrich"),
        "model": label,
        **digest,
    }
    # how the neighbour lists are searched changes them too (exact or approximate above a size)
    search = {k: v for k, v in config.as_dict(neighbour_search()).items() if k != "block"}
    fp = pipeline.fingerprint({**params, "search": search}, inputs)
    if not force and pipeline.is_current(con, "content", fp):
        return {"status": "up to date", "fingerprint": fp}
    books = db.query(con, "content_inputs", {"all_books": settings.scope == "all"})
    encode = encoder or default_encoder(settings.model, settings.batch_size, settings.threads)
    existing = db.query(con, "content_existing")
    if settings.vector == "text":
        texts = content_texts(books, settings.max_summary_chars)
        say(f"content: {texts.height:,} books to embed (unchanged ones are reused)")
        emb, n_new = embed_books(texts, existing, label, encode)
    else:
        facets = facet_table(con) if settings.facet_weight else None
        texts = part_texts(books, settings, facets)
        say(f"content: {texts.height:,} books to embed as parts (unchanged ones are reused)")

        def parts(rows: pl.DataFrame, text_vectors: np.ndarray) -> np.ndarray:
            facet_part = (
                facet_vectors(rows["isbn"].to_list(), facets, encode)
                if facets is not None
                else None
            )
            return combine(rows, text_vectors, settings, facet_part)

        emb, n_new = embed_books(texts, existing, label, encode, parts)
    interactions = db.query(
        con, "content_interactions", {"min_rating": settings.profile_min_rating}
    )
    vectors = emb["embedding"].to_numpy() if emb.height else np.zeros((0, DIM), np.float32)
    profiles = user_profiles(interactions, emb["isbn"].to_list(), vectors)
    say(f"content: {settings.neighbours} nearest books of each of {emb.height:,} books")
    neighbours = nearest(
        emb["isbn"].to_list(),
        vectors,
        settings.neighbours,
        threads=settings.threads,
        progress=lambda msg: say(f"content: {msg}"),
    )
    summary = {
        "books": emb.height,
        "encoded": n_new,
        "reused": emb.height - n_new,
        "readers": profiles.height,
        "neighbours": neighbours.height,
    }
    with db.transaction(con):
        db.replace_table(con, "book_content_embeddings", emb)
        db.replace_table(con, "user_content_profiles", profiles)
        db.replace_table(con, "book_content_neighbours", neighbours)
        pipeline.record(con, "content", fp, params, inputs, summary)
    say(
        f"content: {n_new:,} encoded, {emb.height - n_new:,} reused, {profiles.height:,} reader profiles"
    )
    return {"status": "done", "fingerprint": fp, **summary}
