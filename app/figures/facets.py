"""Pure Plotly figure builders for facets: Polars frames in, go.Figure out (report and dashboard)."""

from __future__ import annotations

import math

import plotly.graph_objects as go
import polars as pl

LIFT_SCALE = (
    "RdBu_r"  # diverging around log2(lift) = 0: blue = rarer together than chance, red = more
)


def empty_figure(message: str) -> go.Figure:
    """A blank figure that says why it is blank."""
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_layout(xaxis_visible=False, yaxis_visible=False, height=300)
    return fig


def _log2(x: float | None) -> float | None:
    return math.log2(x) if x else None


def _top_labels(frame: pl.DataFrame, label: str, weight: str, top: int) -> list[str]:
    totals = (
        frame.group_by(label)
        .agg(pl.col(weight).sum())
        .sort([weight, label], descending=[True, False])
    )
    return totals[label].head(top).to_list()


def cooccurrence_heatmap(
    pairs: pl.DataFrame, *, top: int = 25, title: str | None = None
) -> go.Figure:
    """Heatmap of log2(lift) for one field pair (facet_pair_counts rows); hover shows books and lift."""
    if pairs.is_empty():
        return empty_figure("no co-occurring facets for this pair")
    fa, fb = pairs["field_a"][0], pairs["field_b"][0]
    rows = _top_labels(pairs, "label_a", "n_books", top)
    cols = _top_labels(pairs, "label_b", "n_books", top)
    cell = {(r["label_a"], r["label_b"]): r for r in pairs.iter_rows(named=True)}
    z, text = [], []
    for a in rows:
        z.append([_log2(cell[(a, b)]["lift"]) if (a, b) in cell else None for b in cols])
        text.append(
            [
                f"{a} × {b}<br>{cell[(a, b)]['n_books']:,} books, lift {cell[(a, b)]['lift']:.2f}"
                if (a, b) in cell
                else f"{a} × {b}<br>never together"
                for b in cols
            ]
        )
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=cols,
            y=rows,
            text=text,
            hoverinfo="text",
            colorscale=LIFT_SCALE,
            zmid=0,
            colorbar={"title": "log2 lift"},
        )
    )
    fig.update_layout(
        title=title or f"{fa} × {fb}: co-occurrence (log2 lift)",
        xaxis_title=fb,
        yaxis_title=fa,
        yaxis_autorange="reversed",
        height=max(400, 22 * len(rows) + 200),
    )
    return fig


def facet_distribution(counts: pl.DataFrame, field: str, *, top: int = 30) -> go.Figure:
    """Horizontal bars: books per facet of one field (facet_counts rows), largest on top."""
    rows = counts.filter(pl.col("field") == field).sort("n_books", descending=True).head(top)
    if rows.is_empty():
        return empty_figure(f"no {field} facets")
    fig = go.Figure(
        go.Bar(
            x=rows["n_books"].to_list(),
            y=rows["label"].to_list(),
            orientation="h",
            customdata=[
                [s * 100, n] for s, n in zip(rows["share"], rows["n_raw_labels"], strict=True)
            ],
            hovertemplate="%{y}: %{x:,} books (%{customdata[0]:.1f}%), %{customdata[1]} raw labels<extra></extra>",
        )
    )
    fig.update_layout(
        title=f"{field}: books per facet",
        xaxis_title="books",
        yaxis_autorange="reversed",
        height=max(300, 20 * rows.height + 150),
    )
    return fig


def facet_surface(
    triples: pl.DataFrame,
    *,
    top: int = 15,
    max_z: int = 8,
    axes: tuple[str, str, str] = ("genre", "audience", "tone"),
) -> go.Figure:
    """3D surface x × y -> share of books with each z label (one surface per z label, a dropdown picks it).

    `triples` has x_label, y_label, z_label, n_books (facet_triples rows).
    """
    if triples.is_empty():
        return empty_figure(f"no books with {axes[0]}, {axes[1]} and {axes[2]} facets together")
    xs = _top_labels(triples, "x_label", "n_books", top)
    ys = _top_labels(triples, "y_label", "n_books", top)
    zs = _top_labels(triples, "z_label", "n_books", max_z)
    # cell total = books in (x, y) with any z; a book with two tones counts in both shares
    cells = triples.group_by("x_label", "y_label").agg(pl.col("n_books").sum().alias("cell"))
    share = triples.join(cells, on=["x_label", "y_label"]).with_columns(
        (pl.col("n_books") / pl.col("cell")).alias("share")
    )
    lookup = {
        (r["x_label"], r["y_label"], r["z_label"]): r["share"] for r in share.iter_rows(named=True)
    }
    fig = go.Figure()
    for i, zl in enumerate(zs):
        z = [[lookup.get((x, y, zl), 0.0) for x in xs] for y in ys]
        fig.add_trace(
            go.Surface(
                z=z,
                x=list(range(len(xs))),
                y=list(range(len(ys))),
                name=zl,
                visible=i == 0,
                colorscale="Viridis",
                cmin=0,
                cmax=1,
                colorbar={"title": "share"},
                customdata=[[[x, y] for x in xs] for y in ys],
                hovertemplate=f"%{{customdata[0]}} × %{{customdata[1]}}: %{{z:.0%}} {zl}<extra></extra>",
            )
        )
    buttons = [
        {
            "label": zl,
            "method": "update",
            "args": [
                {"visible": [j == i for j in range(len(zs))]},
                {"title": _surface_title(axes, zl)},
            ],
        }
        for i, zl in enumerate(zs)
    ]
    fig.update_layout(
        title=_surface_title(axes, zs[0]),
        height=700,
        updatemenus=[
            {"buttons": buttons, "x": 0, "y": 1.08, "xanchor": "left", "showactive": True}
        ],
        scene={
            "xaxis": {"title": axes[0], "tickvals": list(range(len(xs))), "ticktext": xs},
            "yaxis": {"title": axes[1], "tickvals": list(range(len(ys))), "ticktext": ys},
            "zaxis": {"title": "share", "range": [0, 1]},
        },
    )
    return fig


def _surface_title(axes: tuple[str, str, str], z_label: str) -> str:
    return f"{axes[0]} × {axes[1]} → share of books with {axes[2]} '{z_label}'"


def alignment_heatmap(
    alignment: pl.DataFrame, *, top_rows: int = 20, top_per_field: int = 10
) -> go.Figure:
    """One heatmap aligning a field's facets (rows) with the top facets of every other field (columns).

    `alignment` has field_a, label_a, field_b, label_b, n_books, lift (facet_alignment rows).
    """
    if alignment.is_empty():
        return empty_figure("no facets co-occur across fields")
    fa = alignment["field_a"][0]
    rows = _top_labels(alignment, "label_a", "n_books", top_rows)
    cols: list[tuple[str, str]] = []
    for fb in sorted(alignment["field_b"].unique().to_list()):
        part = alignment.filter(pl.col("field_b") == fb)
        cols += [(fb, lb) for lb in _top_labels(part, "label_b", "n_books", top_per_field)]
    cell = {(r["label_a"], r["field_b"], r["label_b"]): r for r in alignment.iter_rows(named=True)}
    z = [
        [_log2(cell[(a, fb, lb)]["lift"]) if (a, fb, lb) in cell else None for fb, lb in cols]
        for a in rows
    ]
    text = [
        [
            f"{fa} {a} × {fb} {lb}<br>{cell[(a, fb, lb)]['n_books']:,} books, lift {cell[(a, fb, lb)]['lift']:.2f}"
            if (a, fb, lb) in cell
            else f"{a} × {lb}: never together"
            for fb, lb in cols
        ]
        for a in rows
    ]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=[f"{fb}: {lb}" for fb, lb in cols],
            y=rows,
            text=text,
            hoverinfo="text",
            colorscale=LIFT_SCALE,
            zmid=0,
            colorbar={"title": "log2 lift"},
        )
    )
    # vertical rules between fields make the blocks readable
    edges = [i for i in range(1, len(cols)) if cols[i][0] != cols[i - 1][0]]
    for i in edges:
        fig.add_vline(x=i - 0.5, line_width=2, line_color="black")
    fig.update_layout(
        title=f"{fa} facets aligned with every other field (log2 lift)",
        yaxis_autorange="reversed",
        height=max(450, 22 * len(rows) + 250),
        xaxis_tickangle=-45,
    )
    return fig
