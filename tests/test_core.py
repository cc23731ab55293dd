"""The foundation: settings precedence, DuckDB migrations/views/named queries, pipeline bookkeeping, CLI errors."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from engine import config, db, pipeline
from engine.cli import main
from engine.errors import ConfigError, DatabaseError


@dataclasses.dataclass(frozen=True)
class DemoSettings:
    size: int = 3
    rate: float = 0.5
    name: str = "x"
    flag: bool = False
    tags: tuple[str, ...] = ("a",)
    path: Path | None = None


def test_settings_precedence(tmp_path: Path) -> None:
    toml = tmp_path / "bookrec.toml"
    toml.write_text('[demo]\nsize = 5\nname = "toml"\ntags = ["p", "q"]\n')
    env = {"BOOKREC_DEMO_NAME": "env", "BOOKREC_DEMO_FLAG": "yes"}
    s = config.load_settings(
        DemoSettings, "demo", {"rate": "0.25", "size": None}, config_file=toml, environ=env
    )
    assert s == DemoSettings(size=5, rate=0.25, name="env", flag=True, tags=("p", "q"))
    s = config.load_settings(DemoSettings, "demo", {"name": "flag"}, config_file=toml, environ=env)
    assert s.name == "flag"


def test_settings_reject_bad_values(tmp_path: Path) -> None:
    toml = tmp_path / "bookrec.toml"
    toml.write_text("[demo]\nsize = 'many'\n")
    with pytest.raises(ConfigError, match="size"):
        config.load_settings(DemoSettings, "demo", config_file=toml, environ={})
    toml.write_text("[demo]\nsizes = 3\n")
    with pytest.raises(ConfigError, match="unknown setting"):
        config.load_settings(DemoSettings, "demo", config_file=toml, environ={})
    with pytest.raises(ConfigError):
        config.load_settings(
            DemoSettings, "demo", {"flag": "maybe"}, config_file=tmp_path / "none.toml", environ={}
        )


def test_migrations_are_recorded_and_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "x.duckdb"
    con = db.connect(path)
    versions = [
        r[0] for r in con.execute("SELECT version FROM schema_migrations ORDER BY 1").fetchall()
    ]
    files = sorted(p.name for p in (db.sql_dir() / "schema").glob("[0-9][0-9][0-9]_*.sql"))
    assert len(versions) == len(files) and versions == sorted(versions)
    con.close()
    assert db.migrate(db.connect(path)) == []  # nothing pending the second time


def test_read_only_connect_needs_existing_db(tmp_path: Path) -> None:
    with pytest.raises(DatabaseError, match="not found"):
        db.connect(tmp_path / "missing.duckdb", read_only=True)
    db.connect(tmp_path / "ok.duckdb").close()
    ro = db.connect(tmp_path / "ok.duckdb", read_only=True)
    assert db.fetch(ro, "SELECT n_books FROM dataset_stats").item() == 0


def test_not_a_database_is_one_clear_error(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.duckdb"
    bogus.write_text("this is not duckdb")
    with pytest.raises(DatabaseError):
        db.connect(bogus)


def test_named_queries_take_parameters_not_formatting(tmp_path: Path) -> None:
    con = db.connect(tmp_path / "x.duckdb")
    assert "$stage" in db.query_sql("stage_last_run")
    with pytest.raises(DatabaseError, match="no query named"):
        db.query_sql("no_such_query")
    hostile = "x'; DROP TABLE books; --"
    assert db.query(con, "stage_last_run", {"stage": hostile}).is_empty()
    assert db.fetch(con, "SELECT count(*) AS n FROM books").item() == 0  # books still there


def test_transaction_rolls_back_on_error(tmp_path: Path) -> None:
    con = db.connect(tmp_path / "x.duckdb")
    frame = pl.DataFrame({"user_id": [1, 2], "city": ["a", "b"]})
    with db.transaction(con):
        db.replace_table(con, "users", frame)
    with pytest.raises(RuntimeError), db.transaction(con):
        db.replace_table(con, "users", pl.DataFrame({"user_id": [3], "city": ["c"]}))
        raise RuntimeError("crash mid-stage")
    assert sorted(db.fetch(con, "SELECT user_id FROM users")["user_id"]) == [1, 2]


def test_pipeline_skips_unchanged_stage(tmp_path: Path) -> None:
    con = db.connect(tmp_path / "x.duckdb")
    f = tmp_path / "in.csv"
    f.write_text("a,b\n1,2\n")
    fp1 = pipeline.fingerprint({"m": 50}, {"in": pipeline.file_fingerprint(f)})
    assert not pipeline.is_current(con, "demo", fp1)
    with db.transaction(con):
        pipeline.record(con, "demo", fp1, {"m": 50}, {}, {"rows": 1})
    assert pipeline.is_current(con, "demo", fp1)
    assert pipeline.last_run(con, "demo").summary == {"rows": 1}
    assert pipeline.fingerprint({"m": 51}, {"in": pipeline.file_fingerprint(f)}) != fp1
    f.write_text("a,b\n1,3\n")
    assert pipeline.fingerprint({"m": 50}, {"in": pipeline.file_fingerprint(f)}) != fp1


def test_popular_books_view_and_macro_share_formula(tmp_path: Path) -> None:
    con = db.connect(tmp_path / "x.duckdb")
    with db.transaction(con):
        db.replace_table(
            con, "books", pl.DataFrame({"isbn": ["A", "B", "C"], "title": ["a", "b", "c"]})
        )
        db.replace_table(
            con,
            "ratings",
            pl.DataFrame(
                {
                    "user_id": [1, 2, 3, 1, 2],
                    "isbn": ["A", "A", "A", "B", "C"],
                    "rating": [10, 8, 0, 2, 0],
                }
            ),
        )
    c = (10 + 8 + 2) / 3
    view = db.fetch(con, "SELECT isbn, score, n_implicit FROM popular_books ORDER BY isbn")
    a_score = 2 / (2 + 50) * 9 + 50 / (2 + 50) * c
    assert view["score"].to_list() == pytest.approx([a_score, 1 / 51 * 2 + 50 / 51 * c, c])
    assert view["n_implicit"].to_list() == [1, 0, 1]
    m1 = db.fetch(con, "SELECT isbn FROM popular_books_m(m := 1) ORDER BY rank")["isbn"].to_list()
    assert m1 == ["A", "C", "B"]


def _bookrec(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True
    )


def test_cli_user_error_is_one_line_without_traceback(tmp_path: Path) -> None:
    proc = _bookrec("status", "--db", str(tmp_path / "absent.duckdb"))
    assert proc.returncode == DatabaseError.exit_code
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "database not found" in proc.stderr


def test_cli_main_returns_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["migrate", "--db", str(tmp_path / "x.duckdb")]) == 0
    assert main(["status", "--db", str(tmp_path / "x.duckdb")]) == 0
    assert "n_books" in capsys.readouterr().out
    assert main(["no-such-command"]) == 2


def test_sql_files_found_from_checkout() -> None:
    assert (db.sql_dir() / "schema" / "001_core.sql").is_file()
