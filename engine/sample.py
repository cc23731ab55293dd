"""Deterministic Book-Crossing-shaped sample data with planted genres, taste communities and defects.

`generate(size, seed)` builds typed Polars frames (pure, vectorised); `write(sample, out_dir)` writes
them as Kaggle-format CSVs (Books.csv, Ratings.csv, Users.csv), inserts the planted malformed rows,
and writes the truth side files (truth_books.csv, truth_users.csv, truth.json).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import polars as pl

from engine import sample_vocab as V
from engine.errors import ConfigError

BOOK_COLUMNS = (
    "ISBN",
    "Book-Title",
    "Book-Author",
    "Year-Of-Publication",
    "Publisher",
    "Image-URL-S",
    "Image-URL-M",
    "Image-URL-L",
)
RATING_COLUMNS = ("User-ID", "ISBN", "Book-Rating")
USER_COLUMNS = ("User-ID", "Location", "Age")
FILES = {"books": "Books.csv", "ratings": "Ratings.csv", "users": "Users.csv"}
IMAGE_URL = "http://images.amazon.com/images/P/{}.01.%s.jpg"


@dataclasses.dataclass(frozen=True)
class SizeSpec:
    """Target shape of one sample size."""

    books: int
    users: int
    ratings: int
    active: float  # share of users with at least one rating (BX: ~38%)
    activity_sigma: float  # lognormal spread of ratings per active user (heavier tail when larger)
    max_per_user: int
    defects: int  # how many of each planted defect kind ("a handful")


SIZES: dict[str, SizeSpec] = {
    "small": SizeSpec(2_500, 1_500, 40_000, 0.97, 1.0, 150, 3),
    "medium": SizeSpec(25_000, 20_000, 150_000, 0.6, 1.4, 1_500, 5),
    "full": SizeSpec(271_379, 278_858, 1_149_780, 0.377, 1.8, 8_000, 8),
    # 10x full, same shape (per-user activity and per-book popularity spread unchanged): scale tests.
    "xl": SizeSpec(2_713_790, 2_788_580, 11_497_800, 0.377, 1.8, 8_000, 8),
}

COMMUNITY_SHARE = 0.8  # share of a user's interactions drawn from their community genres
SECOND_COMMUNITY = 0.15  # share of users with a second community genre
BOOK_ZIPF = 1.0  # popularity ~ (rank + offset)^-BOOK_ZIPF over a random rank order of books
# Offset per book in the Zipf-Mandelbrot weights: flattens the very head (BX's top book has ~0.2%).
BOOK_ZIPF_OFFSET = 1 / 2000
IMPLICIT_MEAN = 0.62  # BX: 62% of ratings are implicit (0)


@dataclasses.dataclass(frozen=True)
class SampleSettings:
    """Settings of `bookrec sample` ([sample] in bookrec.toml)."""

    size: str = "small"
    seed: int = 0
    out: Path | None = None  # default data/sample/<size>


@dataclasses.dataclass(frozen=True)
class Defect:
    """One planted defect: its kind, the file it is in, and where (ISBN, user, line)."""

    kind: str
    file: str
    value: str
    isbn: str | None = None
    user_id: int | None = None
    line: int | None = None  # 1-based physical line, for malformed rows inserted by `write`


@dataclasses.dataclass(frozen=True)
class SampleData:
    """A generated sample: typed frames in the Kaggle column names, planted truth and defects."""

    size: str
    seed: int
    books: pl.DataFrame
    ratings: pl.DataFrame
    users: pl.DataFrame
    truth_books: pl.DataFrame
    truth_users: pl.DataFrame
    defects: tuple[Defect, ...]
    malformed: dict[str, tuple[int, str]]  # file key -> (data row index it goes before, raw line)

    def truth(self) -> dict:
        """The truth.json document: seed, size, genres, row counts and planted defects."""
        rows = {k: getattr(self, k).height for k in FILES}
        return {
            "seed": self.seed,
            "size": self.size,
            "genres": list(V.GENRES),
            "counts": {
                **rows,
                "lines": {FILES[k]: rows[k] + 1 + (k in self.malformed) for k in FILES},
                "users_with_ratings": self.ratings["User-ID"].n_unique(),
            },
            "params": {
                "community_share": COMMUNITY_SHARE,
                "second_community": SECOND_COMMUNITY,
                "implicit_mean": IMPLICIT_MEAN,
                "book_zipf": BOOK_ZIPF,
                "book_zipf_offset": BOOK_ZIPF_OFFSET,
            },
            "defects": [
                {k: v for k, v in dataclasses.asdict(d).items() if v is not None}
                for d in self.defects
            ],
        }


def _rng(seed: int, part: int) -> np.random.Generator:
    """One independent stream per part, so changing one part never shifts the others."""
    return np.random.default_rng(np.random.SeedSequence([seed, part]))


def _zipf_weights(
    rng: np.random.Generator, n: int, exponent: float, offset: float = 1.0
) -> np.ndarray:
    """Zipf-Mandelbrot weights (rank + offset)^-exponent over a random order of `n` items."""
    return (rng.permutation(n) + offset) ** -exponent


def _choice(rng: np.random.Generator, weights, n: int) -> np.ndarray:
    p = np.asarray(weights, dtype=float)
    return rng.choice(len(p), size=n, p=p / p.sum())


class _Segments:
    """Weighted sampling inside segments (e.g. books of one genre), vectorised with one searchsorted."""

    def __init__(self, segment: np.ndarray, weights: np.ndarray, n_segments: int):
        self.order = np.argsort(segment, kind="stable")
        self.cum = np.concatenate([[0.0], np.cumsum(weights[self.order])])
        counts = np.bincount(segment, minlength=n_segments)
        self.ends = np.cumsum(counts)
        self.starts = self.ends - counts

    def draw(self, rng: np.random.Generator, seg: np.ndarray) -> np.ndarray:
        lo, hi = self.cum[self.starts[seg]], self.cum[self.ends[seg]]
        pos = _searchsorted(self.cum, lo + rng.random(len(seg)) * (hi - lo)) - 1
        return self.order[np.clip(pos, self.starts[seg], self.ends[seg] - 1)]


def _searchsorted(cum: np.ndarray, x: np.ndarray) -> np.ndarray:
    """np.searchsorted(cum, x, 'right'), several times faster for many random x: query in sorted order."""
    order = np.argsort(x)
    out = np.empty(len(x), dtype=np.int64)
    out[order] = np.searchsorted(cum, x[order], side="right")
    return out


def _words(words, index) -> pl.Series:
    """`words[index]` as a Polars string Series (no per-row Python objects)."""
    return pl.Series(list(words), dtype=pl.String).gather(np.asarray(index))


def _pick_words(rng: np.random.Generator, genre: np.ndarray, field: str, distinct_from=None):
    """One word per row from its genre's list `field` (optionally different from another pick)."""
    lists = [V.VOCAB[g][field] for g in V.GENRES]
    lens = np.array([len(w) for w in lists])
    offs = np.concatenate([[0], np.cumsum(lens)[:-1]])
    if distinct_from is None:
        idx = rng.integers(0, lens[genre])
    else:
        idx = (distinct_from + 1 + rng.integers(0, lens[genre] - 1)) % lens[genre]
    return _words([w for ws in lists for w in ws], offs[genre] + idx), idx


def isbn10_check(body: np.ndarray) -> np.ndarray:
    """ISBN-10 check characters for 9-digit integer bodies."""
    body = np.asarray(body, dtype=np.int64)
    total = sum((10 - i) * ((body // 10 ** (8 - i)) % 10) for i in range(9))
    return np.array(list("0123456789X"))[(11 - total % 11) % 11]


def _isbn_strings(body: np.ndarray) -> pl.Series:
    return pl.Series(body).cast(pl.String).str.zfill(9) + pl.Series(isbn10_check(body))


# Registrant-code bands, prefix-free like the real ISBN ranges: code length -> (first code, how many).
_BANDS = {
    2: (0, 20),
    3: (200, 500),
    4: (7000, 1500),
    5: (85000, 5000),
    6: (900000, 50000),
    7: (9500000, 500000),
}


def _isbns(rng: np.random.Generator, publisher: np.ndarray, n_pub: int) -> pl.Series:
    """Valid, unique ISBN-10s: group + publisher code + title number, sized by publisher output."""
    groups = [g for g, _ in V.PUBLISHER_GROUPS]
    gi = _choice(rng, [w for _, w in V.PUBLISHER_GROUPS], n_pub)
    glen = np.array([len(g) for g in groups])[gi]
    count = np.bincount(publisher, minlength=n_pub)
    title_digits = np.maximum(1, np.floor(np.log10(np.maximum(count - 1, 1))).astype(int) + 1)
    code_len = np.clip(9 - glen - title_digits, 2, 7)
    title_digits = 9 - glen - code_len
    assert (10**title_digits >= count).all(), "publisher too large for its ISBN range"
    pubs = pl.DataFrame({"g": gi, "c": code_len, "r": rng.random(n_pub)}).with_row_index("p")
    ordinal = (
        pubs.sort("r")
        .with_columns(o=pl.col("p").cum_count().over("g", "c") - 1)
        .sort("p")["o"]
        .to_numpy()
    )
    start = np.array([_BANDS[c][0] for c in code_len])
    size = np.array([_BANDS[c][1] for c in code_len])
    assert (ordinal < size).all(), "too many publishers for one ISBN code band"
    code = start + (ordinal * 7919) % size
    gval = np.array([int(g) for g in groups])[gi]
    cap = 10**title_digits
    # Title numbers: the k-th book of a publisher gets (k * prime + offset) mod 10^digits, distinct.
    k = _rank_within(publisher)
    title = (k * 3637 + rng.integers(0, cap)[publisher]) % cap[publisher]
    body = gval[publisher] * 10 ** (9 - glen[publisher]) + code[publisher] * cap[publisher] + title
    return _isbn_strings(body)


def _rank_within(group: np.ndarray) -> np.ndarray:
    """0-based position of each element among the elements of its group, in array order."""
    order = np.argsort(group, kind="stable")
    counts = np.bincount(group)
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    rank = np.empty(len(group), dtype=np.int64)
    rank[order] = np.arange(len(group)) - starts
    return rank


def _books(spec: SizeSpec, seed: int) -> tuple[pl.DataFrame, np.ndarray, np.ndarray]:
    """Books frame, each book's planted genre index and its popularity weight."""
    rng, n, g_count = _rng(seed, 1), spec.books, len(V.GENRES)
    genre = _choice(rng, V.GENRE_BOOK_WEIGHTS, n)
    pop = _zipf_weights(rng, n, BOOK_ZIPF, 1 + n * BOOK_ZIPF_OFFSET)
    # Publishers: genre houses (every genre gets at least two) plus neutral big houses (segment g_count).
    n_gp = max(4 * g_count, n // 18)
    pub_genre = np.concatenate(
        [np.repeat(np.arange(g_count), 2), _choice(rng, V.GENRE_BOOK_WEIGHTS, n_gp - 2 * g_count)]
    )
    n_neutral = len(V.NEUTRAL_PUBLISHERS)
    segments = np.concatenate([pub_genre, np.full(n_neutral, g_count)])
    weights = np.concatenate([_zipf_weights(rng, n_gp, 1.1), _zipf_weights(rng, n_neutral, 1.0)])
    neutral = rng.random(n) < 0.15
    publisher = _Segments(segments, weights, g_count + 1).draw(
        rng, np.where(neutral, g_count, genre)
    )
    suffix = [" " + s for s in V.PUBLISHER_SUFFIXES] + [""] * 2
    pub_names = pl.concat(
        [
            _pick_words(rng, pub_genre, "pub_a")[0]
            + " "
            + _pick_words(rng, pub_genre, "pub_b")[0]
            + _words(suffix, rng.integers(0, len(suffix), n_gp)),
            pl.Series(V.NEUTRAL_PUBLISHERS, dtype=pl.String),
        ]
    )
    # Authors write in one genre; names are neutral (the signal is in titles and publishers).
    n_auth = max(4 * g_count, n // 3)
    auth_genre = np.concatenate(
        [np.arange(g_count), _choice(rng, V.GENRE_BOOK_WEIGHTS, n_auth - g_count)]
    )
    initials = [""] * 5 + [f" {c}." for c in V.MIDDLE_INITIALS[:5]]
    auth_names = (
        _words(V.FIRST_NAMES, rng.integers(0, len(V.FIRST_NAMES), n_auth))
        + _words(initials, rng.integers(0, len(initials), n_auth))
        + " "
        + _words(V.LAST_NAMES, rng.integers(0, len(V.LAST_NAMES), n_auth))
    )
    author = _Segments(auth_genre, _zipf_weights(rng, n_auth, 0.8), g_count).draw(rng, genre)
    isbn = _isbns(rng, publisher, len(pub_names))
    years = 2005 - np.ceil(rng.lognormal(np.log(6.0), 0.9, n)).astype(np.int64)
    frame = pl.DataFrame(
        {
            "ISBN": isbn,
            "Book-Title": _titles(rng, genre),
            "Book-Author": auth_names.gather(author),
            "Year-Of-Publication": pl.Series(np.maximum(years, 1900), dtype=pl.Int32),
            "Publisher": pub_names.gather(publisher),
        }
    ).with_columns(
        pl.format(IMAGE_URL % size, pl.col("ISBN")).alias(f"Image-URL-{k}")
        for k, size in (("S", "THUMBZZZ"), ("M", "MZZZZZZZ"), ("L", "LZZZZZZZ"))
    )
    return frame, genre, pop


def _titles(rng: np.random.Generator, genre: np.ndarray) -> pl.Series:
    """Titles from genre templates, filled with genre words and neutral names and places."""
    n = len(genre)
    tpl, _ = _pick_words(rng, genre, "tpl")
    adj, _ = _pick_words(rng, genre, "adj")
    noun, ni = _pick_words(rng, genre, "noun")
    other, _ = _pick_words(rng, genre, "noun", distinct_from=ni)

    def pick(words: tuple[str, ...]) -> pl.Series:
        return _words(words, rng.integers(0, len(words), n))

    slots = {
        "a": adj,
        "n": noun,
        "m": other,
        "p": pick(V.PLACES),
        "f": pick(V.FIRST_NAMES),
        "l": pick(V.LAST_NAMES),
        "k": pl.Series(rng.integers(1, 10, n)).cast(pl.String),
        "y": pl.Series(rng.integers(1800, 1990, n)).cast(pl.String),
    }
    frame = pl.DataFrame({"t": tpl, **slots})
    title = pl.col("t")
    for key in slots:  # each placeholder occurs at most once in a template
        title = title.str.replace("{" + key + "}", pl.col(key), literal=True)
    return frame.select(title)["t"]


def _users(spec: SizeSpec, seed: int) -> tuple[pl.DataFrame, np.ndarray, np.ndarray]:
    """Users frame, each user's community genre index and second community (-1 when none)."""
    rng, n, g_count = _rng(seed, 2), spec.users, len(V.GENRES)
    countries = list(V.COUNTRY_WEIGHTS)
    country = _choice(rng, list(V.COUNTRY_WEIGHTS.values()), n)
    places = [(c, s, k) for k in countries for c, s in V.LOCATIONS[k]]
    place_country = np.array([countries.index(k) for _, _, k in places])
    # Bigger cities first in each list: Zipf weights by position within the country.
    position = _rank_within(place_country)
    place = _Segments(place_country, (position + 1.0) ** -0.7, len(countries)).draw(rng, country)
    # BX users often left the state out: "n/a" as the real dump writes it.
    no_state = rng.random(n) < 0.02
    text = _words(
        [f"{c}, {s}, {k}" for c, s, k in places] + [f"{c}, n/a, {k}" for c, _, k in places],
        place + no_state * len(places),
    )
    # Ages: ~40% missing; the rest like BX (median ~34, quartiles ~26/45).
    age = np.clip(np.rint(10 + rng.gamma(4.0, 6.5, n)), 11, 99)
    age_series = (
        pl.Series(np.where(rng.random(n) < 0.40, np.nan, age)).fill_nan(None).cast(pl.Int16)
    )
    community = _choice(rng, V.GENRE_BOOK_WEIGHTS, n)
    has_second = rng.random(n) < SECOND_COMMUNITY
    second = np.where(has_second, (community + 1 + rng.integers(0, g_count - 1, n)) % g_count, -1)
    frame = pl.DataFrame(
        {
            "User-ID": pl.Series(np.arange(1, n + 1), dtype=pl.Int32),
            "Location": text,
            "Age": age_series,
        }
    )
    return frame, community, second


def _ratings(
    spec: SizeSpec,
    seed: int,
    genre: np.ndarray,
    pop: np.ndarray,
    community: np.ndarray,
    second: np.ndarray,
) -> pl.DataFrame:
    """Interactions (user index, book index, rating): community books mostly, popular books otherwise."""
    rng, g_count = _rng(seed, 3), len(V.GENRES)
    n_users = len(community)
    active = np.flatnonzero(rng.random(n_users) < spec.active)
    # Ratings per active user: 1 + a lognormal share of the rest (BX: most users rate once, a few thousands).
    raw = rng.lognormal(0.0, spec.activity_sigma, len(active))
    want = 1 + np.floor(raw * (spec.ratings - len(active)) / raw.sum() + rng.random(len(active)))
    want = np.minimum(want, spec.max_per_user).astype(np.int64)
    # Draw ~30% more than wanted, drop repeats of a (user, book) pair, keep the first `want` per user.
    draws = np.ceil(want * 1.3).astype(np.int64) + 3
    user = np.repeat(active, draws)
    in_comm = rng.random(len(user)) < COMMUNITY_SHARE
    use_second = (second[user] >= 0) & (rng.random(len(user)) < 0.35)
    target = np.where(use_second, second[user], community[user])
    book = np.empty(len(user), dtype=np.int64)
    book[in_comm] = _Segments(genre, pop, g_count).draw(rng, target[in_comm])
    cum = np.cumsum(pop)
    book[~in_comm] = np.minimum(
        _searchsorted(cum, rng.random((~in_comm).sum()) * cum[-1]), len(pop) - 1
    )
    want_by_user = np.zeros(n_users, dtype=np.int64)
    want_by_user[active] = want
    first = pl.Series(user * len(pop) + book).is_first_distinct().to_numpy()
    u, b = user[first], book[first]
    keep = _rank_within(u) < want_by_user[u]
    u, b = u[keep], b[keep]
    # Ratings: implicit (0) with a per-user propensity (mean 0.62), else BX's explicit histogram,
    # a little lower for books outside the user's communities.
    implicit_p = rng.beta(IMPLICIT_MEAN * 3, (1 - IMPLICIT_MEAN) * 3, n_users)
    explicit = 1 + _choice(rng, V.EXPLICIT_RATING_COUNTS, len(u))
    outside = (genre[b] != community[u]) & (genre[b] != second[u])
    explicit = np.maximum(1, explicit - (outside & (rng.random(len(u)) < 0.3)))
    rating = np.where(rng.random(len(u)) < implicit_p[u], 0, explicit)
    return pl.DataFrame({"u": u, "b": b, "rating": pl.Series(rating, dtype=pl.Int8)})


def _fresh_isbns(rng: np.random.Generator, taken: pl.Series, n: int) -> list[str]:
    """`n` valid ISBN-10s (group 0) that are not in `taken`."""
    used = set(taken.str.slice(0, 9).cast(pl.Int64, strict=False).drop_nulls().to_list())
    bodies: list[int] = []
    while len(bodies) < n:
        body = int(rng.integers(0, 10**8))
        if body not in used:
            used.add(body)
            bodies.append(body)
    return _isbn_strings(np.array(bodies, dtype=np.int64)).to_list()


def _set(frame: pl.DataFrame, column: str, rows, values) -> pl.DataFrame:
    """`frame` with `column` replaced at `rows` (a copy; frames stay immutable)."""
    return frame.with_columns(
        frame[column].clone().scatter(rows, pl.Series(values, dtype=frame[column].dtype))
    )


def _plant(
    spec: SizeSpec, seed: int, books: pl.DataFrame, ratings: pl.DataFrame, users: pl.DataFrame
):
    """Plant BX's realistic defects (a handful of each) and decide the malformed rows `write` inserts."""
    rng, k = _rng(seed, 4), spec.defects
    defects: list[Defect] = []
    nb, nu = books.height, users.height

    def rows(n_rows: int, count: int, among: np.ndarray | None = None) -> np.ndarray:
        pool = np.arange(n_rows) if among is None else among
        return np.sort(rng.choice(pool, size=min(count, len(pool)), replace=False))

    # Bad years: 0 (BX's "unknown") and impossible future years.
    bad = rows(nb, 2 * k)
    touched = list(bad)
    years = np.array([0] * k + [2030, 2037, 2050] * k)[: len(bad)]
    books = _set(books, "Year-Of-Publication", bad, years)
    defects += [
        Defect(
            "year_zero" if y == 0 else "year_future",
            "Books.csv",
            str(y),
            isbn=books["ISBN"][int(i)],
        )
        for i, y in zip(bad, years, strict=True)
    ]
    # Bad ages: 0 and 244, both seen in BX.
    bad = rows(nu, k + max(1, k // 2))
    ages = np.array([0] * k + [244] * k)[: len(bad)]
    users = _set(users, "Age", bad, ages)
    defects += [
        Defect(f"age_{a}", "Users.csv", str(a), user_id=int(users["User-ID"][int(i)]))
        for i, a in zip(bad, ages, strict=True)
    ]
    # Mojibake: a UTF-8 location read as Latin-1 once (the Kaggle edition has many like "mÃ¼nchen").
    i = int(rows(nu, 1)[0])
    broken = "m\u00c3\u00bcnchen, bayern, germany"
    users = _set(users, "Location", [i], [broken])
    defects.append(Defect("mojibake", "Users.csv", broken, user_id=int(users["User-ID"][i])))
    # HTML entities as the 2004 dump has them: "&amp;" in a few titles and publishers.
    for column, needle in (("Book-Title", " and "), ("Publisher", " & ")):
        hits = np.flatnonzero(books[column].str.contains(needle, literal=True).to_numpy())
        picked = rows(nb, k, hits)
        new = (
            books[column]
            .gather(picked)
            .str.replace(needle, needle.replace("and", "&").replace("&", "&amp;"), literal=True)
        )
        books = _set(books, column, picked, new)
        touched += list(picked)
        defects += [
            Defect("html_entity", "Books.csv", f"{column}: {v}", isbn=books["ISBN"][int(i)])
            for i, v in zip(picked, new, strict=True)
        ]
    # ISBN defects on rated books not touched above (so every defect names the book's final ISBN):
    # a wrong check digit, and a lower-case "x" in Books only.
    is_rated = np.bincount(ratings["b"].to_numpy(), minlength=nb) > 0
    is_rated[[int(i) for i in touched]] = False
    rated = np.flatnonzero(is_rated)
    check = books["ISBN"].str.slice(9, 1).to_numpy()
    i = int(rows(nb, 1, rated[check[rated] != "X"])[0])
    old = books["ISBN"][i]
    bad_isbn = old[:9] + str((int(old[9]) + 1) % 10)
    books = _set(books, "ISBN", [i], [bad_isbn])
    defects.append(Defect("isbn_bad_checksum", "Books.csv", bad_isbn, isbn=bad_isbn))
    x_rated = rated[check[rated] == "X"]
    if len(x_rated):
        i = int(rows(nb, 1, x_rated)[0])
        lower = books["ISBN"][i].lower()
        defects.append(Defect("isbn_lowercase_x", "Books.csv", lower, isbn=books["ISBN"][i]))
    return books, users, defects


def _finish_ratings(
    rng: np.random.Generator,
    spec: SizeSpec,
    inter: pl.DataFrame,
    books: pl.DataFrame,
    users: pl.DataFrame,
    defects: list[Defect],
) -> pl.DataFrame:
    """Ratings in Kaggle columns plus unknown-ISBN ratings and duplicate (user, ISBN) pairs."""
    k = spec.defects
    ratings = pl.DataFrame(
        {
            "User-ID": users["User-ID"].gather(inter["u"]),
            "ISBN": books["ISBN"].str.to_uppercase().gather(inter["b"]),
            "Book-Rating": inter["rating"],
        }
    ).with_row_index("seq")
    # Ratings of ISBNs absent from Books (real BX has many): valid ISBNs, random active users.
    picks = rng.choice(ratings.height, size=k, replace=False)
    unknown = _fresh_isbns(rng, books["ISBN"], k)
    extra = ratings[picks].with_columns(ISBN=pl.Series(unknown), seq=pl.col("seq") + 0.25)
    defects += [
        Defect(
            "rating_unknown_isbn", "Ratings.csv", r["ISBN"], isbn=r["ISBN"], user_id=r["User-ID"]
        )
        for r in extra.iter_rows(named=True)
    ]
    # The same (user, ISBN) twice with different ratings, right after the first.
    dup = ratings[rng.choice(ratings.height, size=max(1, k // 3), replace=False)]
    dup = dup.with_columns(
        pl.when(pl.col("Book-Rating") == 0).then(8).otherwise(0).cast(pl.Int8).alias("Book-Rating"),
        seq=pl.col("seq") + 0.5,
    )
    defects += [
        Defect(
            "duplicate_rating",
            "Ratings.csv",
            str(r["Book-Rating"]),
            isbn=r["ISBN"],
            user_id=r["User-ID"],
        )
        for r in dup.iter_rows(named=True)
    ]
    return (
        pl.concat([ratings.with_columns(pl.col("seq").cast(pl.Float64)), extra, dup])
        .sort("User-ID", "seq")
        .drop("seq")
    )


def _malformed(
    rng: np.random.Generator, books: pl.DataFrame, ratings: pl.DataFrame, users: pl.DataFrame
) -> tuple[dict[str, tuple[int, str]], list[Defect]]:
    """One unparsable row per file, like the shifted-column rows of the Kaggle edition."""
    isbn = _fresh_isbns(rng, books["ISBN"], 1)[0]
    urls = ",".join(IMAGE_URL.replace("{}", isbn) % s for s in ("THUMBZZZ", "MZZZZZZZ", "LZZZZZZZ"))
    raw = {
        # An unquoted comma in the title: nine fields instead of eight.
        "books": (
            books.height // 3,
            f"{isbn},Murder, She Said,Ellen K. Hart,1999,Harbor House,{urls}",
            "Books.csv",
            "too_many_fields",
        ),
        # A user id that is not a number.
        "ratings": (
            ratings.height // 2,
            f"12a45,{ratings['ISBN'][0]},5",
            "Ratings.csv",
            "unparsable_user_id",
        ),
        # A trailing extra field: four fields instead of three.
        "users": (
            users.height // 4,
            f'{users.height + 1},"springfield, illinois, usa",34,x',
            "Users.csv",
            "too_many_fields",
        ),
    }
    malformed = {key: (row, text) for key, (row, text, _, _) in raw.items()}
    defects = [
        Defect("malformed_row", file, f"{reason}: {text}", line=row + 2)
        for row, text, file, reason in raw.values()
    ]
    return malformed, defects


def _genre_names(index: np.ndarray) -> pl.Series:
    """Genre names for genre indices; null where the index is -1."""
    names = pl.Series(list(V.GENRES)).gather(np.maximum(index, 0))
    return pl.select(pl.when(pl.Series(index) >= 0).then(names)).to_series()


def generate(size: str, seed: int = 0) -> SampleData:
    """Generate a deterministic Book-Crossing-shaped sample of `size` (small, medium, full or xl)."""
    if size not in SIZES:
        raise ConfigError(f"unknown sample size {size!r}", hint=f"Use one of: {', '.join(SIZES)}")
    if not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"sample seed must be a non-negative integer, not {seed!r}")
    spec = SIZES[size]
    books, genre, pop = _books(spec, seed)
    users, community, second = _users(spec, seed)
    inter = _ratings(spec, seed, genre, pop, community, second)
    books, users, defects = _plant(spec, seed, books, inter, users)
    rng = _rng(seed, 5)
    ratings = _finish_ratings(rng, spec, inter, books, users, defects)
    # Books writes the lower-case x; Ratings keeps the upper-case form (normalising joins them).
    lower = [d for d in defects if d.kind == "isbn_lowercase_x"]
    if lower:
        books = books.with_columns(pl.col("ISBN").replace(lower[0].isbn, lower[0].value))
    malformed, more = _malformed(rng, books, ratings, users)
    truth_books = pl.DataFrame(
        {"isbn": books["ISBN"].str.to_uppercase(), "genre": _genre_names(genre)}
    )
    truth_users = pl.DataFrame(
        {
            "user_id": users["User-ID"],
            "community": _genre_names(community),
            "second_community": _genre_names(second),
        }
    )
    return SampleData(
        size,
        seed,
        books.select(BOOK_COLUMNS),
        ratings.select(RATING_COLUMNS),
        users.select(USER_COLUMNS),
        truth_books,
        truth_users,
        tuple(defects + more),
        malformed,
    )


def _write_csv(frame: pl.DataFrame, path: Path, malformed: tuple[int, str] | None) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        if malformed is None:
            frame.write_csv(fh)
        else:
            row, text = malformed
            frame.slice(0, row).write_csv(fh)
            fh.write(text.encode("utf-8") + b"\n")
            frame.slice(row).write_csv(fh, include_header=False)
    os.replace(tmp, path)


def write(sample: SampleData, out_dir: Path | str) -> dict[str, Path]:
    """Write the Kaggle-format CSVs (with the planted malformed rows) and the truth files to `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for key, name in FILES.items():
        paths[key] = out / name
        _write_csv(getattr(sample, key), paths[key], sample.malformed.get(key))
    for key in ("truth_books", "truth_users"):
        paths[key] = out / f"{key}.csv"
        _write_csv(getattr(sample, key), paths[key], None)
    paths["truth"] = out / "truth.json"
    tmp = out / "truth.json.tmp"
    tmp.write_text(
        json.dumps(sample.truth(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    os.replace(tmp, paths["truth"])
    return paths
