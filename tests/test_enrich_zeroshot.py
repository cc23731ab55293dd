"""Offline zero-shot labeller: rules, the shared encoder, and agreement with the sample's planted genres."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from engine import db, embed
from engine.enrich import EnrichSettings, run, vocab
from engine.enrich.zeroshot import FieldRule, pick_labels
from engine.sample_vocab import GENRES

PLANTED = GENRES  # the sample generator's planted genres


def test_genre_vocabulary_holds_the_planted_genres_and_enough_labels() -> None:
    assert set(PLANTED) <= set(vocab.GENRE)
    assert len(vocab.GENRE) >= 36 and len(vocab.THEME) >= 24
    for field in ("category", "tone", "audience"):
        assert 10 <= len(vocab.VOCABULARIES[field]) <= 16
    assert all(desc.strip() for v in vocab.VOCABULARIES.values() for desc in v.values())


def test_pick_labels_threshold_margin_and_cap() -> None:
    scores = np.array(
        [
            [0.50, 0.48, 0.47, 0.46, 0.10],  # four within the margin: capped at three, best first
            [0.50, 0.30, 0.20, 0.10, 0.00],  # one clear winner
            [0.19, 0.18, 0.00, 0.00, 0.00],  # nothing passes the threshold
        ],
        dtype=np.float32,
    )
    labels = ["a", "b", "c", "d", "e"]
    assert pick_labels(scores, labels, FieldRule(0.2, 0.05, 3)) == [["a", "b", "c"], ["a"], []]


def test_encoder_is_cached_and_returns_normalised_float32() -> None:
    assert embed.load_encoder() is embed.load_encoder("all-MiniLM-L6-v2")
    vecs = embed.encode(["a murder mystery", "a love story"], batch_size=2)
    assert vecs.dtype == np.float32 and vecs.shape == (2, 384)
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert embed.encode([]).shape == (0, 384)


def _sample_db(path: Path, n: int) -> tuple[object, pl.DataFrame]:
    from engine import sample

    data = sample.generate("small", 0)
    books = data.books.rename(
        {
            "ISBN": "isbn",
            "Book-Title": "title",
            "Book-Author": "author",
            "Year-Of-Publication": "year",
            "Publisher": "publisher",
        }
    )
    books = books.with_columns(pl.col("isbn").str.to_uppercase()).unique("isbn", keep="first")
    books = books.select("isbn", "title", "author", pl.col("year").cast(pl.Int16), "publisher")
    truth = data.truth_books.filter(pl.col("genre").is_not_null())
    # An even spread over the planted genres, so agreement is not carried by the two big ones.
    books = (
        books.join(truth, on="isbn")
        .sort("isbn")
        .group_by("genre", maintain_order=True)
        .head(n // 12)
    )
    con = db.connect(path)
    db.append_table(con, "books", books.drop("genre"))
    return con, books.select("isbn", "genre")


def test_zero_shot_run_agrees_with_planted_genres(tmp_path: Path) -> None:
    con, truth = _sample_db(tmp_path / "zs.duckdb", 480)
    result = run(con, EnrichSettings(provider="zero-shot", zs_chunk=200))
    assert result.stats.done == truth.height and result.source == "zero-shot:all-MiniLM-L6-v2"
    rows = db.fetch(con, "SELECT * FROM book_enrichment").join(truth, on="isbn")
    assert rows["summary"].null_count() == rows.height  # no invented summaries
    for field in ("genre", "category", "theme", "tone", "audience"):
        assert rows[field].list.len().max() <= 3
    assert rows["genre"].list.len().min() >= 1 or rows["genre"].list.len().mean() > 1
    hit = rows.select(pl.col("genre").list.contains(pl.col("genre_right"))).to_series().mean()
    top1 = rows.select(pl.col("genre").list.first() == pl.col("genre_right")).to_series().mean()
    print(
        f"zero-shot agreement with planted genres: label set {hit:.1%}, top-1 {top1:.1%} (chance 8.3%)"
    )
    assert top1 > 0.5 and hit > 0.6  # chance is 1/12
    again = run(con, EnrichSettings(provider="zero-shot"))
    assert again.pending == 0 and again.already_current == truth.height  # resumable, no redo


@pytest.mark.parametrize(
    "provider_env, want",
    [
        ({}, "zero-shot"),
        ({"OPENAI_API_KEY": "k"}, "openai"),
        ({"OPENAI_BASE_URL": "http://x/v1"}, "openai"),
    ],
)
def test_default_provider(provider_env: dict, want: str) -> None:
    assert EnrichSettings().resolved_provider(provider_env) == want
    assert (
        EnrichSettings(provider="zero-shot").resolved_provider({"OPENAI_API_KEY": "k"})
        == "zero-shot"
    )
