"""Sample data generator: determinism, Book-Crossing shape, planted defects, planted genre/community signal."""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import sample
from engine.cli import main
from engine.errors import ConfigError
from engine.sample_vocab import GENRES, VOCAB

BOOK_HEADER = (
    "ISBN,Book-Title,Book-Author,Year-Of-Publication,Publisher,Image-URL-S,Image-URL-M,Image-URL-L"
)
RATING_HEADER = "User-ID,ISBN,Book-Rating"
USER_HEADER = "User-ID,Location,Age"


def isbn10_valid(isbn: str) -> bool:
    """Independent ISBN-10 checksum: sum of (10 - i) * digit_i must be divisible by 11."""
    if not re.fullmatch(r"\d{9}[\dX]", isbn):
        return False
    digits = [int(c) for c in isbn[:9]] + [10 if isbn[9] == "X" else int(isbn[9])]
    return sum((10 - i) * d for i, d in enumerate(digits)) % 11 == 0


@pytest.fixture(scope="module")
def small() -> sample.SampleData:
    return sample.generate("small", seed=0)


@pytest.fixture(scope="module")
def small_files(
    small: sample.SampleData, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    return sample.write(small, tmp_path_factory.mktemp("sample"))


def defects_of(data: sample.SampleData, kind: str) -> list[sample.Defect]:
    return [d for d in data.defects if d.kind == kind]


def test_cli_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    runs = {name: tmp_path / name for name in ("a", "b", "c")}
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        assert (
            main(["sample", "--size", "small", "--out", str(runs[name]), "--seed", str(seed)]) == 0
        )
    names = sorted(p.name for p in runs["a"].iterdir())
    assert names == [
        "Books.csv",
        "Ratings.csv",
        "Users.csv",
        "truth.json",
        "truth_books.csv",
        "truth_users.csv",
    ]
    for name in names:
        assert (runs["a"] / name).read_bytes() == (runs["b"] / name).read_bytes(), name
    for name in ("Books.csv", "Ratings.csv", "Users.csv", "truth_users.csv"):
        assert (runs["a"] / name).read_bytes() != (runs["c"] / name).read_bytes(), name
    assert json.loads((runs["c"] / "truth.json").read_text())["seed"] == 8


def test_invalid_size_is_one_clear_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown sample size 'tiny'"):
        sample.generate("tiny")
    with pytest.raises(ConfigError, match="non-negative"):
        sample.generate("small", seed=-1)
    assert main(["sample", "--size", "tiny", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "small, medium, full" in err and "Traceback" not in err


def test_sizes_and_types(small: sample.SampleData) -> None:
    assert 2_000 <= small.books.height <= 3_000 and 1_000 <= small.users.height <= 2_000
    assert 30_000 <= small.ratings.height <= 40_000
    assert small.books.columns == BOOK_HEADER.split(",")
    assert small.ratings.schema == pl.Schema(
        {"User-ID": pl.Int32, "ISBN": pl.String, "Book-Rating": pl.Int8}
    )
    assert small.users.schema == pl.Schema(
        {"User-ID": pl.Int32, "Location": pl.String, "Age": pl.Int16}
    )
    assert small.books.schema["Year-Of-Publication"] == pl.Int32
    assert (
        small.truth_books.height == small.books.height
        and small.truth_users.height == small.users.height
    )


def test_medium_size() -> None:
    data = sample.generate("medium", seed=0)
    assert data.books.height == 25_000 and data.users.height == 20_000
    assert 130_000 <= data.ratings.height <= 170_000


def test_book_crossing_shape(small: sample.SampleData) -> None:
    rating = small.ratings["Book-Rating"]
    assert 0.55 <= (rating == 0).mean() <= 0.70
    explicit = rating.filter(rating > 0)
    assert 7.0 <= explicit.mean() <= 8.0
    assert explicit.mode().to_list() == [8]
    assert explicit.min() == 1 and explicit.max() == 10
    # Long tails: the top 1% of books hold far more than 1% of ratings; user activity is skewed too.
    per_book = small.ratings.group_by("ISBN").len()["len"].sort(descending=True)
    assert per_book[: small.books.height // 100].sum() / small.ratings.height >= 0.10
    per_user = small.ratings.group_by("User-ID").len()["len"].sort(descending=True)
    assert per_user[: len(per_user) // 10].sum() / small.ratings.height >= 0.25
    assert per_user.max() >= 5 * per_user.median()


def test_users_look_like_book_crossing(small: sample.SampleData) -> None:
    parts = small.users["Location"].str.split(", ")
    assert (parts.list.len() == 3).all()
    countries = Counter(parts.list.last().to_list())
    top = [c for c, _ in countries.most_common(6)]
    assert top[0] == "usa" and countries["usa"] / small.users.height > 0.6 and top[1] == "canada"
    assert {"germany", "united kingdom", "australia", "spain"} <= set(countries)
    age = small.users["Age"]
    assert 0.35 <= age.null_count() / small.users.height <= 0.45
    normal = age.drop_nulls().filter((age.drop_nulls() > 0) & (age.drop_nulls() < 200))
    assert 28 <= normal.median() <= 40


def test_planted_defects_in_frames(small: sample.SampleData) -> None:
    kinds = {d.kind for d in small.defects}
    assert kinds >= {
        "year_zero",
        "year_future",
        "age_0",
        "age_244",
        "malformed_row",
        "isbn_bad_checksum",
        "rating_unknown_isbn",
        "duplicate_rating",
        "html_entity",
        "mojibake",
    }
    year = dict(
        zip(small.books["ISBN"].str.to_uppercase(), small.books["Year-Of-Publication"], strict=True)
    )
    assert all(year[d.isbn] == 0 for d in defects_of(small, "year_zero"))
    assert all(year[d.isbn] >= 2030 for d in defects_of(small, "year_future"))
    age = dict(zip(small.users["User-ID"], small.users["Age"], strict=True))
    assert [age[d.user_id] for d in defects_of(small, "age_0")] == [0] * len(
        defects_of(small, "age_0")
    )
    assert {age[d.user_id] for d in defects_of(small, "age_244")} == {244}
    # The other ages stay in 11..99.
    others = small.users.filter(
        ~pl.col("User-ID").is_in([d.user_id for d in small.defects if d.user_id])
    )
    assert others["Age"].drop_nulls().is_between(11, 99).all()
    books = set(small.books["ISBN"].str.to_uppercase())
    # Every defect in Books.csv names a book by its final (upper-cased) ISBN.
    assert all(d.isbn in books for d in small.defects if d.file == "Books.csv" and d.isbn)
    unknown = defects_of(small, "rating_unknown_isbn")
    assert unknown and all(d.isbn not in books and isbn10_valid(d.isbn) for d in unknown)
    in_books = small.ratings.filter(pl.col("ISBN").is_in(list(books)))
    assert small.ratings.height - in_books.height == len(unknown)
    pairs = small.ratings.group_by("User-ID", "ISBN").agg(
        pl.col("Book-Rating").n_unique().alias("r"), pl.len()
    )
    dups = pairs.filter(pl.col("len") > 1)
    assert dups.height == len(defects_of(small, "duplicate_rating")) >= 1 and (dups["r"] == 2).all()
    titles = small.books["Book-Title"].str.contains("&amp;", literal=True).sum()
    publishers = small.books["Publisher"].str.contains("&amp;", literal=True).sum()
    assert (
        titles >= 1
        and publishers >= 1
        and titles + publishers == len(defects_of(small, "html_entity"))
    )
    assert (
        small.users["Location"].str.contains("Ã").sum() == len(defects_of(small, "mojibake")) == 1
    )


def test_isbns_valid_except_planted(small: sample.SampleData) -> None:
    isbns = small.books["ISBN"].to_list()
    assert len(set(i.upper() for i in isbns)) == len(isbns)
    invalid = [i for i in isbns if not isbn10_valid(i.upper())]
    assert invalid == [d.isbn for d in defects_of(small, "isbn_bad_checksum")]
    lower = [i for i in isbns if i != i.upper()]
    assert lower == [d.value for d in defects_of(small, "isbn_lowercase_x")]
    assert all(i.endswith("x") for i in lower)
    # The bad-checksum and lower-case books are rated (so cleaning them matters downstream).
    rated = set(small.ratings["ISBN"])
    assert all(d.isbn in rated for d in small.defects if d.kind.startswith("isbn_"))


@settings(max_examples=5, deadline=None)
@given(seed=st.integers(min_value=1, max_value=2**32))
def test_invariants_hold_for_any_seed(seed: int) -> None:
    data = sample.generate("small", seed=seed)
    isbns = data.books["ISBN"].str.to_uppercase()
    assert isbns.n_unique() == data.books.height
    assert sum(not isbn10_valid(i) for i in isbns) == 1
    assert data.ratings["User-ID"].is_in(data.users["User-ID"].implode()).all()
    assert 0.55 <= (data.ratings["Book-Rating"] == 0).mean() <= 0.70
    assert {d.kind for d in data.defects} >= {
        "isbn_bad_checksum",
        "malformed_row",
        "duplicate_rating",
    }


def test_ratings_users_exist_and_truth_matches(small: sample.SampleData) -> None:
    assert small.ratings["User-ID"].is_in(small.users["User-ID"].implode()).all()
    assert (small.truth_books["isbn"] == small.books["ISBN"].str.to_uppercase()).all()
    assert set(small.truth_books["genre"]) == set(GENRES) == set(small.truth_users["community"])
    second = small.truth_users.filter(pl.col("second_community").is_not_null())
    assert 0.08 <= second.height / small.users.height <= 0.25
    assert (second["second_community"] != second["community"]).all()


def test_written_files_round_trip(small: sample.SampleData, small_files: dict[str, Path]) -> None:
    for key, header in (("books", BOOK_HEADER), ("ratings", RATING_HEADER), ("users", USER_HEADER)):
        path = small_files[key]
        lines = path.read_text(encoding="utf-8").split("\n")
        assert lines[0] == header and lines[-1] == ""
        (bad,) = [d for d in small.defects if d.kind == "malformed_row" and d.file == path.name]
        assert lines[bad.line - 1] == bad.value.split(": ", 1)[1]
        read = pl.read_csv(path, infer_schema_length=0, truncate_ragged_lines=True)
        assert read.columns == header.split(",")
        assert read.height == getattr(small, key).height + 1
        read = read.with_row_index("i").filter(pl.col("i") != bad.line - 2).drop("i")
        expected = getattr(small, key).select(pl.all().cast(pl.String))
        assert read.equals(expected), key
    quoted = small.books.filter(pl.col("Book-Title").str.contains('"'))
    assert quoted.height > 0 and small.books["Book-Title"].str.contains(",").sum() > 0
    truth = json.loads(small_files["truth"].read_text(encoding="utf-8"))
    assert truth["genres"] == list(GENRES) and truth["size"] == "small" and truth["seed"] == 0
    assert truth["counts"]["lines"]["Ratings.csv"] == small.ratings.height + 2
    assert len(truth["defects"]) == len(small.defects)
    assert pl.read_csv(small_files["truth_books"]).columns == ["isbn", "genre"]
    assert pl.read_csv(small_files["truth_users"]).columns[:2] == ["user_id", "community"]
    # Users.csv writes a missing age as an empty field, Kaggle style.
    assert re.search(
        r'^\d+,"[^"]+, [^"]+, [^"]+",$', small_files["users"].read_text(encoding="utf-8"), re.M
    )


def test_titles_and_publishers_carry_the_genre(small: sample.SampleData) -> None:
    """A naive keyword vote over the genre vocabularies recovers the planted genre for most books."""
    vocab = {
        g: {w.lower() for field in ("noun", "adj", "pub_a", "pub_b") for w in VOCAB[g][field]}
        for g in GENRES
    }
    text = (small.books["Book-Title"] + " " + small.books["Publisher"]).str.to_lowercase().to_list()
    right = 0
    for words, genre in zip(text, small.truth_books["genre"], strict=True):
        votes = {g: sum(w in words for w in vocab[g]) for g in GENRES}
        right += max(votes, key=votes.get) == genre
    assert right / len(text) >= 0.75
    # Author names are neutral: the same names occur across genres.
    by_author = small.books.join(
        small.truth_books, left_on=pl.col("ISBN").str.to_uppercase(), right_on="isbn"
    )
    last = by_author.with_columns(pl.col("Book-Author").str.split(" ").list.last().alias("last"))
    assert last.group_by("last").agg(pl.col("genre").n_unique())["genre"].max() >= 6


def test_interactions_follow_communities(small: sample.SampleData) -> None:
    joined = small.ratings.join(small.truth_books, left_on="ISBN", right_on="isbn").join(
        small.truth_users, left_on="User-ID", right_on="user_id"
    )
    inside = (joined["genre"] == joined["community"]) | (
        joined["genre"] == joined["second_community"]
    ).fill_null(False)
    assert 0.65 <= inside.mean() <= 0.9


def _recall_at_20(scores: np.ndarray, train: sp.csr_matrix, test: sp.csr_matrix) -> float:
    scores = scores.astype(float)
    scores[train.nonzero()] = -np.inf
    top = np.argpartition(-scores, 20, axis=1)[:, :20]
    hits = np.asarray(test[np.arange(scores.shape[0])[:, None], top].sum(axis=1)).ravel()
    held = np.asarray(test.sum(axis=1)).ravel()
    mask = held > 0
    return float((hits[mask] / np.minimum(held[mask], 20)).mean())


def test_community_signal_beats_popularity(small: sample.SampleData) -> None:
    """Item co-occurrence beats popularity clearly on a random 80/20 split (there is real CF signal)."""
    pairs = small.ratings.unique(["User-ID", "ISBN"])
    user = pairs["User-ID"].rank("dense").cast(pl.Int64).to_numpy() - 1
    item = pairs["ISBN"].rank("dense").cast(pl.Int64).to_numpy() - 1
    shape = (user.max() + 1, item.max() + 1)
    held = np.random.default_rng(0).random(len(user)) < 0.2
    train = sp.csr_matrix((np.ones((~held).sum()), (user[~held], item[~held])), shape=shape)
    test = sp.csr_matrix((np.ones(held.sum()), (user[held], item[held])), shape=shape)
    popularity = np.tile(np.asarray(train.sum(axis=0)).ravel(), (shape[0], 1))
    cooc = (train.T @ train).toarray()
    np.fill_diagonal(cooc, 0)
    pop_recall = _recall_at_20(popularity, train, test)
    cooc_recall = _recall_at_20(np.asarray(train @ cooc), train, test)
    assert cooc_recall >= 1.3 * pop_recall, (cooc_recall, pop_recall)


@pytest.mark.slow
def test_full_size_matches_book_crossing(tmp_path: Path) -> None:
    started = time.perf_counter()
    data = sample.generate("full", seed=0)
    paths = sample.write(data, tmp_path)
    assert time.perf_counter() - started < 30
    assert data.books.height == 271_379 and data.users.height == 278_858
    assert abs(data.ratings.height - 1_149_780) / 1_149_780 < 0.05
    assert data.books["ISBN"].str.to_uppercase().n_unique() == data.books.height
    assert (
        0.30 <= data.ratings["User-ID"].n_unique() / data.users.height <= 0.45
    )  # BX: most users never rate
    assert 0.55 <= (data.ratings["Book-Rating"] == 0).mean() <= 0.70
    assert sum(1 for _ in paths["ratings"].open(encoding="utf-8")) == data.ratings.height + 2
