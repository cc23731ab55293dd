"""Overview: dataset numbers, ratings explicit vs implicit, long tails, readers, ingest runs, rejects."""

from __future__ import annotations

import json
from typing import Any

import dash
import dash_bootstrap_components as dbc
from dash import html

from app import data
from app.components import empty_state, graph, section, stat_card
from app.figures import overview as figs

dash.register_page(__name__, path="/", name="Overview", title="bookrec · overview", order=0)


def _numbers(stats: dict[str, Any]) -> dbc.Row:
    n = stats.get("n_ratings") or 0
    cards = [
        (
            "Books",
            stats.get("n_books"),
            f"{stats.get('n_books_invalid_isbn') or 0:,} with invalid ISBN checksum",
        ),
        ("Readers", stats.get("n_users"), f"{stats.get('n_active_users') or 0:,} rated something"),
        (
            "Interactions",
            n,
            f"{stats.get('n_explicit') or 0:,} explicit · {stats.get('n_implicit') or 0:,} implicit",
        ),
        (
            "Mean rating",
            round(stats["mean_explicit_rating"], 2) if stats.get("mean_explicit_rating") else None,
            "explicit ratings 1–10",
        ),
        (
            "Density",
            f"{stats['density']:.2e}" if stats.get("density") else None,
            "interactions / (readers × books)",
        ),
        ("Rejected rows", stats.get("n_rejected_last_ingest"), "in the last ingest"),
    ]
    return dbc.Row([dbc.Col(stat_card(*c), xs=6, md=4, xl=2, className="mb-3") for c in cards])


def _ingest_runs(runs: Any) -> Any:
    if runs.is_empty():
        return empty_state("No ingest runs recorded", "Run `bookrec ingest` first")
    rows = []
    for r in runs.iter_rows(named=True):
        counts = json.loads(r["counts"] or "{}")
        loaded = ", ".join(
            f"{k}: {v.get('loaded', '?'):,}"
            if isinstance(v, dict) and isinstance(v.get("loaded"), int)
            else f"{k}"
            for k, v in counts.items()
            if isinstance(v, dict)
        )
        rows.append(
            html.Tr(
                [html.Td(r["run_id"]), html.Td(str(r["finished_at"])[:19]), html.Td(loaded or "–")]
            )
        )
    return dbc.Table(
        [
            html.Thead(html.Tr([html.Th("run"), html.Th("finished"), html.Th("loaded")])),
            html.Tbody(rows),
        ],
        size="sm",
        striped=True,
        className="bg-white",
    )


def _rejected_table(rej: Any) -> Any:
    if rej.is_empty():
        return None
    rows = [
        html.Tr(
            [
                html.Td(r["source"]),
                html.Td(r["reason"]),
                html.Td(f"{r['n']:,}", className="num"),
                html.Td(html.Code((r["example"] or "")[:80])),
            ]
        )
        for r in rej.head(12).iter_rows(named=True)
    ]
    return dbc.Table(
        [
            html.Thead(
                html.Tr([html.Th("file"), html.Th("reason"), html.Th("rows"), html.Th("example")])
            ),
            html.Tbody(rows),
        ],
        size="sm",
        striped=True,
        className="bg-white small",
    )


def layout(**_query: Any) -> html.Div:
    """The overview page (everything is computed once per process, then served from memory)."""
    head = [
        html.H2("Overview", className="page-title"),
        html.P("What is in the database: books, readers and their ratings.", className="page-lead"),
    ]
    gap = data.missing("data")
    if gap:
        return html.Div([*head, empty_state(*gap)])
    store = data.store()
    rej = store.overview("rejected_by_reason")
    return html.Div(
        [
            *head,
            _numbers(store.dataset_stats()),
            dbc.Row(
                [
                    dbc.Col(
                        graph(
                            figs.rating_distribution(store.overview("rating_distribution")),
                            "ov-ratings",
                        ),
                        lg=6,
                    ),
                    dbc.Col(graph(figs.ages(store.overview("ages")), "ov-ages"), lg=6),
                ]
            ),
            dbc.Row(
                [
                    dbc.Col(
                        graph(figs.long_tail(store.activity("book"), what="book"), "ov-tail-books"),
                        lg=6,
                    ),
                    dbc.Col(
                        graph(
                            figs.long_tail(store.activity("user"), what="reader"), "ov-tail-readers"
                        ),
                        lg=6,
                    ),
                ]
            ),
            dbc.Row(
                [
                    dbc.Col(
                        graph(
                            figs.countries(store.overview("countries", limit=15)), "ov-countries"
                        ),
                        lg=6,
                    ),
                    dbc.Col(graph(figs.rejected(rej), "ov-rejected"), lg=6),
                ]
            ),
            dbc.Row(
                [
                    dbc.Col(
                        section(
                            "Last ingest runs", _ingest_runs(store.overview("ingest_runs", limit=5))
                        ),
                        lg=6,
                    ),
                    dbc.Col(
                        section(
                            "Rejected rows (last ingest)",
                            _rejected_table(rej)
                            or html.P("No rows were rejected.", className="text-muted"),
                        ),
                        lg=6,
                    ),
                ],
                className="mt-3",
            ),
        ]
    )
