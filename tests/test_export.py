"""`bookrec export --format parquet`: every table out and back through read_parquet, unchanged."""

from __future__ import annotations

import json
import re
from pathlib import Path

import duckdb
import polars as pl
import pyarrow.dataset as pads
import pytest
from app_fixtures import build_app_db

from engine import db
from engine.cli import main
from engine.errors import ConfigError
from engine.export import CURRENT_RUN_TABLES, ExportSettings, export

OLD_RUN = "old-mf-run"


@pytest.fixture()
def source_db(tmp_path: Path) -> Path:
    """The dashboard fixture (books, ratings, facets, runs, embeddings) plus a run no longer current."""
    path = build_app_db(tmp_path / "src.duckdb")
    con = db.connect(path)
    with db.transaction(con):
        con.execute(
            "INSERT INTO model_runs (run_id, model, params, data_fingerprint, started_at, is_current)"
            " VALUES (?, 'mf', '{}', 'x', now(), false)",
            [OLD_RUN],
        )
        con.execute(
            "INSERT INTO item_embeddings SELECT ?, isbn, [1.0, 2.0] FROM books LIMIT 5", [OLD_RUN]
        )
        con.execute("INSERT INTO user_embeddings VALUES (?, 1, [0.5, 0.25])", [OLD_RUN])
    con.close()
    return path


def _checksum_sql(source: str, columns: list[str]) -> str:
    cols = ", ".join(f'"{c}"' for c in columns)
    return f"SELECT count(*) AS n, sum(hash(t)::HUGEINT) AS h FROM (SELECT {cols} FROM {source}) t"


def test_round_trip_through_read_parquet_keeps_every_row_and_value(
    source_db: Path, tmp_path: Path
) -> None:
    out = tmp_path / "export"
    con = db.connect(source_db, read_only=True)
    result = export(con, out, ExportSettings(buckets=4), database=source_db.name)
    manifest = json.loads((out / "manifest.json").read_text())
    tables = {t["name"]: t for t in manifest["tables"]}
    base = set(db.query(con, "export_tables")["table_name"])
    assert set(tables) == base and len(base) > 20  # every table, views left out
    assert result.rows == sum(t["rows"] for t in tables.values())
    assert not list(tmp_path.glob(".export.partial-*"))  # staging renamed into place

    reader = duckdb.connect()
    for name, t in tables.items():
        columns = [c["name"] for c in t["columns"]]
        where = (
            "WHERE run_id IN (SELECT run_id FROM model_runs WHERE is_current)"
            if name in CURRENT_RUN_TABLES
            else ""
        )
        want = con.sql(_checksum_sql(f'"{name}" {where}', columns)).fetchall()[0]
        files = [str(out / f) for f in t["files"]]
        assert files and all(Path(f).is_file() for f in files), name
        parquet = f"read_parquet({files!r}, hive_partitioning = true, hive_types_autocast = false)"
        got = reader.sql(_checksum_sql(parquet, columns)).fetchall()[0]
        assert got == want, name
        assert t["rows"] == want[0], name
        # types survive (SMALLINT years, TINYINT ratings, FLOAT[] embeddings, JSON, TIMESTAMP)
        types = {r[0]: r[1] for r in reader.sql(f"DESCRIBE SELECT * FROM {parquet}").fetchall()}
        partitioned = set(t["partition_by"])
        for c in t["columns"]:
            if c["name"] not in partitioned:
                # Parquet has no fixed-size list: FLOAT[384] comes back as the list FLOAT[]
                assert types[c["name"]] == re.sub(r"\[\d+\]$", "[]", c["type"]), (name, c)
        # a second, independent reader (Arrow, as Spark and Trino read Hive layouts)
        arrow = pads.dataset(str(out / t["path"]), format="parquet", partitioning="hive")
        assert arrow.count_rows() == t["rows"], name

    ratings = tables["ratings"]
    assert ratings["partition_by"] == ["bucket"] and ratings["rows"] > 0
    assert {Path(f).parent.name for f in ratings["files"]} <= {f"bucket={b}" for b in range(4)}
    bucket_of = reader.sql(
        "SELECT DISTINCT bucket, user_id % 4 AS expect FROM read_parquet("
        f"'{out}/ratings/*/*.parquet', hive_partitioning = true)"
    ).pl()
    assert (bucket_of["bucket"] == bucket_of["expect"]).all()
    emb = tables["item_embeddings"]
    current = set(
        db.fetch(
            con,
            "SELECT DISTINCT run_id FROM item_embeddings JOIN model_runs USING (run_id) WHERE is_current",
        )["run_id"]
    )
    assert len(current) >= 2
    assert {Path(f).parent.name for f in emb["files"]} == {f"run_id={r}" for r in current}
    assert OLD_RUN not in json.dumps(emb) and emb["filter"].startswith("current runs")
    assert tables["books"]["files"] == ["books/data_0.parquet"]
    con.close()


def test_refuses_a_non_empty_directory_unless_overwrite_of_a_previous_export(
    source_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    args = ["export", "--db", str(source_db), "--format", "parquet", "--out", str(out)]
    assert main(args) == ConfigError.exit_code
    err = capsys.readouterr().err
    assert err.startswith("bookrec: error: output directory is not empty") and "--overwrite" in err
    assert err.count("\n") == 1
    assert main([*args, "--overwrite"]) == ConfigError.exit_code  # not an export: never deleted
    assert "holds no bookrec manifest.json" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "mine"

    fresh = tmp_path / "fresh"
    args = ["export", "--db", str(source_db), "--out", str(fresh)]
    assert main(args) == 0
    assert "Parquet files" in capsys.readouterr().out
    first = json.loads((fresh / "manifest.json").read_text())["created_at"]
    (fresh / "stale.parquet").write_text("left over")
    assert main(args) == ConfigError.exit_code
    assert main([*args, "--overwrite"]) == 0
    assert not (fresh / "stale.parquet").exists()  # the old export replaced as a whole
    assert json.loads((fresh / "manifest.json").read_text())["created_at"] >= first


def test_an_empty_partitioned_table_still_has_a_readable_file(tmp_path: Path) -> None:
    con = db.connect(tmp_path / "empty.duckdb")
    result = export(con, tmp_path / "x")
    tables = {t["name"]: t for t in result.tables}
    for name in ("ratings", "item_embeddings", "split_interactions"):
        t = tables[name]
        assert t["rows"] == 0 and t["partition_by"] == [] and len(t["files"]) == 1
        frame = pl.read_parquet(tmp_path / "x" / t["files"][0])
        assert frame.columns == [c["name"] for c in t["columns"]]
