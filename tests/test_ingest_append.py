"""`bookrec ingest --append`: upserts, idempotence, rejects, fingerprints, atomicity, CLI, Parquet."""

from __future__ import annotations

import json
from pathlib import Path

import ingest_fixtures as fx
import polars as pl
import pytest

from engine import db, pipeline, sample
from engine.cli import main
from engine.errors import StageNotReadyError
from engine.ingest import IngestSettings, run, run_append
from engine.models.split import SplitSettings, split_fingerprint

SETTINGS = IngestSettings(max_year=2024)
TABLES = ("books", "users", "ratings", "rejected_rows", "ingest_runs", "stage_runs")
RATINGS_HEADER = "User-ID,ISBN,Book-Rating"


def _table(con, name: str) -> pl.DataFrame:
    return db.fetch(con, f"SELECT * FROM {name} ORDER BY ALL")


def _snapshot(con) -> dict[str, pl.DataFrame]:
    return {t: _table(con, t) for t in TABLES}


def _ratings(con) -> dict[tuple[int, str], int]:
    rows = db.fetch(con, "SELECT user_id, isbn, rating FROM ratings").rows()
    return {(u, i): r for u, i, r in rows}


def _write(path: Path, *lines: str) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture()
def kaggle_db(tmp_path: Path):
    """The tiny Kaggle files ingested in full; yields (connection, first IngestResult)."""
    p = fx.write_kaggle(tmp_path / "in")
    con = db.connect(tmp_path / "bookrec.duckdb")
    first = run(con, SETTINGS, p["books"], p["ratings"], p["users"])
    yield con, first
    con.close()


def _day(tmp_path: Path, name: str = "day1.csv") -> Path:
    # Against KAGGLE_RATINGS: (1, 0195153448) 0 -> 7 updated; (2, 0002005018) 3 unchanged;
    # (9, 0971880107) new, twice in the file (explicit 3 beats the later implicit 0);
    # (2, 0195153448) 9 -> 0 keeps 9 (an implicit 0 never replaces an explicit rating);
    # (5, 0684823802) new, 4 then 6 (the latest line wins); one bad user id.
    return _write(
        tmp_path / name,
        RATINGS_HEADER,
        "1,0195153448,7",
        "2,0002005018,3",
        "9,0971880107,3",
        "9,0971880107,0",
        "2,0195153448,0",
        "5,0684823802,4",
        "5,0684823802,6",
        "abc,0195153448,5",
    )


def test_new_ratings_are_added_and_changed_ones_updated(kaggle_db, tmp_path: Path) -> None:
    con, _ = kaggle_db
    before = _ratings(con)
    res = run_append(con, SETTINGS, _day(tmp_path))
    assert not res.skipped and res.mode == "append"
    c = res.counts["ratings"]
    assert (c["read"], c["loaded"], c["duplicates"]) == (8, 5, 2)
    assert (c["added"], c["updated"], c["unchanged"], c["explicit_kept"]) == (2, 1, 1, 1)
    assert c["rejected"] == {"user id not an integer": 1}
    assert (c["unknown_book"], c["unknown_user"]) == (0, 1)  # user 9 is not in users
    assert (
        set(res.counts) == {"mode", "ratings", "rejected_total"} and res.counts["mode"] == "append"
    )
    expected = before | {(1, "0195153448"): 7, (9, "0971880107"): 3, (5, "0684823802"): 6}
    assert _ratings(con) == expected
    assert (
        db.fetch(con, "SELECT count(*) - count(DISTINCT (user_id, isbn)) FROM ratings").item() == 0
    )
    # books and users were not given: untouched
    assert db.fetch(con, "SELECT count(*) FROM books").item() == 8
    row = db.query(con, "ingest_last_run").row(0, named=True)
    assert row["run_id"] == res.run_id and json.loads(row["counts"]) == res.counts
    assert list(json.loads(row["files"])) == ["ratings"]


def test_same_file_twice_adds_nothing(kaggle_db, tmp_path: Path) -> None:
    con, _ = kaggle_db
    day = _day(tmp_path)
    first = run_append(con, SETTINGS, day)
    after = _snapshot(con)
    again = run_append(con, SETTINGS, day)
    assert again.skipped and again.fingerprint == first.fingerprint
    for name, frame in after.items():
        assert _table(con, name).equals(frame), name  # not even a run record
    # Without the SHA-256 check (--force, or the same rows in other bytes) nothing is added either.
    forced = run_append(con, SETTINGS, day, force=True)
    other_bytes = tmp_path / "day1_crlf.csv"
    other_bytes.write_bytes(day.read_bytes().replace(b"\n", b"\r\n"))
    copy = run_append(con, SETTINGS, other_bytes)
    for res in (forced, copy):
        c = res.counts["ratings"]
        assert not res.skipped and (c["added"], c["updated"]) == (0, 0)
        assert (c["unchanged"], c["explicit_kept"], c["loaded"]) == (4, 1, 5)
        assert res.fingerprint == first.fingerprint  # unchanged data: downstream stays current
    for name in ("books", "users", "ratings"):
        assert _table(con, name).equals(after[name]), name
    assert db.fetch(con, "SELECT count(*) FROM ingest_runs").item() == 4


def test_new_books_and_users_are_inserted_known_ones_kept(kaggle_db, tmp_path: Path) -> None:
    con, _ = kaggle_db
    old_book = db.fetch(con, "SELECT * FROM books WHERE isbn = '0195153448'")
    old_user = db.fetch(con, "SELECT * FROM users WHERE user_id = 2")
    books = _write(
        tmp_path / "books.csv",
        "ISBN,Book-Title,Book-Author,Year-Of-Publication,Publisher",
        "0195153448,A New Title For A Known Book,Someone Else,1990,Other",
        "0316769487,The Catcher in the Rye,J.D. Salinger,1991,Little Brown",
        "0316769487,The Catcher in the Rye (2nd),J.D. Salinger,1991,Little Brown",
        ",No ISBN,Anon,2000,Nobody",
    )
    users = _write(
        tmp_path / "users.csv",
        "User-ID,Location,Age",
        '2,"paris, ile de france, france",99',
        '9,"oslo, oslo, norway",33',
    )
    day = _write(tmp_path / "r.csv", RATINGS_HEADER, "9,0316769487,8", "10,0316769487,5")
    res = run_append(con, SETTINGS, day, books=books, users=users)
    b, u, r = res.counts["books"], res.counts["users"], res.counts["ratings"]
    assert (b["loaded"], b["added"], b["known"], b["duplicates"]) == (2, 1, 1, 1)
    assert b["rejected"] == {"empty isbn": 1}
    assert (u["loaded"], u["added"], u["known"]) == (2, 1, 1)
    assert (r["added"], r["unknown_book"], r["unknown_user"]) == (2, 0, 1)  # user 10 unknown
    assert db.fetch(con, "SELECT * FROM books WHERE isbn = '0195153448'").equals(old_book)
    assert db.fetch(con, "SELECT * FROM users WHERE user_id = 2").equals(old_user)
    new_book = db.fetch(con, "SELECT title, year, isbn_kind FROM books WHERE isbn = '0316769487'")
    assert new_book.rows() == [("The Catcher in the Rye (2nd)", 1991, "isbn10")]
    assert db.fetch(con, "SELECT city, country, age FROM users WHERE user_id = 9").rows() == [
        ("oslo", "norway", 33)
    ]
    assert list(res.files) == ["books", "users", "ratings"]


def test_rejects_are_appended_under_the_run_id_and_earlier_ones_kept(
    kaggle_db, tmp_path: Path
) -> None:
    con, first = kaggle_db
    earlier = db.fetch(con, "SELECT * FROM rejected_rows ORDER BY ALL")
    assert earlier.height == 1 and set(earlier["run_id"]) == {first.run_id}
    res = run_append(con, SETTINGS, _day(tmp_path))
    rows = db.fetch(con, "SELECT * FROM rejected_rows ORDER BY ALL")
    assert rows.filter(pl.col("run_id") == first.run_id).equals(earlier)
    mine = rows.filter(pl.col("run_id") == res.run_id).select("source", "line", "reason", "raw")
    assert mine.rows() == [("ratings", 9, "user id not an integer", "abc,0195153448,5")]
    assert db.fetch(con, "SELECT n_rejected_last_ingest FROM dataset_stats").item() == 1


def test_an_append_changes_the_stage_fingerprint_and_downstream_inputs(
    kaggle_db, tmp_path: Path
) -> None:
    con, first = kaggle_db
    split_before = split_fingerprint(con, SplitSettings())
    res = run_append(con, SETTINGS, _day(tmp_path))
    last = pipeline.last_run(con, "ingest")
    assert last.fingerprint == res.fingerprint != first.fingerprint
    assert last.inputs["previous"] == first.fingerprint
    assert last.inputs["append"]["ratings"]["name"] == "day1.csv"
    assert last.summary["added"] == {"ratings": 2} and last.summary["mode"] == "append"
    assert split_fingerprint(con, SplitSettings()) != split_before  # split and train redo
    # A second, different day builds on the first: a new fingerprint again.
    day2 = _write(tmp_path / "day2.csv", RATINGS_HEADER, "6,0195153448,2")
    assert run_append(con, SETTINGS, day2).fingerprint not in {first.fingerprint, res.fingerprint}
    # The full ingest replaces everything, and its own files are no longer "up to date".
    p = fx.write_kaggle(tmp_path / "in")
    full = run(con, SETTINGS, p["books"], p["ratings"], p["users"])
    assert not full.skipped and (6, "0195153448") not in _ratings(con)
    # day1 was applied before that full ingest, so it counts as new again.
    assert not run_append(con, SETTINGS, _day(tmp_path)).skipped


def test_append_of_the_rest_of_a_file_equals_ingesting_it_whole(tmp_path: Path) -> None:
    files = sample.write(sample.generate("small", 5), tmp_path / "s")
    lines = files["ratings"].read_text(encoding="utf-8").splitlines()
    cut = len(lines) * 2 // 3
    head = _write(tmp_path / "head.csv", *lines[:cut])
    tail = _write(tmp_path / "tail.csv", lines[0], *lines[cut:])
    whole = db.connect(tmp_path / "whole.duckdb")
    run(whole, SETTINGS, files["books"], files["ratings"], files["users"])
    con = db.connect(tmp_path / "parts.duckdb")
    run(con, SETTINGS, files["books"], head, files["users"])
    res = run_append(con, SETTINGS, tail)
    assert res.counts["ratings"]["added"] > 5000
    for name in ("books", "users", "ratings"):
        assert _table(con, name).equals(_table(whole, name)), name


def test_a_failure_mid_append_rolls_everything_back(
    kaggle_db, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    con, first = kaggle_db
    before = _snapshot(con)
    real = db.execute
    done: list[str] = []

    def failing(con_, name, params=None):
        if name == "ingest_append_ratings_insert":  # books, users inserted; ratings updated
            raise RuntimeError("disk on fire")
        done.append(name)
        return real(con_, name, params)

    monkeypatch.setattr(db, "execute", failing)
    books = _write(
        tmp_path / "b.csv", "ISBN,Book-Title,Book-Author", "0316769487,Catcher,J.D. Salinger"
    )
    users = _write(tmp_path / "u.csv", "User-ID,Location,Age", '9,"oslo, oslo, norway",33')
    with pytest.raises(RuntimeError, match="disk on fire"):
        run_append(con, SETTINGS, _day(tmp_path), books=books, users=users)
    assert done[-3:] == [
        "ingest_append_books_insert",
        "ingest_append_users_insert",
        "ingest_append_ratings_update",
    ]
    for name, frame in before.items():
        assert _table(con, name).equals(frame), name
    assert pipeline.last_run(con, "ingest").fingerprint == first.fingerprint
    monkeypatch.setattr(db, "execute", real)
    res = run_append(con, SETTINGS, _day(tmp_path), books=books, users=users)
    assert not res.skipped and res.counts["ratings"]["added"] == 2  # not "already applied"


def test_append_without_an_ingest_is_a_clear_error(tmp_path: Path) -> None:
    con = db.connect(tmp_path / "empty.duckdb")
    with pytest.raises(StageNotReadyError, match="no ingest yet"):
        run_append(con, SETTINGS, _day(tmp_path))
    assert db.fetch(con, "SELECT count(*) FROM ingest_runs").item() == 0


def test_parquet_ratings_and_books_can_be_appended(kaggle_db, tmp_path: Path) -> None:
    con, _ = kaggle_db
    ratings = tmp_path / "day.parquet"
    pl.DataFrame(
        {
            "User-ID": [1, 7, 7],
            "ISBN": ["0195153448", "0316769487", "0316769487"],
            "Book-Rating": [7, 2, 11],
        },
        schema_overrides={"Book-Rating": pl.Int8},
    ).write_parquet(ratings)
    books = tmp_path / "books.parquet"
    pl.DataFrame({"ISBN": ["0316769487"], "Book-Title": ["Catcher"]}).write_parquet(books)
    res = run_append(con, SETTINGS, ratings, books=books)
    c = res.counts["ratings"]
    assert (c["loaded"], c["added"], c["updated"], c["rejected"]) == (
        2,
        1,
        1,
        {"rating out of range 0..10": 1},
    )
    assert res.files["ratings"]["format"] == "parquet" and res.counts["books"]["added"] == 1
    assert _ratings(con)[(1, "0195153448")] == 7 and _ratings(con)[(7, "0316769487")] == 2
    raw = db.fetch(con, "SELECT raw FROM rejected_rows WHERE line = 3 AND source = 'ratings'")
    assert json.loads(raw.item())["Book-Rating"] == 11  # the row as JSON


# ---------------------------------------------------------------- CLI


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_append_prints_upsert_counts_then_nothing_changed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = fx.write_kaggle(tmp_path / "in")
    dbp = str(tmp_path / "x.duckdb")
    full = ["ingest", "--books", str(p["books"]), "--ratings", str(p["ratings"])]
    assert _cli(capsys, *full, "--users", str(p["users"]), "--db", dbp)[0] == 0
    append = ["ingest", "--append", "--ratings", str(_day(tmp_path)), "--db", dbp]
    code, out, err = _cli(capsys, *append)
    assert code == 0, err
    assert all(w in out for w in ("ingest --append", "added", "updated", "unchanged", "known"))
    assert "implicit 0 kept the existing explicit rating" in out and "appended to" in out
    assert "books" not in out.split("cleaning")[0]  # only the ratings file was given
    code, out, _ = _cli(capsys, *append)
    assert code == 0 and "already applied; nothing changed" in out
    code, out, _ = _cli(capsys, *append, "--force")
    assert code == 0 and "already applied" not in out and "unchanged" in out


def test_cli_append_without_an_ingest_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["ingest", "--append", "--ratings", str(_day(tmp_path))]
    code, out, err = _cli(capsys, *args, "--db", str(tmp_path / "new.duckdb"))
    assert code == StageNotReadyError.exit_code == 4
    assert err.startswith("bookrec: error: nothing to append to") and err.count("\n") == 1
    assert "new.duckdb" in err and "bookrec ingest --books" in err
    assert "Traceback" not in out + err


def test_cli_without_append_still_needs_books_and_users(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = fx.write_kaggle(tmp_path / "in")
    args = ["ingest", "--ratings", str(p["ratings"]), "--books", str(p["books"])]
    code, out, err = _cli(capsys, *args, "--db", str(tmp_path / "x.duckdb"))
    assert code == 2 and "Missing option --users (required unless --append)" in err
    assert "Traceback" not in out + err
    assert not (tmp_path / "x.duckdb").exists()  # refused before opening anything
