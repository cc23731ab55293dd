"""`bookrec ingest` from Parquet: the same tables, cleaning, rejects and run records as from CSV."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from engine import db, sample
from engine.cli import main
from engine.errors import FormatError, InputFileError
from engine.ingest import IngestSettings, formats, read, run

SETTINGS = IngestSettings(max_year=2024)
# Kaggle's header names: the Parquet files use the CSVs' columns.
HEADERS = {
    "isbn": "ISBN",
    "title": "Book-Title",
    "author": "Book-Author",
    "year": "Year-Of-Publication",
    "publisher": "Publisher",
    "image_url_s": "Image-URL-S",
    "image_url_m": "Image-URL-M",
    "image_url_l": "Image-URL-L",
    "user_id": "User-ID",
    "rating": "Book-Rating",
    "location": "Location",
    "age": "Age",
}
READER_REASONS = {read.REJECT_FIELDS, read.REJECT_UNPARSEABLE}  # lines a CSV reader cannot split


def _tables(con) -> dict[str, pl.DataFrame]:
    return {
        "books": db.fetch(con, "SELECT * FROM books ORDER BY isbn"),
        "users": db.fetch(con, "SELECT * FROM users ORDER BY user_id"),
        "ratings": db.fetch(con, "SELECT * FROM ratings ORDER BY user_id, isbn"),
    }


def _csv_as_parquet(src: str, csv: Path, out: Path) -> Path:
    """The records of a CSV (every value as its text, as a CSV export to Parquet would hold them)."""
    data = formats.strip_bom(formats.load_bytes(src, csv))
    frame = read.read_file(formats.sniff(src, csv, data), data).frame.drop("line")
    frame.rename({c: HEADERS[c] for c in frame.columns}).write_parquet(out)
    return out


def test_ingest_from_parquet_gives_the_same_tables_as_from_csv(tmp_path: Path) -> None:
    csv = sample.write(sample.generate("small", 3), tmp_path / "csv")
    pq = {
        src: _csv_as_parquet(src, csv[name], tmp_path / f"{name}.parquet")
        for src, name in (("books", "books"), ("users", "users"), ("ratings", "ratings"))
    }
    con_csv = db.connect(tmp_path / "csv.duckdb")
    from_csv = run(con_csv, SETTINGS, csv["books"], csv["ratings"], csv["users"])
    con_pq = db.connect(tmp_path / "pq.duckdb")
    from_pq = run(con_pq, SETTINGS, pq["books"], pq["ratings"], pq["users"])

    a, b = _tables(con_csv), _tables(con_pq)
    for name in a:
        assert a[name].height > 1000 or name == "books" and a[name].height > 500
        assert a[name].equals(b[name]), name  # same cleaning: ISBNs, years, ages, mojibake, ...
    for src in ("books", "users", "ratings"):
        c, p = from_csv.counts[src], from_pq.counts[src]
        assert p["loaded"] == c["loaded"]
        assert p["rejected"] == {k: v for k, v in c["rejected"].items() if k not in READER_REASONS}
        assert from_pq.files[src]["format"] == "parquet"
    rejected = db.fetch(con_pq, "SELECT * FROM rejected_rows ORDER BY source, line")
    bad_user = rejected.filter(pl.col("raw").str.contains("12a45"))
    assert bad_user.height == 1 and json.loads(bad_user["raw"][0])["User-ID"] == "12a45"
    run_row = db.fetch(con_pq, "SELECT files, counts FROM ingest_runs").row(0, named=True)
    assert json.loads(run_row["files"])["ratings"]["dialect"] == "parquet"


def test_typed_parquet_columns_are_cleaned_like_their_csv_text(tmp_path: Path) -> None:
    books = pl.DataFrame(
        {
            "ISBN": ["0195153448", "0002005018", "034545104x"],
            "Book-Title": ["Classical Mythology", "Clara Callan", "Caf&amp;e"],
            "Book-Author": ["Mark P. O. Morford", None, "X"],
            "Year-Of-Publication": [2002, 0, 2030],
            "Publisher": ["Oxford", "HarperFlamingo", "Pub"],
        },
        schema_overrides={"Year-Of-Publication": pl.Int16},
    )
    users = pl.DataFrame(
        {
            "User-ID": [1, 2, 3, 4],
            "Location": ["nyc, new york, usa", "stockton, california, usa", "n/a, n/a, n/a", "x"],
            "Age": [18.0, None, float("nan"), 244.0],
        }
    )
    ratings = pl.DataFrame(
        {
            "User-ID": [1, 2, 2, 3],
            "ISBN": ["0195153448"] * 2 + ["034545104X", "0002005018"],
            "Book-Rating": [0, 5, 11, 8],
        },
        schema_overrides={"Book-Rating": pl.Int8},
    )
    paths = {}
    for name, frame in (("books", books), ("users", users), ("ratings", ratings)):
        paths[name] = tmp_path / f"{name}.parquet"
        frame.write_parquet(paths[name])
        frame.with_columns(pl.all().cast(pl.String)).write_csv(tmp_path / f"{name}.csv")
    con_pq = db.connect(tmp_path / "pq.duckdb")
    run(con_pq, SETTINGS, paths["books"], paths["ratings"], paths["users"])
    con_csv = db.connect(tmp_path / "csv.duckdb")
    run(con_csv, SETTINGS, *(tmp_path / f"{n}.csv" for n in ("books", "ratings", "users")))
    a, b = _tables(con_csv), _tables(con_pq)
    for name in a:
        assert a[name].equals(b[name]), name
    got = b["users"].select("user_id", "age").rows()
    assert got == [(1, 18), (2, None), (3, None), (4, None)]
    assert b["books"]["year"].to_list() == [None, 2002, None]  # 0 and 2030 out of range
    assert "034545104X" in b["books"]["isbn"].to_list()  # upper-cased as from CSV
    rej = db.fetch(con_pq, "SELECT source, line, reason FROM rejected_rows").rows()
    assert rej == [("ratings", 3, "rating out of range 0..10")]  # row 3 of the file, 1-based


def test_bad_parquet_inputs_get_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "ratings.parquet"
    pl.DataFrame({"User-ID": [1], "ISBN": ["0195153448"], "Book-Rating": [5]}).write_parquet(good)
    users = tmp_path / "users.parquet"
    pl.DataFrame({"User-ID": [1], "Age": [20]}).write_parquet(users)

    no_title = tmp_path / "no_title.parquet"
    pl.DataFrame({"ISBN": ["0195153448"], "Name": ["x"]}).write_parquet(no_title)
    with pytest.raises(FormatError, match="no recognisable books columns in Parquet"):
        formats.sniff("books", no_title, no_title.read_bytes())

    empty = tmp_path / "empty.parquet"
    pl.DataFrame(schema={"ISBN": pl.String, "Book-Title": pl.String}).write_parquet(empty)
    with pytest.raises(InputFileError, match="has no rows"):
        formats.sniff("books", empty, empty.read_bytes())

    torn = tmp_path / "torn.parquet"
    torn.write_bytes(good.read_bytes()[:40])
    nested = tmp_path / "nested.parquet"
    pl.DataFrame({"ISBN": ["0195153448"], "Book-Title": [["a", "b"]]}).write_parquet(nested)
    for bad, what in ((torn, "cannot read books Parquet file"), (nested, "cannot read books")):
        db_path = tmp_path / f"{bad.stem}.duckdb"
        args = ["ingest", "--books", str(bad), "--ratings", str(good), "--users", str(users)]
        assert main([*args, "--db", str(db_path)]) == FormatError.exit_code
        err = capsys.readouterr().err
        assert err.startswith(f"bookrec: error: {what}") and err.count("\n") == 1, err
        assert "Traceback" not in err
        con = db.connect(db_path)
        assert db.fetch(con, "SELECT count(*) AS n FROM books").item() == 0  # nothing written
        con.close()
