"""Recognising and parsing Book-Crossing files: encodings, delimiters, aliases, line numbers, bad lines."""

from __future__ import annotations

from pathlib import Path

import ingest_fixtures as fx
import pytest

from engine.errors import FormatError, InputFileError
from engine.ingest import formats, read


def _read(
    source: str, path: Path, wanted: str = "auto"
) -> tuple[formats.FileFormat, read.ReadResult]:
    data = formats.strip_bom(formats.load_bytes(source, path))
    fmt = formats.sniff(source, path, data, wanted)
    return fmt, read.read_file(fmt, data)


def test_bx2004_dump_is_recognised(tmp_path: Path) -> None:
    paths = fx.write_bx(tmp_path)
    fmt, _ = _read("books", paths["books"])
    assert (fmt.format, fmt.dialect, fmt.delimiter, fmt.encoding) == ("bx2004", "bx", ";", "cp1252")
    assert fmt.columns == (
        "isbn",
        "title",
        "author",
        "year",
        "publisher",
        "image_url_s",
        "image_url_m",
        "image_url_l",
    )
    # Pure ASCII bytes are valid UTF-8: the ratings file of the dump decodes either way.
    assert _read("ratings", paths["ratings"])[0].format == "bx2004"
    assert _read("users", paths["users"])[0].columns == ("user_id", "location", "age")


def test_bx2004_values_quotes_semicolons_escapes_and_cp1252(tmp_path: Path) -> None:
    paths = fx.write_bx(tmp_path)
    _, res = _read("books", paths["books"])
    rows = {r["isbn"]: r for r in res.frame.iter_rows(named=True)}
    assert (
        rows["0374157065"]["title"] == "Flu; the Story of the Great Influenza"
    )  # ';' inside quotes
    assert (
        rows["0425176428"]["title"] == 'What If?: The World\'s "Foremost" Historians'
    )  # \" escapes
    assert rows["078946697X"]["title"] == "DK Readers: Creating the X-Men"  # broken \" before ;
    assert rows["078946697X"]["author"] == "Michael Teitelbaum"
    assert rows["0060973129"]["author"] == "Carlo D\u2019Este"  # cp1252 0x92
    assert rows["3257224281"]["author"] == "J\u00fcrgen M\u00fcller"
    assert rows["0374157065"]["publisher"] == "Farrar Straus &amp; Giroux"  # unescaped later
    assert res.frame["image_url_s"][0] == "http://s/1.jpg"
    assert res.records == 13 and res.blank == 1
    assert res.rejected.select("line", "reason").rows() == [
        (fx.BX_BOOKS_BROKEN_LINE, read.REJECT_FIELDS)
    ]
    assert (
        res.rejected["raw"][0] == '"this line is broken";"only two"'
    )  # CRLF removed from raw text


def test_bx2004_null_age_and_line_numbers(tmp_path: Path) -> None:
    paths = fx.write_bx(tmp_path)
    _, res = _read("users", paths["users"])
    assert res.frame["line"].to_list() == list(range(2, 12))
    assert res.frame.filter(res.frame["user_id"] == "1")["age"].to_list() == [""]
    assert res.frame.filter(res.frame["user_id"] == "7")["location"].to_list() == [
        "k\u00f6ln, n/a, germany"
    ]


def test_kaggle_edition_is_recognised_and_parsed(tmp_path: Path) -> None:
    paths = fx.write_kaggle(tmp_path)
    fmt, res = _read("books", paths["books"])
    assert (fmt.format, fmt.dialect, fmt.delimiter, fmt.encoding) == ("kaggle", "csv", ",", "utf-8")
    titles = dict(zip(res.frame["isbn"], res.frame["title"], strict=True))
    assert titles["0002005018"] == "Clara Callan, A Novel"
    assert titles["0060973129"] == 'He Said "Hi"'
    assert (
        titles["0345417623"] == "A Title With a\nNewline Inside"
    )  # a quoted newline joins two lines
    assert res.frame.filter(res.frame["isbn"] == "0684823802")["line"].to_list() == [11]
    assert res.records == 9
    assert res.rejected.select("line", "reason").rows() == [
        (fx.KAGGLE_BOOKS_BROKEN_LINE, read.REJECT_FIELDS)
    ]
    ufmt, users = _read("users", paths["users"])
    assert ufmt.format == "kaggle" and ufmt.columns == ("user_id", "location", "age")
    assert users.frame["location"][0] == "nyc, new york, usa"


def test_split_variant_is_recognised(tmp_path: Path) -> None:
    paths = fx.write_split(tmp_path)
    fmt, res = _read("users", paths["users"])
    assert fmt.format == "split"
    assert fmt.columns == ("user_id", "city", "state", "country", "age")
    first = res.frame.row(0, named=True)
    assert first == {
        "line": 2,
        "user_id": "8",
        "city": "timmins",
        "state": " ontario",
        "country": ' canada"',
        "age": None,
    }
    bfmt, books = _read("books", paths["books"])
    assert bfmt.columns == ("isbn", "title", "author", "year", "publisher")  # Book-Publisher alias
    assert books.records == 8  # no final newline: the last line still counts


def test_explicit_format_must_match(tmp_path: Path) -> None:
    paths = fx.write_kaggle(tmp_path)
    assert _read("users", paths["users"], "kaggle")[0].format == "kaggle"
    assert _read("books", paths["books"], "split")[0].format == "kaggle"  # books look alike in both
    with pytest.raises(FormatError, match="looks like kaggle, not split"):
        _read("users", paths["users"], "split")
    with pytest.raises(FormatError, match="not bx2004"):
        _read("ratings", paths["ratings"], "bx2004")


def test_header_aliases_and_column_order(tmp_path: Path) -> None:
    path = tmp_path / "r.tsv"
    path.write_text("rating\tISBN\tuser\textra\n7\t0195153448\t42\tzzz\n", encoding="utf-8")
    fmt, res = _read("ratings", path)
    assert fmt.delimiter == "\t" and fmt.columns == ("rating", "isbn", "user_id", None)
    assert res.frame.rows() == [(2, "7", "0195153448", "42")]


def test_utf8_bom_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "Ratings.csv"
    path.write_bytes(b"\xef\xbb\xbfUser-ID,ISBN,Book-Rating\n1,0195153448,5\n")
    fmt, res = _read("ratings", path)
    assert fmt.columns == ("user_id", "isbn", "rating") and res.frame.height == 1


@pytest.mark.parametrize(
    ("content", "error", "match"),
    [
        (None, InputFileError, "not found"),
        (b"", InputFileError, "empty"),
        (b"  \r\n\n", InputFileError, "empty"),
        (b"User-ID,ISBN,Book-Rating\n", InputFileError, "header but no rows"),
        (b"foo,bar,baz\n1,2,3\n", FormatError, "no recognisable ratings header"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", FormatError, "no recognisable ratings header"),
    ],
)
def test_unusable_files_raise_one_clear_error(
    tmp_path: Path, content: bytes | None, error: type, match: str
) -> None:
    path = tmp_path / "Ratings.csv"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(error, match=match):
        _read("ratings", path)


def test_split_lines_keeps_every_physical_line() -> None:
    lines, offsets = read.split_lines(b"a\r\n\nb\nc")
    assert lines.to_list() == ["a", "", "b", "c"]
    assert offsets.tolist() == [0, 3, 4, 6, 7]


def test_forced_utf8_on_a_cp1252_file_is_a_clear_error(tmp_path: Path) -> None:
    paths = fx.write_bx(tmp_path)
    data = formats.load_bytes("books", paths["books"])
    with pytest.raises(FormatError, match="not valid UTF-8"):
        formats.sniff("books", paths["books"], data, encoding="utf-8")
    assert formats.sniff("books", paths["books"], data, encoding="cp1252").encoding == "cp1252"
