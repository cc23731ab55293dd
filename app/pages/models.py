"""Models: leaderboard of runs (full ranking; sampled metric labelled), learning curves, two runs side by side."""

from __future__ import annotations

import json
from typing import Any

import dash
import dash_bootstrap_components as dbc
import polars as pl
from dash import Input, Output, callback, dash_table, dcc, html

from app import data, params
from app.components import empty_state, graph, section
from app.figures import models as figs

dash.register_page(__name__, path="/models", name="Models", title="bookrec · models", order=5)


def _runs() -> pl.DataFrame:
    return data.store().runs()


def _run_label(r: dict[str, Any]) -> str:
    return f"{r['model']} · {r['run_id']}" + (" (current)" if r["is_current"] else "")


def leaderboard_table(runs: pl.DataFrame) -> Any:
    """The leaderboard as a sortable DataTable (sampled metrics last, labelled)."""
    table, keys = figs.leaderboard(runs)
    if table.is_empty():
        return empty_state("No model runs yet", "Run `bookrec train --model lightgcn` first")
    columns = [
        {"name": "model", "id": "model"},
        {"name": "run", "id": "run_id"},
        {"name": "current", "id": "current"},
        {"name": "finished", "id": "finished_at"},
    ]
    columns += [
        {"name": figs.metric_label(k), "id": k, "type": "numeric", "format": {"specifier": ".4f"}}
        for k in keys
    ]
    rows = table.with_columns(
        pl.col("current").cast(pl.String).replace({"true": "✓", "false": ""})
    ).to_dicts()
    return dash_table.DataTable(
        id="models-leaderboard",
        columns=columns,
        data=rows,
        sort_action="native",
        page_size=15,
        style_cell={"fontSize": "0.85rem", "padding": "4px 8px"},
        style_header={"fontWeight": "600", "whiteSpace": "normal"},
        style_table={"overflowX": "auto"},
        style_data_conditional=[
            {"if": {"column_id": k}, "backgroundColor": "#f4f6f8"}
            for k in keys
            if k.startswith("sampled_")
        ],
    )


def _side_by_side(runs: pl.DataFrame, a: str | None, b: str | None) -> Any:
    if not a or not b:
        return html.P("Pick two runs.", className="text-muted")
    by_id = {r["run_id"]: r for r in runs.iter_rows(named=True)}
    if a not in by_id or b not in by_id:
        return html.P("Unknown run id.", className="text-muted")

    def blob(r: dict[str, Any]) -> dict[str, Any]:
        return {
            "params": json.loads(r["params"] or "{}"),
            "metrics": json.loads(r["metrics"] or "{}"),
            "timings": json.loads(r["timings"] or "{}") if r.get("timings") else {},
            "data": {"split": r.get("split_id"), "fingerprint": r.get("data_fingerprint")},
        }

    diff = figs.compare(blob(by_id[a]), blob(by_id[b]))
    rows = [
        html.Tr(
            [html.Td(r["key"]), html.Td(r["a"]), html.Td(r["b"])],
            className="diff" if r["differs"] else None,
        )
        for r in diff.iter_rows(named=True)
    ]
    return dbc.Table(
        [
            html.Thead(
                html.Tr(
                    [
                        html.Th("key"),
                        html.Th(by_id[a]["model"] + " · A"),
                        html.Th(by_id[b]["model"] + " · B"),
                    ]
                )
            ),
            html.Tbody(rows),
        ],
        size="sm",
        bordered=True,
        className="params-table bg-white",
    )


def render(curve_runs: Any, a: Any, b: Any) -> tuple[Any, Any, str]:
    """The models callback as a plain function: learning curves, side-by-side table, URL."""
    runs = _runs()
    known = set(runs["run_id"].to_list())
    picked = [r for r in params.many(curve_runs) if r in known]
    names = {r["run_id"]: r["model"] for r in runs.iter_rows(named=True)}
    curves = (
        figs.learning_curves(data.store().run_curves(picked), names)
        if picked
        else figs.learning_curves(pl.DataFrame())
    )
    a, b = params.one(a), params.one(b)
    url = params.search({"run": picked, "a": a, "b": b})
    return curves, _side_by_side(runs, a, b), url


def _study_label(r: dict[str, Any]) -> str:
    best = f"best {r['best_value']:.4f}" if r["best_value"] is not None else "no complete trial"
    return f"{r['model']} · {r['metric']} · {r['n_trials']} trials · {best} · {r['tune_id']}"


def render_tuning(tune_id: Any) -> tuple[Any, Any, Any]:
    """The tuning callback as a plain function: trials figure, importance figure, best settings."""
    studies = data.store().tuning_runs()
    known = {r["tune_id"]: r for r in studies.iter_rows(named=True)}
    picked = params.one(tune_id)
    if picked not in known:
        empty = figs.tuning_trials(pl.DataFrame())
        return empty, figs.parameter_importance({}), html.P("Pick a study.", className="text-muted")
    study = known[picked]
    trials = data.store().tuning_trials(picked)
    importance = json.loads(study["importance"]) if study["importance"] else {}
    best = json.loads(study["best_params"]) if study["best_params"] else {}
    rows = [html.Tr([html.Td(k), html.Td(str(v))]) for k, v in best.items()]
    table = dbc.Table(
        [html.Thead(html.Tr([html.Th("setting"), html.Th("best trial")])), html.Tbody(rows)],
        size="sm",
        bordered=True,
        className="params-table bg-white",
    )
    note = html.P(
        f"Trial {study['best_trial']} of {study['n_trials']} ({study['seconds']:.0f} s in trials), "
        f"judged on the split's validation part only; `bookrec train --model {study['model']} "
        "--tuned` uses these settings.",
        className="text-muted small",
    )
    return (
        figs.tuning_trials(trials, study["metric"]),
        figs.parameter_importance(importance),
        [
            table,
            note,
        ],
    )


def _tuning_section(query: dict[str, Any]) -> Any:
    studies = data.store().tuning_runs()
    if studies.is_empty():
        return section(
            "Tuning",
            empty_state(
                "No tuning studies yet",
                "Run `bookrec tune --model itemknn` (Optuna on the validation part)",
            ),
        )
    opts = [
        {"label": _study_label(r), "value": r["tune_id"]} for r in studies.iter_rows(named=True)
    ]
    wanted = params.one(query.get("tune"))
    value = wanted if wanted in {o["value"] for o in opts} else opts[0]["value"]
    return section(
        "Tuning",
        dcc.Dropdown(id="models-tune", options=opts, value=value, clearable=False),
        dbc.Row(
            [
                dbc.Col(dcc.Loading(graph({}, "models-tune-trials"), type="dot"), md=7),
                dbc.Col(dcc.Loading(graph({}, "models-tune-importance"), type="dot"), md=5),
            ]
        ),
        html.Div(id="models-tune-best"),
    )


def layout(**query: Any) -> html.Div:
    """The models page (?run=ID&run=ID for curves, a=ID&b=ID side by side)."""
    head = [
        html.H2("Models", className="page-title"),
        html.P(
            [
                "Every training run, judged by full ranking over all books (the reader's training books masked). ",
                html.Em(
                    figs.SAMPLED_NOTE.capitalize() + ": shown for comparison with the prototype, "
                    "and always labelled (sampled)."
                ),
            ],
            className="page-lead",
        ),
    ]
    runs = _runs()
    if runs.is_empty():
        return html.Div(
            [*head, empty_state("No model runs yet", "Run `bookrec train --model lightgcn` first")]
        )
    opts = [{"label": _run_label(r), "value": r["run_id"]} for r in runs.iter_rows(named=True)]
    ids = [o["value"] for o in opts]
    # current runs in the app's model order (LightGCN first, then by recall@20)
    current = (
        [r for r in data.store().models()["run_id"].to_list() if r in ids]
        if not data.missing("models")
        else []
    )
    current += [
        r for r in runs.filter(pl.col("is_current"))["run_id"].to_list() if r not in current
    ]
    picked = [r for r in params.many(query.get("run")) if r in ids] or current[:6]
    a = params.one(query.get("a"))
    b = params.one(query.get("b"))
    a = a if a in ids else (current[0] if current else ids[0])
    b = b if b in ids else next((i for i in (current[1:] + ids) if i != a), a)
    return html.Div(
        [
            *head,
            dcc.Location(id="models-url", refresh=False),
            section("Leaderboard", leaderboard_table(runs)),
            section(
                "Learning curves",
                dcc.Dropdown(id="models-curve-runs", options=opts, value=picked, multi=True),
                dcc.Loading(graph({}, "models-curves"), type="dot"),
            ),
            section(
                "Side by side",
                dbc.Row(
                    [
                        dbc.Col(
                            [
                                dbc.Label("Run A", html_for="models-a"),
                                dcc.Dropdown(id="models-a", options=opts, value=a),
                            ],
                            md=6,
                        ),
                        dbc.Col(
                            [
                                dbc.Label("Run B", html_for="models-b"),
                                dcc.Dropdown(id="models-b", options=opts, value=b),
                            ],
                            md=6,
                        ),
                    ],
                    className="mb-2",
                ),
                html.Div(id="models-compare"),
            ),
            _tuning_section(query),
        ]
    )


callback(
    Output("models-curves", "figure"),
    Output("models-compare", "children"),
    Output("models-url", "search"),
    Input("models-curve-runs", "value"),
    Input("models-a", "value"),
    Input("models-b", "value"),
)(render)

callback(
    Output("models-tune-trials", "figure"),
    Output("models-tune-importance", "figure"),
    Output("models-tune-best", "children"),
    Input("models-tune", "value"),
)(render_tuning)
