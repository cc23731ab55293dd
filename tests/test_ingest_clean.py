"""Each ingest cleaning rule on its own (pure DataFrame -> DataFrame functions), plus ISBN properties."""

from __future__ import annotations

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.ingest import clean


def _apply(expr_fn, values: list, **kw) -> list:
    return (
        pl.DataFrame({"v": values}, schema={"v": pl.String})
        .select(expr_fn(pl.col("v"), **kw))
        .to_series()
        .to_list()
    )


# ---------------------------------------------------------------- ISBN


def test_isbn_is_trimmed_unquoted_and_upper_cased() -> None:
    raw = [
        " 039592720x ",
        '"0451166892"',
        "'0440234743'",
        '0385504209\\"',
        "",
        "   ",
        None,
        "b00005wz75",
    ]
    assert _apply(clean.normalize_isbn, raw) == [
        "039592720X",
        "0451166892",
        "0440234743",
        "0385504209",
        None,
        None,
        None,
        "B00005WZ75",
    ]


def test_isbn_kind_and_checksum() -> None:
    isbns = [
        "0195153448",
        "039592720X",
        "0395927201",
        "9780306406157",
        "9780306406158",
        "B00005WZ75",
        "12345",
    ]
    df = pl.DataFrame({"isbn": isbns}).select(
        clean.isbn_kind(pl.col("isbn")).alias("kind"),
        clean.isbn_valid(pl.col("isbn")).alias("valid"),
    )
    assert df["kind"].to_list() == [
        "isbn10",
        "isbn10",
        "isbn10",
        "isbn13",
        "isbn13",
        "other",
        "other",
    ]
    assert df["valid"].to_list() == [True, True, False, True, False, False, False]


def _ref_valid(isbn: str) -> bool:
    """Reference checksum, written independently of the Polars expressions."""
    if len(isbn) == 10 and isbn[:9].isdigit() and (isbn[9].isdigit() or isbn[9] == "X"):
        values = [int(c) for c in isbn[:9]] + [10 if isbn[9] == "X" else int(isbn[9])]
        return sum(w * v for w, v in zip(range(10, 0, -1), values, strict=True)) % 11 == 0
    if len(isbn) == 13 and isbn.isdigit():
        return sum(int(c) * (3 if i % 2 else 1) for i, c in enumerate(isbn)) % 10 == 0
    return False


def _check10(body: str) -> str:
    c = (11 - sum((10 - i) * int(d) for i, d in enumerate(body)) % 11) % 11
    return "X" if c == 10 else str(c)


def _check13(body: str) -> str:
    return str((10 - sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(body)) % 10) % 10)


_isbn_like = st.text(alphabet="0123456789Xx -\"' ", min_size=0, max_size=16)


@settings(max_examples=200, deadline=None)
@given(st.lists(_isbn_like, min_size=1, max_size=30))
def test_isbn_normaliser_and_checksum_match_reference(raw: list[str]) -> None:
    df = pl.DataFrame({"raw": raw}).with_columns(clean.normalize_isbn(pl.col("raw")).alias("isbn"))
    df = df.with_columns(
        clean.isbn_valid(pl.col("isbn")).alias("valid"),
        clean.isbn_kind(pl.col("isbn")).alias("kind"),
    )
    for r, isbn, valid, kind in df.iter_rows():
        expected = r.strip(" \t\r\n\"'\\").upper() or None
        assert isbn == expected
        # Normalising twice changes nothing.
        assert _apply(clean.normalize_isbn, [isbn])[0] == isbn
        if isbn is not None:
            assert valid == _ref_valid(isbn)
            assert kind in ("isbn10", "isbn13", "other")


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="0123456789", min_size=9, max_size=9), st.integers(0, 9), st.integers(1, 9))
def test_isbn10_checksum_catches_every_single_digit_error(body: str, pos: int, delta: int) -> None:
    isbn = body + _check10(body)
    wrong = list(isbn)
    if wrong[pos] == "X":
        wrong[pos] = str(delta)
    else:
        wrong[pos] = str((int(wrong[pos]) + delta) % 10)
    valid = (
        pl.DataFrame({"i": [isbn, "".join(wrong)]})
        .select(clean.isbn_valid(pl.col("i")))
        .to_series()
        .to_list()
    )
    assert valid == [True, False]


@settings(max_examples=200, deadline=None)
@given(
    st.text(alphabet="0123456789", min_size=12, max_size=12), st.integers(0, 12), st.integers(1, 9)
)
def test_isbn13_checksum_catches_every_single_digit_error(body: str, pos: int, delta: int) -> None:
    isbn = body + _check13(body)
    wrong = list(isbn)
    wrong[pos] = str((int(wrong[pos]) + delta) % 10)
    valid = (
        pl.DataFrame({"i": [isbn, "".join(wrong)]})
        .select(clean.isbn_valid(pl.col("i")))
        .to_series()
        .to_list()
    )
    assert valid == [True, False]


# ---------------------------------------------------------------- numbers


def test_year_outside_range_becomes_null() -> None:
    raw = [
        "2001",
        "0",
        "999",
        "1000",
        "2024",
        "2025",
        "2030",
        "",
        None,
        "DK Publishing Inc",
        " 1999 ",
        "1988.0",
    ]
    assert _apply(clean.clean_year, raw, min_year=1000, max_year=2024) == [
        2001,
        None,
        None,
        1000,
        2024,
        None,
        None,
        None,
        None,
        None,
        1999,
        1988,
    ]


def test_age_outside_range_becomes_null() -> None:
    raw = ["NULL", "", None, "4", "5", "18", "18.0", "110", "111", "244", '14"', "NaN", "-3"]
    assert _apply(clean.clean_age, raw, min_age=5, max_age=110) == [
        None,
        None,
        None,
        None,
        5,
        18,
        18,
        110,
        None,
        None,
        14,
        None,
        None,
    ]


# ---------------------------------------------------------------- text and places


def test_location_is_split_into_city_state_country() -> None:
    locs = [
        "nyc, new york, usa",
        "berlin, n/a, germany",
        "porto, v.n.gaia, portugal",
        "ottawa, ontario, ottawa, canada",
        "berlin, germany",
        "somewhere",
        ", , ",
        'k\u00f6ln, "nrw", germany"',
    ]
    df = clean.split_location(pl.DataFrame({"loc": locs}), "loc").select("city", "state", "country")
    assert df.rows() == [
        ("nyc", "new york", "usa"),
        ("berlin", None, "germany"),
        ("porto", "v.n.gaia", "portugal"),
        ("ottawa", "ontario, ottawa", "canada"),
        ("berlin", None, "germany"),
        ("somewhere", None, None),
        (None, None, None),
        ("k\u00f6ln", "nrw", "germany"),
    ]


def test_place_values_lose_stray_quotes_and_placeholders() -> None:
    raw = [' canada"', ' \\"n/a\\"', ' \\"n/a`', "n/a", "N/A.", "", " ", "-", "st. john's", None]
    assert _apply(clean.clean_place, raw) == [
        "canada",
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        "st. john's",
        None,
    ]


def test_html_entities_are_unescaped() -> None:
    s = pl.Series(
        [
            "Farrar &amp; Giroux",
            "&#321;\u00f3d&#378;",
            "AT&T",
            "Tom & Jerry",
            "&quot;Hi&quot;",
            None,
        ]
    )
    fixed, n_html, n_moji = clean.fix_text(s, mojibake=False)
    assert fixed.to_list() == [
        "Farrar & Giroux",
        "\u0141\u00f3d\u017a",
        "AT&T",
        "Tom & Jerry",
        '"Hi"',
        None,
    ]
    assert (n_html, n_moji) == (3, 0)


def test_mojibake_is_repaired_only_where_it_is_clearly_mojibake() -> None:
    s = pl.Series(
        [
            "Saint-Exup\u00c3\u00a9ry",  # UTF-8 read as Latin-1
            "Saint-Exup\u00c3\u0083\u00c2\u00a9ry",  # twice
            "Quersch\u00c3\u0083?\u00c3\u0082\u00c2\u00bcsse",  # four times, a byte lost to '?'
            "J\u00fcrgen M\u00fcller",
            "jyv\u00e4skyl\u00e4",
            "Carlo D\u2019Este",
            "\u0141\u00f3d\u017a",  # fine as is
            "plain ascii",
            None,
        ]
    )
    fixed, n_html, n_moji = clean.fix_text(s)
    assert fixed.to_list() == [
        "Saint-Exup\u00e9ry",
        "Saint-Exup\u00e9ry",
        "Quersch\u00fcsse",
        "J\u00fcrgen M\u00fcller",
        "jyv\u00e4skyl\u00e4",
        "Carlo D\u2019Este",
        "\u0141\u00f3d\u017a",
        "plain ascii",
        None,
    ]
    assert (n_html, n_moji) == (0, 3)


def test_mojibake_repair_that_would_add_replacement_chars_is_refused() -> None:
    # Both bytes of a character were lost: ftfy can only guess with U+FFFD, so the text stays.
    text = "Stra\u00c3\u0083?\u00c3\u0082?enbahn"
    assert "\ufffd" not in clean.repair_mojibake(text)


def test_mojibake_repair_is_fast_on_many_rows() -> None:
    # ftfy runs once per distinct non-ASCII value, not once per row.
    import time

    s = pl.Series(["Saint-Exup\u00c3\u00a9ry", "plain", "J\u00fcrgen"] * 100_000)
    t = time.perf_counter()
    fixed, _, n = clean.fix_text(s)
    assert time.perf_counter() - t < 5.0
    assert n == 100_000 and fixed[0] == "Saint-Exup\u00e9ry"


# ---------------------------------------------------------------- duplicates and rejects


def test_duplicate_ratings_explicit_beats_implicit_then_last_line_wins() -> None:
    ratings = pl.DataFrame(
        {
            "line": [2, 3, 4, 5, 6, 7, 8, 9],
            "user_id": [1, 1, 2, 2, 2, 3, 3, 4],
            "isbn": ["A", "A", "B", "B", "B", "C", "C", "D"],
            "rating": [6, 0, 7, 9, 0, 0, 0, 5],
        },
        schema_overrides={"rating": pl.Int8},
    )
    kept, dropped = clean.resolve_duplicate_ratings(ratings)
    assert dropped == 4
    assert kept.sort("user_id").select("user_id", "isbn", "rating", "line").rows() == [
        (1, "A", 6, 2),  # explicit 6 beats the later implicit 0
        (2, "B", 9, 5),  # two explicit: the later one
        (3, "C", 0, 8),  # two implicit: the later one
        (4, "D", 5, 9),
    ]


def test_keep_last_keeps_the_latest_line_per_key() -> None:
    df = pl.DataFrame({"line": [2, 3, 4], "isbn": ["X", "Y", "X"], "title": ["old", "y", "new"]})
    kept, dropped = clean.keep_last(df, "isbn")
    assert dropped == 1 and kept.sort("isbn")["title"].to_list() == ["new", "y"]


def test_clean_ratings_rejects_with_reasons() -> None:
    raw = pl.DataFrame(
        {
            "line": [2, 3, 4, 5, 6, 7, 8],
            "user_id": ["1", "x", "2", "3", "4", "5", "6"],
            "isbn": ["a", "b", "", "c", "d", "e", " 034545104x "],
            "rating": ["5", "5", "5", "11", "-1", "seven", "0"],
        }
    )
    out = clean.clean_ratings(raw)
    assert out.rejected.rows() == [
        (3, clean.REJECT_USER_ID),
        (4, clean.REJECT_EMPTY_ISBN),
        (5, clean.REJECT_RATING_RANGE),
        (6, clean.REJECT_RATING_RANGE),
        (7, clean.REJECT_RATING_INT),
    ]
    assert out.frame.select("user_id", "isbn", "rating").rows() == [
        (1, "A", 5),
        (6, "034545104X", 0),
    ]
    assert out.counts == {"duplicates": 0, "explicit": 1, "implicit": 1}


def test_shifted_kaggle_rows_are_repaired() -> None:
    df = pl.DataFrame(
        {
            "isbn": ["078946697X", "0195153448"],
            "title": [
                'DK Readers: Creating the X-Men (Level 4)\\";Michael Teitelbaum"',
                "Classical Mythology",
            ],
            "author": ["2000", "Mark P. O. Morford"],
            "year": ["DK Publishing Inc", "2002"],
            "publisher": ["http://s", "Oxford"],
            "image_url_s": ["http://m", "s"],
            "image_url_m": ["http://l", "m"],
            "image_url_l": [None, "l"],
        }
    )
    fixed, n = clean.repair_shifted_books(df)
    assert n == 1
    assert fixed.row(0) == (
        "078946697X",
        "DK Readers: Creating the X-Men (Level 4)",
        "Michael Teitelbaum",
        "2000",
        "DK Publishing Inc",
        "http://s",
        "http://m",
        "http://l",
    )
    assert fixed.row(1) == df.row(1)


def test_users_without_age_column_have_null_ages() -> None:
    df = pl.DataFrame({"line": [2], "user_id": ["7"], "location": ["a, b, c"]})
    out = clean.clean_users(df, min_age=5, max_age=110)
    assert out.frame.row(0) == (2, 7, "a", "b", "c", None)
