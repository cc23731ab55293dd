"""Read one Book-Crossing file into string columns, keeping line numbers and rejecting bad lines.

Two paths. The fast path checks every physical line at once with one Polars regex and parses
all well-formed lines with Polars (its native CSV reader for RFC-4180 files; a vectorised split
on `";"` for the 2004 dump, whose backslash escapes no CSV reader understands). The few lines
that fail the check go through a line-level Python path that either recovers them or says why
not, so each rejected row keeps its 1-based line number and raw text.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa

from engine.errors import FormatError
from engine.ingest.formats import FileFormat, decode

REJECT_FIELDS = "wrong field count"
REJECT_UNPARSEABLE = "unparseable line"

_NULL_TOKEN = re.compile(r"(^|;)NULL(;|$)")


@dataclass(frozen=True)
class ReadResult:
    """String columns of the parsed records, plus what could not be parsed."""

    frame: pl.DataFrame  # `line` (1-based, Int64) + one String column per known field
    rejected: pl.DataFrame  # line, reason, raw
    raw: pl.Series  # every physical line without its line end (index = line - 1)
    records: int  # data records seen (blank lines not counted)
    blank: int  # blank lines skipped


class _ArrowCapsule:
    """Hands an Arrow array to Polars through the C data interface.

    Given a pyarrow array itself, Polars imports pyarrow.compute (~0.17 s, a third of the CLI's
    other imports) only to check for chunked dictionaries; the capsule path skips that.
    """

    def __init__(self, array: pa.Array) -> None:
        self._array = array

    def __arrow_c_array__(self, requested_schema: object = None) -> object:
        return self._array.__arrow_c_array__(requested_schema)


def split_lines(buf: bytes) -> tuple[pl.Series, np.ndarray]:
    """Every physical line of UTF-8 `buf` (line ends removed) and the byte offset of each line start."""
    arr = np.frombuffer(buf, dtype=np.uint8)
    ends = np.flatnonzero(arr == 10) + 1  # one past each "\n"
    if len(buf) and buf[-1:] != b"\n":
        ends = np.append(ends, len(buf))
    offsets = np.zeros(len(ends) + 1, dtype=np.int64)
    offsets[1:] = ends
    # Zero-copy: an Arrow string array over the file's bytes, one string per line.
    lines = pa.LargeStringArray.from_buffers(len(ends), pa.py_buffer(offsets), pa.py_buffer(buf))
    series = pl.Series("raw", _ArrowCapsule(lines))
    return _per_line(series, pl.col("raw").str.strip_suffix("\n").str.strip_suffix("\r")), offsets


def _per_line(lines: pl.Series, expr: pl.Expr) -> pl.Series:
    """`expr` over the lines as a lazy select: Polars splits that over its threads (2x on two
    cores), while eager Series methods and eager selects (`lines.str...`) run on one thread."""
    return lines.rename("raw").to_frame().lazy().select(expr.alias("raw")).collect().to_series()


def _csv_record_regex(n: int, delim: str) -> str:
    """A whole line that is exactly n RFC-4180 fields: quoted ("" inside) or bare (no quotes)."""
    d = re.escape(delim)
    field = rf'(?:"(?:[^"\r]|"")*"|[^"{d}\r]*)'
    return "^" + field + (d + field) * (n - 1) + "$"


def _keep_bytes(buf: bytes, offsets: np.ndarray, keep: np.ndarray) -> bytes:
    """The bytes of the kept lines (line ends included), cutting out runs of dropped lines."""
    dropped = np.flatnonzero(~keep)
    if len(dropped) == 0:
        return buf
    view = memoryview(buf)  # slices of a memoryview are not copies: join copies the bytes once
    parts, start = [], 0
    for i in dropped.tolist():  # few: the header, blank and malformed lines
        parts.append(view[start : offsets[i]])
        start = offsets[i + 1]
    parts.append(view[start:])
    return b"".join(parts)


def _empty_rejected() -> pl.DataFrame:
    return pl.DataFrame(schema={"line": pl.Int64, "reason": pl.String, "raw": pl.String})


def _names(fmt: FileFormat) -> list[str]:
    return [c or f"_skip{i}" for i, c in enumerate(fmt.columns)]


def _fields_frame(lines: list[int], rows: list[list[str]], names: list[str]) -> pl.DataFrame:
    data: dict[str, list] = {"line": lines}
    for j, name in enumerate(names):
        data[name] = [r[j] for r in rows]
    schema = {"line": pl.Int64} | {n: pl.String for n in names}
    return pl.DataFrame(data, schema=schema)


def _fallback_csv(bad: pl.DataFrame, fmt: FileFormat) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """Line-level parse of the lines the fast path refused; a quoted newline may join two lines."""
    n, names = len(fmt.columns), _names(fmt)
    ok_lines, ok_rows, rej, joined = [], [], [], 0
    items = list(zip(bad["line"].to_list(), bad["raw"].to_list(), strict=True))
    i = 0
    while i < len(items):
        line, text = items[i]
        step = 1
        if (
            text.count('"') % 2
            and i + 1 < len(items)
            and items[i + 1][0] == line + 1
            and items[i + 1][1].count('"') % 2
        ):
            # An odd number of quotes on this line and the next: one record with a newline inside a value.
            text = text + "\n" + items[i + 1][1]
            step = 2
        try:
            fields = next(csv.reader([text], delimiter=fmt.delimiter, strict=False))
        except (csv.Error, StopIteration):
            fields = None
        if fields is None:
            rej.append((line, REJECT_UNPARSEABLE, text))
        elif len(fields) != n:
            rej.append((line, REJECT_FIELDS, text))
        else:
            ok_lines.append(line)
            ok_rows.append(fields)
            joined += step - 1
        i += step
    rejected = pl.DataFrame(rej, schema=_empty_rejected().schema, orient="row")
    return _fields_frame(ok_lines, ok_rows, names), rejected, joined


def _read_csv(
    fmt: FileFormat, buf: bytes, lines: pl.Series, offsets: np.ndarray, blank: np.ndarray
):
    n, names = len(fmt.columns), _names(fmt)
    well_formed = _per_line(
        lines, pl.col("raw").str.contains(_csv_record_regex(n, fmt.delimiter)).fill_null(False)
    ).to_numpy()
    keep = well_formed & ~blank
    keep[0] = False  # the header
    fast = (
        pl.read_csv(
            _keep_bytes(buf, offsets, keep),
            has_header=False,
            separator=fmt.delimiter,
            quote_char='"',
            infer_schema=False,
            new_columns=names,
            raise_if_empty=False,
        )
        if keep.any()
        else pl.DataFrame(schema={c: pl.String for c in names})
    )
    fast = fast.with_columns(pl.Series("line", np.flatnonzero(keep) + 1, dtype=pl.Int64))
    refused = ~well_formed & ~blank
    refused[0] = False
    bad = pl.DataFrame(
        {"line": np.flatnonzero(refused) + 1, "raw": lines.filter(pl.Series(refused))}
    )
    slow, rejected, joined = _fallback_csv(bad, fmt)
    return fast, slow, rejected, joined


def _bx_values(parts: pl.Expr, names: list[str]) -> list[pl.Expr]:
    # \" is an escaped quote; a value ending in a lone backslash lost its quote to a broken escape.
    return [
        parts.list.get(j)
        .str.replace_all('\\"', '"', literal=True)
        .str.strip_suffix("\\")
        .alias(name)
        for j, name in enumerate(names)
    ]


def _fallback_bx(bad: pl.DataFrame, fmt: FileFormat) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Line-level parse of 2004-dump lines the split refused: a real CSV parser with backslash escapes."""
    n, names = len(fmt.columns), _names(fmt)
    ok_lines, ok_rows, rej = [], [], []
    for line, text in zip(bad["line"].to_list(), bad["raw"].to_list(), strict=True):
        try:
            fields = next(
                csv.reader([text], delimiter=";", quotechar='"', escapechar="\\", doublequote=False)
            )
        except (csv.Error, StopIteration):
            rej.append((line, REJECT_UNPARSEABLE, text))
            continue
        if len(fields) != n:
            rej.append((line, REJECT_FIELDS, text))
            continue
        ok_lines.append(line)
        ok_rows.append(["" if f == "NULL" else f for f in fields])
    rejected = pl.DataFrame(rej, schema=_empty_rejected().schema, orient="row")
    return _fields_frame(ok_lines, ok_rows, names), rejected


def _read_bx(fmt: FileFormat, lines: pl.Series, blank: np.ndarray):
    n, names = len(fmt.columns), _names(fmt)
    df = pl.DataFrame({"line": np.arange(1, len(lines) + 1, dtype=np.int64), "raw": lines})
    df = df.filter(pl.Series(~blank) & (pl.col("line") > 1))
    # Unquoted NULL (missing age) becomes an empty quoted value, so every value is quoted.
    norm = pl.col("raw")
    for _ in range(2):  # NULL;NULL overlaps: a second pass catches the other half
        norm = norm.str.replace_all(_NULL_TOKEN.pattern, '${1}""${2}')
    norm = (
        pl.when(pl.col("raw").str.contains("NULL", literal=True))
        .then(norm)
        .otherwise(pl.col("raw"))
    )
    df = df.with_columns(norm.alias("norm"))
    quoted = (
        pl.col("norm").str.starts_with('"')
        & pl.col("norm").str.ends_with('"')
        & (pl.col("norm").str.len_bytes() >= 2)
        & (pl.col("norm").str.count_matches('";"', literal=True) == n - 1)
    )
    bare = ~pl.col("norm").str.contains('"', literal=True) & (
        pl.col("norm").str.count_matches(";", literal=True) == n - 1
    )
    df = df.with_columns(quoted.alias("quoted"), bare.alias("bare"))
    inner = pl.col("norm").str.strip_prefix('"').str.strip_suffix('"').str.split('";"')
    fast_q = (
        df.filter("quoted")
        .select("line", inner.alias("parts"))
        .select("line", *_bx_values(pl.col("parts"), names))
    )
    fast_b = df.filter("bare").select("line", pl.col("norm").str.split(";").alias("parts"))
    fast_b = fast_b.select("line", *_bx_values(pl.col("parts"), names))
    bad = df.filter(~pl.col("quoted") & ~pl.col("bare")).select("line", "raw")
    slow, rejected = _fallback_bx(bad, fmt)
    fast = fast_q.merge_sorted(fast_b, key="line") if fast_b.height else fast_q
    return fast, slow, rejected


def _read_parquet(fmt: FileFormat, data: bytes) -> ReadResult:
    """A Parquet input as the same string columns a CSV gives, so cleaning is one code path.

    Typed columns become their text (18 -> "18", 18.0 -> "18.0", NaN -> "NaN", null stays null),
    which is what the cleaning rules already read from CSVs. `line` is the 1-based row number and
    a rejected row's `raw` is the row as JSON (its original column names and values).
    """
    try:
        table = pl.read_parquet(io.BytesIO(data))
        picked = [(table.columns[i], c) for i, c in enumerate(fmt.columns) if c]
        typed = table.select([pl.col(src).alias(canon) for src, canon in picked])
        frame = typed.select(pl.col(c).cast(pl.String) for _, c in picked)
        raw = table.select(
            pl.struct([pl.col(src) for src, _ in picked]).struct.json_encode().alias("raw")
        ).to_series()
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
        raise FormatError(
            f"cannot read {fmt.source} Parquet file: {str(exc).splitlines()[0][:120]}",
            where=str(fmt.path),
            hint="Columns must be plain values (text or numbers), not lists or structs",
        ) from None
    frame = frame.with_columns(pl.int_range(1, frame.height + 1, dtype=pl.Int64).alias("line"))
    frame = frame.select("line", *[c for _, c in picked])
    return ReadResult(frame, _empty_rejected(), raw, frame.height, 0)


def read_file(fmt: FileFormat, data: bytes) -> ReadResult:
    """Parse the bytes of one file recognised as `fmt` into string columns named canonically."""
    if fmt.dialect == "parquet":
        return _read_parquet(fmt, data)
    buf = data if fmt.encoding == "utf-8" else decode(data, fmt.encoding).encode("utf-8")
    lines, offsets = split_lines(buf)
    blank = _per_line(lines, pl.col("raw").str.strip_chars().str.len_bytes() == 0).to_numpy()
    joined = 0
    if fmt.dialect == "bx":
        fast, slow, rejected = _read_bx(fmt, lines, blank)
    else:
        fast, slow, rejected, joined = _read_csv(fmt, buf, lines, offsets, blank)
    keep = ["line", *[c for c in fmt.columns if c]]
    # Both parts are in line order: a linear merge keeps file order without sorting 1M rows.
    frame = (
        fast.select(keep).merge_sorted(slow.select(keep), key="line")
        if slow.height
        else fast.select(keep)
    )
    n_blank = int(blank[1:].sum())
    records = len(lines) - 1 - n_blank - joined
    return ReadResult(frame, rejected, lines, records, n_blank)
