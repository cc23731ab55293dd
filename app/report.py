"""Static HTML facets report (`bookrec report --out DIR`), drawn with app.figures.facets."""

from __future__ import annotations

import html
from pathlib import Path

import duckdb
import plotly.graph_objects as go
import plotly.io as pio
import polars as pl

from app.figures import facets as figs
from engine.facets import FIELDS, report_data


def build_figures(data: dict[str, pl.DataFrame]) -> list[tuple[str, go.Figure]]:
    """(section title, figure) pairs in report order, from engine.facets.report_data()."""
    out: list[tuple[str, go.Figure]] = [
        ("Cluster alignment across fields", figs.alignment_heatmap(data["alignment"]))
    ]
    out.append(("Genre × audience → tone", figs.facet_surface(data["triples"])))
    for key, frame in data.items():
        if key.startswith("pair:"):
            _, a, b = key.split(":")
            out.append((f"Co-occurrence: {a} × {b}", figs.cooccurrence_heatmap(frame)))
    for field in FIELDS:
        out.append((f"Distribution: {field}", figs.facet_distribution(data["counts"], field)))
    return out


def _runs_table(runs: pl.DataFrame) -> str:
    cols = ["field", "n_books", "n_raw", "n_keys", "k", "k_source", "silhouette", "model"]
    head = "".join(f"<th>{c}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(r[c]))}</td>" for c in cols) + "</tr>"
        for r in runs.iter_rows(named=True)
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(v: object) -> str:
    return f"{v:.3f}" if isinstance(v, float) else "" if v is None else str(v)


def render(data: dict[str, pl.DataFrame]) -> str:
    """The report as one HTML page (plotly.js inlined once, so it opens offline)."""
    parts = []
    for i, (title, fig) in enumerate(build_figures(data)):
        div = pio.to_html(fig, full_html=False, include_plotlyjs="inline" if i == 0 else False)
        parts.append(f"<section><h2>{html.escape(title)}</h2>{div}</section>")
    style = (
        "body{font-family:sans-serif;max-width:1200px;margin:auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>bookrec facets report</title>"
        f"<style>{style}</style></head><body><h1>bookrec facets report</h1>"
        f"<h2>Clustering per field</h2>{_runs_table(data['runs'])}{''.join(parts)}</body></html>"
    )


def write_report(con: duckdb.DuckDBPyConnection, out_dir: Path) -> Path:
    """Write DIR/facets.html from the database's facet tables; returns the file path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "facets.html"
    path.write_text(render(report_data(con)), encoding="utf-8")
    return path
