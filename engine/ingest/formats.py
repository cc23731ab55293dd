"""Recognise a Book-Crossing file: encoding, delimiter, dialect and column names (an alias map)."""

from __future__ import annotations

import codecs
import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

from engine.errors import FormatError, InputFileError

SOURCES = ("books", "users", "ratings")
FORMATS = ("auto", "bx2004", "kaggle", "split")

# Canonical column -> header spellings seen in the wild, compared after lower-casing and
# dropping everything but letters and digits ("Book-Title" -> "booktitle").
ALIASES: dict[str, tuple[str, ...]] = {
    "isbn": ("isbn", "bookisbn", "isbn10", "isbn13"),
    "title": ("booktitle", "title"),
    "author": ("bookauthor", "author"),
    "year": ("yearofpublication", "year", "bookyear", "publicationyear", "yearpublished"),
    "publisher": ("publisher", "bookpublisher"),
    "image_url_s": ("imageurls", "imageurlsmall", "imagesmall"),
    "image_url_m": ("imageurlm", "imageurlmedium", "imagemedium"),
    "image_url_l": ("imageurll", "imageurllarge", "imagelarge"),
    "user_id": ("userid", "user"),
    "rating": ("bookrating", "rating", "score"),
    "location": ("location", "userlocation"),
    "city": ("usercity", "city"),
    "state": ("userstate", "state", "province", "region"),
    "country": ("usercountry", "country"),
    "age": ("userage", "age"),
}
_BY_ALIAS = {alias: canon for canon, aliases in ALIASES.items() for alias in aliases}

# Columns each source must have, and the columns it may have.
REQUIRED: dict[str, tuple[str, ...]] = {
    "books": ("isbn", "title"),
    "users": ("user_id",),
    "ratings": ("user_id", "isbn", "rating"),
}
OPTIONAL: dict[str, tuple[str, ...]] = {
    "books": ("author", "year", "publisher", "image_url_s", "image_url_m", "image_url_l"),
    "users": ("location", "city", "state", "country", "age"),
    "ratings": (),
}
_DELIMITERS = (";", ",", "\t", "|")
_SNIFF_BYTES = 1 << 16
_NON_BLANK = re.compile(rb"[^ \t\n\r\x0b\x0c]")  # what bytes.strip() removes
PARQUET_MAGIC = b"PAR1"  # a Parquet file starts (and, when whole, ends) with these bytes


@dataclass(frozen=True)
class FileFormat:
    """How to read one input file."""

    source: str  # books | users | ratings
    path: Path
    format: str  # bx2004 | kaggle | split | parquet
    dialect: str  # "bx": every value quoted, backslash escapes; "csv": RFC 4180; "parquet"
    delimiter: str
    encoding: str  # utf-8 | cp1252
    columns: tuple[str | None, ...]  # canonical name per header position (None: ignored column)

    def describe(self) -> dict[str, object]:
        """JSON-friendly description for ingest_runs.files."""
        return {
            "format": self.format,
            "dialect": self.dialect,
            "delimiter": self.delimiter,
            "encoding": self.encoding,
            "columns": [c for c in self.columns if c],
        }


def canonical(header_name: str) -> str | None:
    """The canonical column for one header cell, or None when it is not one we know."""
    key = re.sub(r"[^a-z0-9]", "", header_name.strip().strip('"').lower())
    return _BY_ALIAS.get(key)


def _cp1252_fallback(exc: UnicodeDecodeError) -> tuple[str, int]:
    # Five bytes are undefined in Windows-1252; map them as Latin-1 does instead of failing.
    bad = exc.object[exc.start : exc.end]
    return bytes(bad).decode("latin-1"), exc.end


codecs.register_error("bookrec-cp1252", _cp1252_fallback)


def decode(data: bytes, encoding: str) -> str:
    """Bytes to text; cp1252 never fails (undefined bytes decode as Latin-1)."""
    if encoding == "utf-8":
        return data.decode("utf-8")
    return data.decode("cp1252", errors="bookrec-cp1252")


def detect_encoding(data: bytes) -> str:
    """utf-8 when the bytes are valid UTF-8, else cp1252 (the 2004 dump's Windows-1252)."""
    if data.isascii():  # a few ms, against ~40 ms to decode 70 MB into a throwaway str
        return "utf-8"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return "cp1252"
    return "utf-8"


def _header_cells(line: str, delimiter: str) -> list[str]:
    if delimiter == ";" and line.startswith('"'):
        return [c.strip().strip('"') for c in line.split(";")]
    return [c.strip() for c in next(csv.reader([line], delimiter=delimiter))]


def _best_split(source: str, header: str) -> tuple[str, list[str | None]] | None:
    """The delimiter whose split of the header names the most known columns (all required ones)."""
    best: tuple[int, str, list[str | None]] | None = None
    for delim in _DELIMITERS:
        cols = [canonical(c) for c in _header_cells(header, delim)]
        if len(set(filter(None, cols))) != len(list(filter(None, cols))):
            continue  # the same column twice: not a header we understand
        if not all(req in cols for req in REQUIRED[source]):
            continue
        known = sum(c is not None for c in cols)
        if best is None or known > best[0]:
            best = (known, delim, cols)
    return (best[1], best[2]) if best else None


def _first_line(data: bytes) -> bytes:
    end = data.find(b"\n")
    return (data if end < 0 else data[:end]).rstrip(b"\r")


def is_parquet(data: bytes) -> bool:
    """True for the bytes of a Parquet file (recognised by content, whatever the file is called)."""
    return data[:4] == PARQUET_MAGIC


def parquet_columns(source: str, path: Path, data: bytes) -> tuple[list[str], int]:
    """(column names, rows) of a Parquet file; FormatError when it cannot be read."""
    import pyarrow.parquet as pq

    try:
        meta = pq.ParquetFile(io.BytesIO(data)).metadata
        names = [meta.schema.column(i).path.split(".")[0] for i in range(meta.num_columns)]
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ... for damaged files
        raise FormatError(
            f"cannot read {source} Parquet file: {str(exc).splitlines()[0][:120]}",
            where=str(path),
        ) from None
    return list(dict.fromkeys(names)), meta.num_rows


def _sniff_parquet(source: str, path: Path, data: bytes) -> FileFormat:
    """A Parquet input: columns named as in the CSVs (the same alias map), any column types."""
    names, rows = parquet_columns(source, path, data)
    columns = [canonical(n) for n in names]
    known = [c for c in columns if c]
    if len(set(known)) != len(known) or not all(r in columns for r in REQUIRED[source]):
        raise FormatError(
            f"no recognisable {source} columns in Parquet file: expected "
            f"{', '.join(REQUIRED[source])}, got {', '.join(names)[:80]!r}",
            where=str(path),
            hint="Name the columns as in the Book-Crossing CSVs (e.g. ISBN, Book-Title, User-ID)",
        )
    if rows == 0:
        raise InputFileError(f"{source} Parquet file has no rows", where=str(path))
    if source == "users" and "location" in columns and {"city", "state", "country"} & set(columns):
        raise FormatError(
            "users file has both Location and split location columns", where=str(path)
        )
    return FileFormat(source, path, "parquet", "parquet", "", "utf-8", tuple(columns))


def sniff(
    source: str, path: Path, data: bytes, wanted: str = "auto", encoding: str = "auto"
) -> FileFormat:
    """Recognise `data` (the file's bytes, BOM removed) as `source`; FormatError if it is not.

    Parquet files are recognised by their magic bytes; `wanted` and `encoding` describe CSV
    flavours and do not apply to them.
    """
    if is_parquet(data):
        return _sniff_parquet(source, path, data)
    head = _first_line(data[:_SNIFF_BYTES])
    enc = detect_encoding(data) if encoding == "auto" else encoding
    if enc == "utf-8" and encoding == "utf-8" and detect_encoding(data) != "utf-8":
        raise FormatError(
            f"{source} file is not valid UTF-8",
            where=str(path),
            hint="Use --encoding auto or cp1252",
        )
    header = decode(head, enc)
    found = _best_split(source, header)
    if found is None:
        expected = ", ".join(REQUIRED[source])
        raise FormatError(
            f"no recognisable {source} header: expected columns {expected}, got {header[:80]!r}",
            where=str(path),
            hint="Pass the right file to --"
            + source
            + " (Book-Crossing 2004 dump, Kaggle or split-column CSV)",
        )
    delimiter, columns = found
    dialect = "bx" if delimiter == ";" and header.startswith('"') else "csv"
    if dialect == "bx" or delimiter == ";":
        fmt = "bx2004"
    elif source == "users" and "location" not in columns and {"city", "country"} & set(columns):
        fmt = "split"
    else:
        fmt = "kaggle"
    if wanted != "auto" and not _compatible(wanted, fmt, source):
        raise FormatError(
            f"{source} file looks like {fmt}, not {wanted}",
            where=str(path),
            hint="Use --format auto",
        )
    if source == "users" and "location" in columns and {"city", "state", "country"} & set(columns):
        raise FormatError(
            "users file has both Location and split location columns", where=str(path)
        )
    return FileFormat(source, path, fmt, dialect, delimiter, enc, tuple(columns))


def _compatible(wanted: str, found: str, source: str) -> bool:
    if wanted == found:
        return True
    # Books and ratings look the same in the Kaggle and split variants; only users differ.
    return source != "users" and {wanted, found} == {"kaggle", "split"}


def strip_bom(data: bytes) -> bytes:
    """The bytes without a leading UTF-8 byte-order mark."""
    return data[len(codecs.BOM_UTF8) :] if data.startswith(codecs.BOM_UTF8) else data


def load_bytes(source: str, path: Path) -> bytes:
    """The file's bytes as stored; InputFileError when missing, unreadable or empty (BOM aside)."""
    path = Path(path)
    if not path.exists():
        raise InputFileError(
            f"{source} file not found", where=str(path), hint="Check the --" + source + " path"
        )
    if path.is_dir():
        raise InputFileError(f"{source} path is a directory, not a file", where=str(path))
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputFileError(
            f"cannot read {source} file: {exc.strerror}", where=str(path)
        ) from None
    body = strip_bom(data)
    if is_parquet(body):
        return data  # rows and columns are checked from its metadata by sniff
    # Search for the first non-blank byte instead of strip(): no copy of a 70 MB file.
    if not _NON_BLANK.search(body):
        raise InputFileError(f"{source} file is empty", where=str(path))
    if not _NON_BLANK.search(body, len(_first_line(body))):
        raise InputFileError(f"{source} file has a header but no rows", where=str(path))
    return data
