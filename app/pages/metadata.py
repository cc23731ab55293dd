"""Metadata explorer: facet co-occurrence for any two fields, the 3D surface, facet sizes, raw labels."""

from __future__ import annotations

from typing import Any

import dash
import dash_bootstrap_components as dbc
from dash import Input, Output, callback, dash_table, dcc, html

from app import data, params
from app.components import empty_state, graph, section
from app.figures import facets as figs

dash.register_page(__name__, path="/metadata", name="Metadata", title="bookrec · metadata", order=4)

DEFAULTS = {"a": "genre", "b": "tone", "x": "genre", "y": "audience", "z": "tone", "f": "genre"}


def _field(value: Any, default: str) -> str:
    text = params.one(value)
    return text if text in data.FIELDS else default


def _select(cid: str, value: str) -> dbc.Select:
    return dbc.Select(
        id=cid, options=[{"label": f, "value": f} for f in data.FIELDS], value=value, size="sm"
    )


def render(a: Any, b: Any, x: Any, y: Any, z: Any, f: Any) -> tuple[Any, ...]:
    """The metadata callback as a plain function: heatmap, surface, sizes, label table rows, URL."""
    fields = {k: _field(v, DEFAULTS[k]) for k, v in zip("abxyzf", (a, b, x, y, z, f), strict=True)}
    store = data.store()
    heat = figs.cooccurrence_heatmap(store.cooccurrence(fields["a"], fields["b"]))
    triples = store.facet_triples(fields["x"], fields["y"], fields["z"])
    surface = figs.facet_surface(triples, axes=(fields["x"], fields["y"], fields["z"]))
    sizes = figs.facet_distribution(store.facet_counts(), fields["f"])
    labels = store.facet_labels(fields["f"]).to_dicts()
    url = params.search({k: v for k, v in fields.items() if v != DEFAULTS[k]})
    return heat, surface, sizes, labels, url


def layout(**query: Any) -> html.Div:
    """The metadata page (?a=&b= heatmap fields, x=&y=&z= surface fields, f= field for sizes/labels)."""
    head = [
        html.H2("Metadata explorer", className="page-title"),
        html.P(
            "How the enrichment's facets relate: which labels go together (lift > 1: more often than chance), "
            "how audience and genre shape tone, and which raw labels each facet gathers.",
            className="page-lead",
        ),
    ]
    gap = data.missing("data", "facets")
    if gap:
        return html.Div([*head, empty_state(*gap)])
    v = {k: _field(query.get(k), d) for k, d in DEFAULTS.items()}

    def pick(label: str, cid: str, val):
        return dbc.Col(
            [dbc.Label(label, html_for=cid, className="small"), _select(cid, val)], width="auto"
        )

    return html.Div(
        [
            *head,
            dcc.Location(id="meta-url", refresh=False),
            section(
                "Co-occurrence",
                dbc.Row(
                    [pick("rows", "meta-a", v["a"]), pick("columns", "meta-b", v["b"])],
                    className="mb-2",
                ),
                dcc.Loading(graph({}, "meta-heatmap"), type="dot"),
            ),
            section(
                "3D surface",
                dbc.Row(
                    [
                        pick("x", "meta-x", v["x"]),
                        pick("y", "meta-y", v["y"]),
                        pick("z (share of books)", "meta-z", v["z"]),
                    ],
                    className="mb-2",
                ),
                dcc.Loading(graph({}, "meta-surface"), type="dot"),
                subtitle="For each x × y cell: the share of its books carrying a z label (the menu picks the label).",
            ),
            section(
                "Facet sizes and raw labels",
                dbc.Row([pick("field", "meta-f", v["f"])], className="mb-2"),
                dbc.Row(
                    [
                        dbc.Col(dcc.Loading(graph({}, "meta-sizes"), type="dot"), lg=6),
                        dbc.Col(
                            dash_table.DataTable(
                                id="meta-labels",
                                columns=[
                                    {"name": "raw label", "id": "raw_label"},
                                    {"name": "facet", "id": "label"},
                                    {"name": "cluster", "id": "cluster_id"},
                                ],
                                data=[],
                                page_size=15,
                                sort_action="native",
                                filter_action="native",
                                style_cell={"fontSize": "0.85rem", "textAlign": "left"},
                                style_header={"fontWeight": "600"},
                                style_table={"overflowX": "auto"},
                            ),
                            lg=6,
                        ),
                    ]
                ),
            ),
        ]
    )


callback(
    Output("meta-heatmap", "figure"),
    Output("meta-surface", "figure"),
    Output("meta-sizes", "figure"),
    Output("meta-labels", "data"),
    Output("meta-url", "search"),
    *[Input(f"meta-{k}", "value") for k in "abxyzf"],
)(render)
