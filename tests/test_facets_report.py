"""Facet figures (pure builders), the static HTML report and the facets/content/report CLI."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import plotly.graph_objects as go
import polars as pl
import pytest

import engine.facets
from app.figures import facets as figs
from engine import db
from engine.cli import main

PAIRS = pl.DataFrame(
    {
        "field_a": ["genre"] * 3,
        "label_a": ["Mystery", "Mystery", "Romance"],
        "field_b": ["tone"] * 3,
        "label_b": ["Dark", "Light", "Light"],
        "n_books": [8, 1, 6],
        "n_a": [9, 9, 6],
        "n_b": [8, 7, 7],
        "p_b_given_a": [0.9, 0.1, 1.0],
        "lift": [2.0, 0.25, 1.5],
    }
)


def test_cooccurrence_heatmap_shows_log2_lift() -> None:
    fig = figs.cooccurrence_heatmap(PAIRS)
    hm = fig.data[0]
    assert (
        isinstance(hm, go.Heatmap)
        and list(hm.y) == ["Mystery", "Romance"]
        and list(hm.x) == ["Dark", "Light"]
    )
    assert list(hm.z[0]) == [1.0, math.log2(0.25)]
    assert hm.z[1][0] is None  # Romance never Dark
    assert "genre × tone" in fig.layout.title.text


def test_distribution_surface_alignment_and_empty() -> None:
    counts = pl.DataFrame(
        {
            "field": ["genre", "genre", "tone"],
            "label": ["A", "B", "Dark"],
            "n_books": [3, 9, 4],
            "share": [0.25, 0.75, 1.0],
            "n_raw_labels": [1, 2, 1],
            "rank_in_field": [2, 1, 1],
        }
    )
    bar = figs.facet_distribution(counts, "genre").data[0]
    assert list(bar.y) == ["B", "A"] and list(bar.x) == [9, 3]
    triples = pl.DataFrame(
        {
            "x_label": ["Mystery", "Mystery", "Romance"],
            "y_label": ["Adults"] * 3,
            "z_label": ["Dark", "Light", "Light"],
            "n_books": [3, 1, 5],
        }
    )
    surf = figs.facet_surface(triples)
    assert [t.name for t in surf.data] == ["Light", "Dark"] and [t.visible for t in surf.data] == [
        True,
        False,
    ]
    # x axis: Romance (5 books), Mystery (4); 3 of the 4 (Mystery, Adults) books are Dark
    assert list(surf.data[1].z[0]) == [0.0, pytest.approx(0.75)]
    assert len(surf.layout.updatemenus[0].buttons) == 2
    align = PAIRS.select("field_a", "label_a", "field_b", "label_b", "n_books", "lift")
    align = pl.concat([align, align.with_columns(pl.lit("audience").alias("field_b"))])
    hm = figs.alignment_heatmap(align).data[0]
    assert list(hm.x) == ["audience: Dark", "audience: Light", "tone: Dark", "tone: Light"]
    empty = figs.cooccurrence_heatmap(PAIRS.clear())
    assert not empty.data and empty.layout.annotations[0].text.startswith("no ")


@pytest.fixture()
def stage_db(tmp_path: Path, fake_encoder, monkeypatch) -> Path:
    """A database with a little enrichment; the CLI's encoder replaced by the fast fake one."""
    monkeypatch.setattr(engine.facets, "default_encoder", lambda *a, **k: fake_encoder)
    path = tmp_path / "cli.duckdb"
    con = db.connect(path)
    rows = [
        {
            "isbn": f"b{i}",
            "title": f"T{i}",
            "genre": [["Mystery", "Romance", "Poetry"][i % 3]],
            "tone": [["Dark", "Light"][i % 2]],
            "audience": ["Adults"],
            "source": "t",
            "prompt_version": "1",
        }
        for i in range(30)
    ]
    with db.transaction(con):
        db.replace_table(con, "books", pl.DataFrame(rows).select("isbn", "title"))
        db.replace_table(con, "book_enrichment", pl.DataFrame(rows).drop("title"))
    con.close()
    return path


def test_cli_facets_content_report(stage_db: Path, tmp_path: Path, capsys) -> None:
    assert main(["facets", "--db", str(stage_db), "--k-genre", "2"]) == 0
    out = capsys.readouterr().out
    assert "genre: 3 raw labels (3 distinct) on 30 books -> 2 facets (fixed" in out
    assert main(["facets", "--db", str(stage_db), "--k-genre", "2"]) == 0
    assert "up to date" in capsys.readouterr().out
    assert main(["content", "--db", str(stage_db)]) == 0
    assert "30 encoded" in capsys.readouterr().out
    assert main(["report", "--db", str(stage_db), "--out", str(tmp_path / "rep")]) == 0
    html = (tmp_path / "rep" / "facets.html").read_text()
    assert (
        html.count("plotly") > 10
        and "Co-occurrence: genre × tone" in html
        and "Distribution: audience" in html
    )


def test_cli_user_errors_are_one_line(tmp_path: Path, capsys) -> None:
    path = tmp_path / "empty.duckdb"
    assert main(["facets", "--db", str(path)]) == 4
    err = capsys.readouterr().err
    assert err.startswith("bookrec: error: book_enrichment is empty") and err.count("\n") == 1
    assert main(["report", "--db", str(path), "--out", str(tmp_path / "r")]) == 4
    assert "Run `bookrec facets` first" in capsys.readouterr().err


def test_engine_never_imports_plotly() -> None:
    code = (
        "import sys, engine.cli, engine.facets, engine.facets.content, engine.facets.coldstart;"
        "print('plotly' in sys.modules, 'dash' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "False False"


def test_report_and_figures_never_import_torch() -> None:
    code = "import sys, app.report, app.figures.facets; print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "False"
