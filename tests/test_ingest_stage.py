"""The ingest stage end to end: exact counts and values per format, rejects, idempotence, atomicity, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import ingest_fixtures as fx
import polars as pl
import pytest

from engine import db, pipeline
from engine.cli import main
from engine.ingest import IngestSettings, run
from engine.ingest import clean as ingest_clean

SETTINGS = IngestSettings(max_year=2024)


def _ingest(tmp_path: Path, paths: dict[str, Path], settings: IngestSettings = SETTINGS, **kw):
    con = db.connect(tmp_path / "bookrec.duckdb")
    result = run(con, settings, paths["books"], paths["ratings"], paths["users"], **kw)
    return con, result


def _table(con, name: str, order: str) -> pl.DataFrame:
    return db.fetch(con, f"SELECT * FROM {name} ORDER BY {order}")


def test_bx2004_dump_end_to_end(tmp_path: Path) -> None:
    con, res = _ingest(tmp_path, fx.write_bx(tmp_path / "in"))
    assert not res.skipped
    c = res.counts
    assert (c["books"]["read"], c["books"]["loaded"], c["books"]["blank_lines"]) == (13, 11, 1)
    assert c["books"]["rejected"] == {"empty isbn": 1, "wrong field count": 1}
    assert c["books"]["years_out_of_range"] == 3  # 0, 2030, 999
    assert c["books"]["invalid_isbn"] == 1  # 1234567890
    assert c["books"]["html_unescaped"] == 1 and c["books"]["mojibake_repaired"] == 1
    assert (c["users"]["read"], c["users"]["loaded"], c["users"]["ages_out_of_range"]) == (10, 9, 3)
    assert c["ratings"]["read"] == 16 and c["ratings"]["loaded"] == 8
    assert c["ratings"]["duplicates"] == 3
    assert (c["ratings"]["unknown_book"], c["ratings"]["unknown_user"]) == (1, 1)
    assert c["rejected_total"] == 2 + 1 + 5

    books = {r["isbn"]: r for r in _table(con, "books", "isbn").iter_rows(named=True)}
    assert set(books) == {
        "0195153448",
        "0002005018",
        "0060973129",
        "0374157065",
        "078946697X",
        "0425176428",
        "3257224281",
        "039592720X",
        "1234567890",
        "9780306406157",
        "2070408507",
    }
    assert books["0374157065"]["title"] == "Flu; the Story of the Great Influenza"
    assert books["0374157065"]["publisher"] == "Farrar Straus & Giroux"
    assert books["0425176428"]["title"] == 'What If?: The World\'s "Foremost" Historians'
    assert books["0060973129"]["author"] == "Carlo D\u2019Este"
    assert books["2070408507"]["author"] == "Antoine de Saint-Exup\u00e9ry"
    assert books["3257224281"]["year"] is None and books["039592720X"]["year"] is None
    assert (
        books["9780306406157"]["year"] == 1000 and books["9780306406157"]["isbn_kind"] == "isbn13"
    )
    assert books["1234567890"]["isbn_valid"] is False and books["0195153448"]["isbn_valid"] is True
    assert books["0002005018"]["image_url_s"] is None

    users = _table(con, "users", "user_id").rows()
    assert users == [
        (1, "nyc", "new york", "usa", None),
        (2, "stockton", "california", "usa", 18),
        (3, "moscow", "yukon territory", "russia", None),
        (4, "porto", "v.n.gaia", "portugal", 17),
        (5, "farnborough", "hants", "united kingdom", None),
        (6, "santa monica", "california", "usa", None),
        (7, "k\u00f6ln", None, "germany", 5),
        (9, "berlin", None, None, 110),
        (10, "rio de janeiro", "rio de janeiro", "brazil", None),
    ]
    assert _table(con, "ratings", "user_id, isbn").rows() == [
        (1, "0195153448", 0),
        (2, "0002005018", 6),  # explicit 6 beats the earlier implicit 0
        (2, "0195153448", 8),
        (3, "0002005018", 9),  # 7 then 9 then 0: the last explicit one
        (4, "039592720X", 5),  # ISBN normalised to match books
        (5, "9999999999", 3),  # unknown book: kept
        (7, "0374157065", 10),
        (99, "0195153448", 4),  # unknown user: kept
    ]
    rejected = db.fetch(
        con,
        "SELECT source, line, reason, raw FROM rejected_rows WHERE source = 'ratings' ORDER BY line",
    )
    assert dict(zip(rejected["line"], rejected["reason"], strict=True)) == fx.BX_RATINGS_REJECTED
    assert rejected.filter(pl.col("line") == 13)["raw"].item() == '"6";"0195153448";"11"'
    books_rej = db.fetch(
        con, "SELECT line, reason FROM rejected_rows WHERE source = 'books' ORDER BY line"
    ).rows()
    assert books_rej == [
        (fx.BX_BOOKS_EMPTY_ISBN_LINE, "empty isbn"),
        (fx.BX_BOOKS_BROKEN_LINE, "wrong field count"),
    ]
    assert db.fetch(
        con, "SELECT line, reason FROM rejected_rows WHERE source = 'users'"
    ).rows() == [(fx.BX_USERS_BAD_ID_LINE, "user id not an integer")]


def test_kaggle_edition_end_to_end(tmp_path: Path) -> None:
    con, res = _ingest(tmp_path, fx.write_kaggle(tmp_path / "in"))
    c = res.counts
    assert (c["books"]["read"], c["books"]["loaded"], c["books"]["shifted_rows_repaired"]) == (
        9,
        8,
        1,
    )
    assert c["books"]["rejected"] == {"wrong field count": 1}
    assert (c["users"]["loaded"], c["ratings"]["loaded"], c["ratings"]["duplicates"]) == (5, 7, 1)
    assert (c["ratings"]["unknown_book"], c["ratings"]["unknown_user"]) == (0, 1)
    dk = db.fetch(con, "SELECT * FROM books WHERE isbn = '078946697X'").row(0, named=True)
    assert (
        dk["title"]
        == "DK Readers: Creating the X-Men, How It All Began (Level 4: Proficient Readers)"
    )
    assert (dk["author"], dk["year"], dk["publisher"]) == (
        "Michael Teitelbaum",
        2000,
        "DK Publishing Inc",
    )
    assert (dk["image_url_s"], dk["image_url_l"]) == ("http://s/2.jpg", "http://l/2.jpg")
    assert (
        db.fetch(con, "SELECT title FROM books WHERE isbn = '3257224281'").item()
        == "Die M\u00e4nner"
    )
    assert db.fetch(con, "SELECT age FROM users ORDER BY user_id").to_series().to_list() == [
        None,
        18,
        None,
        17,
        None,
    ]
    assert (
        db.fetch(con, "SELECT rating FROM ratings WHERE user_id = 2 AND isbn = '0195153448'").item()
        == 9
    )


def test_split_variant_end_to_end(tmp_path: Path) -> None:
    con, res = _ingest(tmp_path, fx.write_split(tmp_path / "in"))
    c = res.counts
    assert (c["books"]["read"], c["books"]["loaded"], c["books"]["duplicates"]) == (8, 7, 1)
    assert c["books"]["mojibake_repaired"] == 2 and c["users"]["html_unescaped"] == 2
    assert _table(con, "users", "user_id").rows() == [
        (8, "timmins", "ontario", "canada", None),
        (9, "germantown", "tennessee", "usa", None),
        (19, "weston", None, None, 14),
        (334, "jyv\u00e4skyl\u00e4", None, "finland", None),
        (12036, "zurich", None, "switzerland", None),
        (36656, "manila", None, "philippines", 28),
        (276113, "\u0141\u00f3d\u017a", "\u0142\u00f3dzkie", "poland", 21),
    ]
    titles = dict(db.fetch(con, "SELECT isbn, title FROM books").rows())
    assert titles["3492045642"] == "Querschüsse - Downsize This!"
    # '039592720x' and '039592720X' are one book once upper-cased; the later line wins.
    assert (
        db.fetch(con, "SELECT publisher FROM books WHERE isbn = '039592720X'").item()
        == "Houghton Mifflin Co."
    )
    assert db.fetch(con, "SELECT year FROM books WHERE isbn = '0446310786'").item() is None
    assert c["ratings"]["unknown_book"] == 0


def test_ingest_runs_records_files_formats_and_counts(tmp_path: Path) -> None:
    con, res = _ingest(tmp_path, fx.write_bx(tmp_path / "in"))
    row = db.query(con, "ingest_last_run").row(0, named=True)
    assert row["run_id"] == res.run_id and row["fingerprint"] == res.fingerprint
    files, counts = json.loads(row["files"]), json.loads(row["counts"])
    assert files["books"]["format"] == "bx2004" and files["books"]["encoding"] == "cp1252"
    assert files["books"]["delimiter"] == ";" and files["users"]["name"] == "BX-Users.csv"
    assert (
        files["ratings"]["sha256"]
        == pipeline.file_fingerprint(tmp_path / "in" / "BX-Book-Ratings.csv")["sha256"]
    )
    assert counts == res.counts
    assert db.fetch(con, "SELECT n_rejected_last_ingest FROM dataset_stats").item() == 8
    assert db.fetch(con, "SELECT count(DISTINCT run_id) FROM rejected_rows").item() == 1


def test_same_files_again_are_up_to_date_and_change_nothing(tmp_path: Path) -> None:
    paths = fx.write_kaggle(tmp_path / "in")
    con, first = _ingest(tmp_path, paths)
    before = {
        t: _table(con, t, "ALL")
        for t in ("books", "users", "ratings", "rejected_rows", "ingest_runs")
    }
    second = run(con, SETTINGS, paths["books"], paths["ratings"], paths["users"])
    assert second.skipped and second.fingerprint == first.fingerprint
    for table, frame in before.items():
        assert _table(con, table, "ALL").equals(frame), table
    # A changed setting or a changed file is new work.
    assert not run(
        con,
        IngestSettings(max_year=2024, min_age=10),
        paths["books"],
        paths["ratings"],
        paths["users"],
    ).skipped
    paths["ratings"].write_text(paths["ratings"].read_text() + "9,0195153448,1\n")
    again = run(
        con,
        IngestSettings(max_year=2024, min_age=10),
        paths["books"],
        paths["ratings"],
        paths["users"],
    )
    assert not again.skipped and again.counts["ratings"]["loaded"] == 8
    assert db.fetch(con, "SELECT count(*) FROM ingest_runs").item() == 3


def test_force_reloads_identical_data(tmp_path: Path) -> None:
    paths = fx.write_split(tmp_path / "in")
    con, first = _ingest(tmp_path, paths)
    books = _table(con, "books", "isbn")
    forced = run(con, SETTINGS, paths["books"], paths["ratings"], paths["users"], force=True)
    assert not forced.skipped and forced.run_id != first.run_id
    assert _table(con, "books", "isbn").equals(books)


def test_failure_mid_write_leaves_previous_data_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    con, first = _ingest(tmp_path, fx.write_split(tmp_path / "a"))
    before = {
        t: _table(con, t, "ALL")
        for t in ("books", "users", "ratings", "rejected_rows", "ingest_runs", "stage_runs")
    }
    real = db.replace_table

    def failing(con_, table, frame):
        if table == "ratings":  # books and users are already swapped in by now
            raise RuntimeError("disk on fire")
        return real(con_, table, frame)

    monkeypatch.setattr(db, "replace_table", failing)
    other = fx.write_bx(tmp_path / "b")
    with pytest.raises(RuntimeError, match="disk on fire"):
        run(con, SETTINGS, other["books"], other["ratings"], other["users"])
    for table, frame in before.items():
        assert _table(con, table, "ALL").equals(frame), table
    assert pipeline.last_run(con, "ingest").fingerprint == first.fingerprint
    monkeypatch.setattr(db, "replace_table", real)
    assert not run(con, SETTINGS, other["books"], other["ratings"], other["users"]).skipped
    assert db.fetch(con, "SELECT count(*) FROM books").item() == 11


def test_failure_while_preparing_rolls_back_tables_already_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # run() writes books and users while ratings are still being read and cleaned.
    con, first = _ingest(tmp_path, fx.write_split(tmp_path / "a"))
    before = {t: _table(con, t, "ALL") for t in ("books", "users", "ratings", "ingest_runs")}
    written: list[str] = []
    real = db.replace_table

    def recording(con_, table, frame):
        written.append(table)
        return real(con_, table, frame)

    def failing(frame):
        raise RuntimeError("cleaning crashed")

    monkeypatch.setattr(db, "replace_table", recording)
    monkeypatch.setattr(ingest_clean, "clean_ratings", failing)
    other = fx.write_bx(tmp_path / "b")
    with pytest.raises(RuntimeError, match="cleaning crashed"):
        run(con, SETTINGS, other["books"], other["ratings"], other["users"])
    assert written == ["books", "users"]
    for table, frame in before.items():
        assert _table(con, table, "ALL").equals(frame), table
    assert pipeline.last_run(con, "ingest").fingerprint == first.fingerprint


def test_ratings_are_unique_per_user_and_isbn(tmp_path: Path) -> None:
    con, _ = _ingest(tmp_path, fx.write_bx(tmp_path / "in"))
    assert (
        db.fetch(con, "SELECT count(*) - count(DISTINCT (user_id, isbn)) FROM ratings").item() == 0
    )


# ---------------------------------------------------------------- CLI


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_ingests_prints_a_summary_then_is_up_to_date(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = fx.write_bx(tmp_path / "in")
    args = [
        "ingest",
        "--books",
        str(p["books"]),
        "--ratings",
        str(p["ratings"]),
        "--users",
        str(p["users"]),
        "--db",
        str(tmp_path / "x.duckdb"),
    ]
    code, out, err = _cli(capsys, *args)
    assert code == 0, err
    assert (
        "bx2004" in out
        and "cp1252" in out
        and "wrong field count" in out
        and "rating out of range" in out
    )
    code, out, _ = _cli(capsys, *args)
    assert code == 0 and "up to date" in out
    code, out, _ = _cli(capsys, *args, "--force", "--format", "bx2004")
    assert code == 0 and "up to date" not in out


@pytest.mark.parametrize(
    ("problem", "message"),
    [
        ("missing", "books file not found"),
        ("empty", "books file is empty"),
        ("unknown", "no recognisable books header"),
        ("wrong-format", "looks like kaggle, not bx2004"),
    ],
)
def test_cli_bad_input_is_one_line_and_nonzero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], problem: str, message: str
) -> None:
    p = fx.write_kaggle(tmp_path / "in")
    books = tmp_path / "Books.csv"
    extra: list[str] = []
    if problem == "empty":
        books.write_bytes(b"")
    elif problem == "unknown":
        books.write_text("alpha;beta\n1;2\n")
    elif problem == "wrong-format":
        books = p["books"]
        extra = ["--format", "bx2004"]
    code, out, err = _cli(
        capsys,
        "ingest",
        "--books",
        str(books),
        "--ratings",
        str(p["ratings"]),
        "--users",
        str(p["users"]),
        "--db",
        str(tmp_path / "x.duckdb"),
        *extra,
    )
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("bookrec: error: ") and message in err
    assert "Traceback" not in err + out


def test_cli_error_in_a_real_process_has_no_traceback(tmp_path: Path) -> None:
    p = fx.write_kaggle(tmp_path / "in")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "engine.cli",
            "ingest",
            "--books",
            str(tmp_path / "nope.csv"),
            "--ratings",
            str(p["ratings"]),
            "--users",
            str(p["users"]),
            "--db",
            str(tmp_path / "x.duckdb"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert (
        proc.stderr.strip().count("\n") == 0
        and "not found" in proc.stderr
        and "Traceback" not in proc.stderr
    )


def test_settings_come_from_toml_env_and_flags(tmp_path: Path) -> None:
    from engine.config import load_settings
    from engine.errors import ConfigError

    toml = tmp_path / "bookrec.toml"
    toml.write_text('[ingest]\nmin_age = 10\nformat = "kaggle"\n')
    s = load_settings(
        IngestSettings,
        "ingest",
        {"format": "bx2004"},
        config_file=toml,
        environ={"BOOKREC_INGEST_MAX_AGE": "99"},
    )
    assert (s.min_age, s.max_age, s.format) == (10, 99, "bx2004")
    with pytest.raises(ConfigError):
        load_settings(IngestSettings, "ingest", {"format": "xml"}, config_file=toml, environ={})
