"""Content embeddings per book (title, author, facets, summary) and per reader (`bookrec content`)."""

from __future__ import annotations

import hashlib
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

DIM = 384  # book_content_embeddings.embedding is FLOAT[384] (MiniLM-L6)


@dataclass(frozen=True)
class ContentSettings:
    """Settings of `bookrec content` ([content] in bookrec.toml, BOOKREC_CONTENT_*)."""

    model: str = "all-MiniLM-L6-v2"
    scope: Literal["all", "enriched"] = "all"  # all books, or only enriched ones
    profile_min_rating: int = 6  # explicit ratings below this say "disliked": not in a profile
    max_summary_chars: int = 500
    batch_size: int = 128
    threads: int | None = None
    neighbours: int = NEIGHBOURS  # nearest books kept per book (book_content_neighbours); 0: none


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


def text_hashes(texts: list[str], model: str) -> list[str]:
    """A short hash of (model, text) per book: unchanged books keep their embedding on reruns."""
    salt = model.encode() + b"\x00"
    return [hashlib.blake2b(salt + t.encode(), digest_size=8).hexdigest() for t in texts]


def embed_books(
    texts: pl.DataFrame, existing: pl.DataFrame, model: str, encode: Encoder
) -> tuple[pl.DataFrame, int]:
    """(isbn, text_hash, model, embedding) for every book, encoding only new or changed texts."""
    hashes = text_hashes(texts["text"].to_list(), model)
    frame = texts.with_columns(pl.Series("text_hash", hashes))
    keep = existing.filter(pl.col("model") == model).select("isbn", "text_hash", "embedding")
    frame = frame.join(keep, on=["isbn", "text_hash"], how="left")
    todo = frame["embedding"].is_null().to_numpy()
    vectors = np.zeros((frame.height, DIM), dtype=np.float32)
    if (~todo).any():
        vectors[~todo] = np.stack(frame.filter(~pl.Series(todo))["embedding"].to_numpy())
    if todo.any():
        new = encode(frame.filter(pl.Series(todo))["text"].to_list())
        if new.shape[1] != DIM:
            raise ConfigError(
                f"content model gives {new.shape[1]}-dim vectors; book_content_embeddings holds FLOAT[{DIM}]",
                where=model,
                hint="Use a 384-dimension model such as all-MiniLM-L6-v2",
            )
        vectors[todo] = new
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
    fp = pipeline.fingerprint(params, inputs)
    if not force and pipeline.is_current(con, "content", fp):
        return {"status": "up to date", "fingerprint": fp}
    books = db.query(con, "content_inputs", {"all_books": settings.scope == "all"})
    texts = content_texts(books, settings.max_summary_chars)
    encode = encoder or default_encoder(settings.model, settings.batch_size, settings.threads)
    say(f"content: {texts.height:,} books to embed (unchanged ones are reused)")
    emb, n_new = embed_books(texts, db.query(con, "content_existing"), label, encode)
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
