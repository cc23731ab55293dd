"""Pure figure builders for the overview page: Polars frames in, go.Figure out."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import polars as pl

from app.figures.facets import empty_figure

EXPLICIT, IMPLICIT = "#2c3e50", "#18bc9c"


def _style(fig: go.Figure, title: str, height: int = 340) -> go.Figure:
    fig.update_layout(
        title=title,
        height=height,
        margin={"l": 50, "r": 20, "t": 50, "b": 45},
        plot_bgcolor="white",
        paper_bgcolor="white",
        bargap=0.15,
    )
    fig.update_xaxes(gridcolor="#eef1f4")
    fig.update_yaxes(gridcolor="#eef1f4")
    return fig


def rating_distribution(counts: pl.DataFrame) -> go.Figure:
    """Bars of interactions per rating value: 0 = implicit (read, not rated), 1-10 explicit."""
    if counts.is_empty():
        return empty_figure("no ratings yet")
    implicit = counts.filter(pl.col("rating") == 0)
    explicit = counts.filter(pl.col("rating") > 0)
    fig = go.Figure(
        [
            go.Bar(
                x=["implicit (0)"] * implicit.height,
                y=implicit["n"].to_list(),
                name="implicit",
                marker_color=IMPLICIT,
                hovertemplate="implicit: %{y:,}<extra></extra>",
            ),
            go.Bar(
                x=[str(r) for r in explicit["rating"]],
                y=explicit["n"].to_list(),
                name="explicit 1–10",
                marker_color=EXPLICIT,
                hovertemplate="rating %{x}: %{y:,}<extra></extra>",
            ),
        ]
    )
    fig.update_xaxes(
        type="category",
        categoryorder="array",
        categoryarray=["implicit (0)"] + [str(i) for i in range(1, 11)],
        title="rating",
    )
    fig.update_yaxes(title="interactions")
    return _style(fig, "Ratings: implicit vs explicit")


def long_tail(activity: pl.DataFrame, *, what: str = "book", points: int = 400) -> go.Figure:
    """Rank vs interactions on log-log axes, from (n, items) = how many items have exactly n.

    The curve is rebuilt from the counts (items sorted by n, descending), then thinned to about
    `points` log-spaced ranks, so 300k books plot as a few hundred points."""
    if activity.is_empty():
        return empty_figure(f"no {what} activity yet")
    act = activity.sort("n", descending=True)
    n = act["n"].to_numpy()
    items = act["items"].to_numpy()
    last_rank = np.cumsum(items)  # rank of the last item with each n
    total = int(last_rank[-1])
    ranks = np.unique(np.geomspace(1, total, num=min(points, total)).round().astype(np.int64))
    values = n[np.searchsorted(last_rank, ranks, side="left")]
    top = int(np.ceil(total * 0.2))
    inside = np.clip(top - (last_rank - items), 0, items)  # items of each group within the top 20%
    share = float((n * inside).sum() / (n * items).sum())
    fig = go.Figure(
        go.Scatter(
            x=ranks,
            y=values,
            mode="lines",
            line={"color": EXPLICIT, "width": 2},
            hovertemplate=f"{what} #%{{x:,}}: %{{y:,}} interactions<extra></extra>",
        )
    )
    fig.update_xaxes(type="log", title=f"{what} rank (most active first)")
    fig.update_yaxes(type="log", title="interactions")
    label = "books" if what == "book" else "readers"
    return _style(fig, f"Long tail per {what}: top 20% of {label} hold {share:.0%} of interactions")


def ages(frame: pl.DataFrame) -> go.Figure:
    """Readers per age."""
    if frame.is_empty():
        return empty_figure("no reader ages")
    fig = go.Figure(
        go.Bar(
            x=frame["age"].to_list(),
            y=frame["n"].to_list(),
            marker_color=EXPLICIT,
            hovertemplate="age %{x}: %{y:,} readers<extra></extra>",
        )
    )
    fig.update_xaxes(title="age")
    fig.update_yaxes(title="readers")
    return _style(fig, "Reader ages (known ones)")


def countries(frame: pl.DataFrame) -> go.Figure:
    """Readers per country, biggest on top."""
    if frame.is_empty():
        return empty_figure("no reader countries")
    fig = go.Figure(
        go.Bar(
            x=frame["n"].to_list(),
            y=frame["country"].to_list(),
            orientation="h",
            marker_color=IMPLICIT,
            hovertemplate="%{y}: %{x:,} readers<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(title="readers")
    return _style(fig, "Top countries", height=max(340, 22 * frame.height + 100))


def rejected(frame: pl.DataFrame) -> go.Figure:
    """Rejected rows of the last ingest by reason, coloured by source file."""
    if frame.is_empty():
        return empty_figure("no rows were rejected by the last ingest")
    fig = go.Figure()
    for source in sorted(frame["source"].unique().to_list()):
        part = frame.filter(pl.col("source") == source)
        fig.add_trace(
            go.Bar(
                x=part["n"].to_list(),
                y=part["reason"].to_list(),
                orientation="h",
                name=source,
                hovertemplate=f"{source}: %{{y}}: %{{x:,}} rows<extra></extra>",
            )
        )
    fig.update_layout(barmode="stack")
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(title="rows")
    return _style(
        fig, "Rejected rows by reason (last ingest)", height=max(300, 26 * frame.height + 120)
    )
