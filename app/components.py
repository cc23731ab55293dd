"""Small UI building blocks shared by the pages (Dash components only; no data access)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

import dash_bootstrap_components as dbc
from dash import dcc, html

from app.data import LOW_CONFIDENCE

PLACEHOLDER = "/assets/cover-placeholder.svg"


def cover_src(url: Any) -> str:
    """The cover URL when it is a plain http(s) URL, else the placeholder (never javascript: etc.)."""
    text = str(url or "").strip()
    return text if text.lower().startswith(("http://", "https://")) else PLACEHOLDER


def cover(url: Any, *, size: str = "md", alt: str = "") -> html.Div:
    """A book cover that degrades to the placeholder: assets/covers.js swaps in the placeholder when
    the image fails (offline, 404) or is Amazon's 1x1 'no image' GIF; the frame's background shows it meanwhile."""
    return html.Div(
        html.Img(src=cover_src(url), className="cover-img", alt=alt, referrerPolicy="no-referrer"),
        className=f"cover cover-{size}",
    )


def empty_state(message: str, hint: str | None = None, *, color: str = "secondary") -> dbc.Alert:
    """A friendly box saying why a part of a page is empty and what to run."""
    body: list[Any] = [html.Strong(message)]
    if hint:
        body += [html.Br(), html.Span(hint, className="small")]
    return dbc.Alert(body, color=color, className="empty-state my-2")


def notice(message: str, *, color: str = "warning") -> dbc.Alert:
    """A one-line message about the user's input (unknown id, bad text)."""
    return dbc.Alert(message, color=color, className="notice my-2")


def stat_card(label: str, value: Any, note: str | None = None) -> dbc.Card:
    """A headline number."""
    text = (
        f"{value:,.4g}"
        if isinstance(value, float)
        else (f"{value:,}" if isinstance(value, int) else str(value or "–"))
    )
    return dbc.Card(
        dbc.CardBody(
            [
                html.Div(label, className="stat-label"),
                html.Div(text, className="stat-value"),
                html.Div(note or "", className="stat-note"),
            ]
        ),
        className="stat-card h-100",
    )


def facet_badges(
    facets: Mapping[str, Sequence[str] | None],
    *,
    shared: Iterable[tuple[str, str]] = (),
    fields: Sequence[str] = ("genre", "tone", "audience", "theme", "category"),
    confidence: Mapping[tuple[str, str], float] | None = None,
    low: float = LOW_CONFIDENCE,
) -> html.Div:
    """Facet labels as badges; (field, label) pairs in `shared` are highlighted, labels whose
    `confidence` is below `low` are pale chips (labels without a confidence count as confident)."""
    marked = set(shared)
    conf = confidence or {}
    badges = []
    for field in fields:
        for label in facets.get(field) or []:
            on = (field, label) in marked
            c = conf.get((field, label))
            pale = c is not None and c < low
            note = f" · confidence {c:.2f}" + (" (low)" if pale else "") if c is not None else ""
            badges.append(
                dbc.Badge(
                    label,
                    color="success" if on else "light",
                    text_color=None if on else "dark",
                    className="me-1 facet-badge" + (" facet-low" if pale else ""),
                    title=f"{field}{' (shared)' if on else ''}{note}",
                )
            )
    return html.Div(badges, className="facet-badges")


def book_link(isbn: str, title: str | None) -> dcc.Link:
    """A link to the book's similar-books page."""
    return dcc.Link(title or isbn, href=f"/similar?isbn={quote(isbn)}", className="book-link")


def book_card(
    row: Mapping[str, Any],
    *,
    extra: Any = None,
    shared: Iterable[tuple[str, str]] = (),
    confidence: Mapping[tuple[str, str], float] | None = None,
) -> dbc.Card:
    """A compact book card: cover, linked title, author and year, facets (pale when their
    `confidence` is low), extra lines."""
    facets = {f: row.get(f) for f in ("genre", "tone", "audience", "theme", "category")}
    return dbc.Card(
        dbc.CardBody(
            html.Div(
                [
                    cover(row.get("image_url_m"), size="sm", alt=row.get("title") or ""),
                    html.Div(
                        [
                            html.Div(
                                book_link(row["isbn"], row.get("title")), className="fw-semibold"
                            ),
                            html.Div(
                                f"{row.get('author') or 'unknown author'}"
                                + (f" · {row['year']}" if row.get("year") else ""),
                                className="text-muted small",
                            ),
                            facet_badges(facets, shared=shared, confidence=confidence)
                            if any(facets.values())
                            else None,
                            extra,
                        ],
                        className="ms-3 flex-grow-1 min-w-0",
                    ),
                ],
                className="d-flex",
            )
        ),
        className="book-card mb-2",
    )


def section(title: str, *children: Any, subtitle: str | None = None) -> html.Section:
    """A titled block of a page."""
    return html.Section(
        [
            html.H5(title, className="section-title"),
            html.P(subtitle, className="text-muted small mb-2") if subtitle else None,
            *children,
        ],
        className="mb-4",
    )


def graph(figure: Any, graph_id: str | None = None, **kwargs: Any) -> dcc.Graph:
    """A Plotly graph without the mode bar's logo."""
    props = {"figure": figure, "config": {"displaylogo": False, "responsive": True}, **kwargs}
    return dcc.Graph(id=graph_id, **props) if graph_id else dcc.Graph(**props)
