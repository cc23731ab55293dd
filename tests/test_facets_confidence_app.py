"""Label confidence in the Similar books and Reader pages (issue 12): a low-confidence facet is a
pale chip, a confident one a plain chip with its confidence in the tooltip, one without a
confidence row (LLM labels) a plain chip without one."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from app_fixtures import build_app_db, isbn_of

from engine import db
from engine.enrich import zeroshot
from engine.query import LOW_CONFIDENCE, Store


def text_of(component: Any) -> str:
    from plotly.utils import PlotlyJSONEncoder

    return json.dumps(component, cls=PlotlyJSONEncoder, ensure_ascii=False)


@pytest.fixture(scope="module")
def conf_db(tmp_path_factory) -> Path:
    path = build_app_db(tmp_path_factory.mktemp("confdb") / "conf.duckdb")
    con = db.connect(path)
    rows = [
        (isbn_of(0, i), "genre", "Mystery", 0.12 if i % 2 else 0.81)  # odd books: pale Mystery
        for i in range(12)
    ] + [(isbn_of(0, 0), "tone", "dark books", 0.2)]  # a raw label mapped to the facet "Dark"
    db.replace_table(
        con,
        "book_label_confidence",
        pl.DataFrame(rows, schema=["isbn", "field", "label", "confidence"], orient="row"),
    )
    con.close()
    return path


def test_store_gives_facet_confidence_through_the_facet_mapping(conf_db: Path) -> None:
    store = Store(conf_db)
    try:
        got = store.facet_confidence([isbn_of(0, 0), isbn_of(0, 1), isbn_of(1, 0)])
    finally:
        store.close()
    assert got[isbn_of(0, 0)] == {
        ("genre", "Mystery"): pytest.approx(0.81),
        ("tone", "Dark"): pytest.approx(0.2),
    }
    assert got[isbn_of(0, 1)] == {("genre", "Mystery"): pytest.approx(0.12)}
    assert isbn_of(1, 0) not in got  # no confidence rows: shown as confident
    assert LOW_CONFIDENCE == zeroshot.LOW_CONFIDENCE


def test_similar_and_reader_pages_show_low_confidence_labels_pale(conf_db: Path) -> None:
    from app.main import create_app

    create_app(conf_db)
    similar = importlib.import_module("pages.similar")
    reader = importlib.import_module("pages.reader")
    info, collab, content, _ = similar.render(isbn_of(0, 1), None)
    head = text_of(info)
    assert "facet-low" in head and "confidence 0.12 (low)" in head
    confident, *_ = similar.render(isbn_of(0, 0), None)
    assert "facet-low" in text_of(confident)  # its tone "Dark" is at 0.20
    assert "confidence 0.81" in text_of(confident)
    romance, *_ = similar.render(isbn_of(1, 0), None)
    assert "facet-low" not in text_of(romance) and "confidence" not in text_of(romance)
    # neighbours of a Mystery book are Mystery books: half of them pale
    shown = text_of(content) + text_of(collab)
    assert "facet-low" in shown and "confidence 0.81" in shown
    _, recs, _, _ = reader.render("1", None, None, None, None)  # reader 1 reads Mystery
    assert "confidence 0." in text_of(recs)  # its recommendations are Mystery books, all scored
