"""Pure figure builders and tables for the models page: Polars frames in, go.Figure / frames out."""

from __future__ import annotations

import json
from typing import Any

import plotly.graph_objects as go
import polars as pl

from app.figures.facets import empty_figure

SAMPLED_NOTE = "sampled: 1 held-out book among 99 random unread ones (the prototype's protocol)"


def metric_label(key: str) -> str:
    """A column label for a metrics-JSON key; sampled metrics are labelled as such."""
    name, _, k = key.partition("@")
    sampled = name.startswith("sampled_")
    base = name.removeprefix("sampled_").replace("_", " ")
    nice = {
        "hr": "HR",
        "hit": "HitRate",
        "ndcg": "NDCG",
        "recall": "Recall",
        "precision": "Precision",
        "coverage": "Coverage",
        "hit rate": "HitRate",
    }.get(base, base.capitalize())
    return (
        f"{nice}@{k}" + (" (sampled)" if sampled else "")
        if k
        else nice + (" (sampled)" if sampled else "")
    )


def _metric_order(key: str) -> tuple[int, str, int]:
    name, _, k = key.partition("@")
    first = ["recall", "ndcg", "precision", "hit", "hit_rate", "coverage"]
    base = name.removeprefix("sampled_")
    rank = first.index(base) if base in first else len(first)
    return (
        1 if name.startswith("sampled_") else 0,
        f"{rank:02d}{base}",
        int(k) if k.isdigit() else 0,
    )


def leaderboard(runs: pl.DataFrame) -> tuple[pl.DataFrame, list[str]]:
    """One row per run with its final metrics as columns (full-ranking first, sampled last).

    Returns the table and the metric keys in column order."""
    rows: list[dict[str, Any]] = []
    keys: set[str] = set()
    for r in runs.iter_rows(named=True):
        metrics = json.loads(r["metrics"]) if r.get("metrics") else {}
        flat = {
            k: v
            for k, v in metrics.items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        }
        keys |= set(flat)
        rows.append(
            {
                "run_id": r["run_id"],
                "model": r["model"],
                "current": bool(r["is_current"]),
                "finished_at": str(r["finished_at"] or "")[:16],
                **flat,
            }
        )
    order = sorted(keys, key=_metric_order)
    if not rows:
        return pl.DataFrame(schema={"run_id": pl.String, "model": pl.String}), []
    table = pl.DataFrame(rows, infer_schema_length=None)
    sort_key = "recall@20" if "recall@20" in order else (order[0] if order else "model")
    return table.select(["model", "run_id", "current", "finished_at", *order]).sort(
        [sort_key, "model"], descending=[True, False], nulls_last=True
    ), order


def learning_curves(curves: pl.DataFrame, runs: dict[str, str] | None = None) -> go.Figure:
    """Training loss and validation metrics per epoch, one colour per run (two stacked panels)."""
    if curves.is_empty():
        return empty_figure("no per-epoch history for these runs (training-free models have none)")
    from plotly.subplots import make_subplots

    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.1,
        subplot_titles=("training loss", "validation metrics"),
    )
    palette = ["#2c3e50", "#18bc9c", "#e74c3c", "#3498db", "#f39c12", "#8e44ad", "#7f8c8d"]
    names = runs or {}
    for i, run_id in enumerate(curves["run_id"].unique(maintain_order=True).to_list()):
        color = palette[i % len(palette)]
        part = curves.filter(pl.col("run_id") == run_id)
        label = names.get(run_id, run_id)
        loss = part.filter(pl.col("metric") == "loss").sort("epoch")
        if loss.height:
            fig.add_trace(
                go.Scatter(
                    x=loss["epoch"].to_list(),
                    y=loss["value"].to_list(),
                    mode="lines+markers",
                    name=f"{label} loss",
                    line={"color": color},
                ),
                row=1,
                col=1,
            )
        other = part.filter((pl.col("metric") != "loss") & (pl.col("part") != "train"))
        for j, ((metric, k), grp) in enumerate(
            other.group_by(["metric", "k"], maintain_order=True)
        ):
            grp = grp.sort("epoch")
            key = f"{metric}@{k}" if k is not None else metric
            fig.add_trace(
                go.Scatter(
                    x=grp["epoch"].to_list(),
                    y=grp["value"].to_list(),
                    mode="lines+markers",
                    name=f"{label} {metric_label(key)}",
                    line={"color": color, "dash": ["solid", "dash", "dot", "dashdot"][j % 4]},
                ),
                row=2,
                col=1,
            )
    fig.update_xaxes(title="epoch", row=2, col=1)
    if curves["epoch"].max() <= 30:
        fig.update_xaxes(dtick=1)  # whole epochs only
    fig.update_layout(
        height=620,
        margin={"l": 50, "r": 20, "t": 60, "b": 40},
        plot_bgcolor="white",
        legend={"orientation": "h", "y": -0.12},
        title="Learning curves",
    )
    fig.update_xaxes(gridcolor="#eef1f4")
    fig.update_yaxes(gridcolor="#eef1f4")
    return fig


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested JSON as dotted keys (for side-by-side parameter tables)."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): value}


def compare(a: dict[str, Any], b: dict[str, Any]) -> pl.DataFrame:
    """Two runs side by side: key, value in A, value in B, whether they differ."""
    fa, fb = flatten(a), flatten(b)
    keys = sorted(set(fa) | set(fb))

    def show(v: Any) -> str:
        return (
            ""
            if v is None
            else (
                f"{v:.4g}"
                if isinstance(v, float)
                else json.dumps(v)
                if isinstance(v, list | dict)
                else str(v)
            )
        )

    return pl.DataFrame(
        {
            "key": keys,
            "a": [show(fa.get(k)) for k in keys],
            "b": [show(fb.get(k)) for k in keys],
            "differs": [fa.get(k) != fb.get(k) for k in keys],
        },
        schema={"key": pl.String, "a": pl.String, "b": pl.String, "differs": pl.Boolean},
    )


def tuning_trials(trials: pl.DataFrame, metric: str = "value") -> go.Figure:
    """Validation value per trial (complete trials as dots, the best so far as a step line);
    pruned and failed trials are marked along the bottom."""
    if trials.is_empty():
        return empty_figure("no trials stored for this study")
    done = trials.filter(pl.col("state") == "complete").sort("number")
    fig = go.Figure()
    if done.height:
        best = done["value"].cum_max()
        fig.add_trace(
            go.Scatter(
                x=done["number"].to_list(),
                y=done["value"].to_list(),
                mode="markers",
                name="trial",
                marker={"color": "#3498db", "size": 8},
                customdata=done["params"].to_list(),
                hovertemplate="trial %{x}: %{y:.4f}<br>%{customdata}<extra></extra>",
            )
        )
        fig.add_trace(
            go.Scatter(
                x=done["number"].to_list(),
                y=best.to_list(),
                mode="lines",
                line={"shape": "hv", "color": "#18bc9c"},
                name="best so far",
            )
        )
    other = trials.filter(pl.col("state") != "complete")
    if other.height:
        floor = float(done["value"].min()) if done.height else 0.0
        fig.add_trace(
            go.Scatter(
                x=other["number"].to_list(),
                y=[floor] * other.height,
                mode="markers",
                name="pruned / failed",
                marker={"symbol": "x", "color": "#e74c3c", "size": 8},
                text=other["state"].to_list(),
                hovertemplate="trial %{x}: %{text}<extra></extra>",
            )
        )
    fig.update_layout(
        xaxis_title="trial",
        yaxis_title=f"{metric} on valid",
        margin={"l": 50, "r": 10, "t": 10, "b": 40},
        height=320,
        legend={"orientation": "h", "y": 1.1},
    )
    return fig


def parameter_importance(importance: dict[str, float]) -> go.Figure:
    """fANOVA importance of each tuned parameter, largest on top."""
    if not importance:
        return empty_figure("importance needs at least 4 complete trials of 2+ parameters")
    items = sorted(importance.items(), key=lambda kv: kv[1])
    fig = go.Figure(
        go.Bar(
            x=[v for _, v in items],
            y=[k for k, _ in items],
            orientation="h",
            marker={"color": "#2c3e50"},
            hovertemplate="%{y}: %{x:.2f}<extra></extra>",
        )
    )
    fig.update_layout(
        xaxis_title="importance (fANOVA, sums to 1)",
        margin={"l": 110, "r": 10, "t": 10, "b": 40},
        height=320,
    )
    return fig
