"""Similar books: find a book, see its neighbours by collaborative and by content embeddings."""

from __future__ import annotations

from typing import Any

import dash
import dash_bootstrap_components as dbc
import polars as pl
from dash import Input, Output, State, callback, dcc, html

from app import data, params
from app.components import book_card, cover, empty_state, facet_badges, notice, section

dash.register_page(
    __name__, path="/similar", name="Similar books", title="bookrec · similar books", order=3
)

K = 10


def book_label(r: dict[str, Any]) -> str:
    """'Title — Author (year) · ISBN' for the search box (the browser filters options by this text)."""
    year = f" ({r['year']})" if r.get("year") else ""
    return f"{r.get('title') or r['isbn']} — {r.get('author') or 'unknown'}{year} · {r['isbn']}"


def book_options(search: str | None, current: str | None) -> tuple[list[dict[str, Any]], str]:
    """Server-side type-ahead over all books (title, author, or an exact ISBN) and a hint line."""
    keep = []
    if current:
        try:
            keep = [{"label": book_label(data.store().book(current)), "value": current}]
        except data.UnknownEntityError:
            keep = [{"label": current, "value": current}]
    text = (search or "").strip()
    if len(text) < 2:
        # leave the options alone: replacing them while the user types can drop a keystroke
        return (dash.no_update if text else keep), (
            "Type at least two letters of a title or an author." if text else ""
        )
    hits = data.store().search_books(text, limit=20)
    opts = [{"label": book_label(r), "value": r["isbn"]} for r in hits.iter_rows(named=True)]
    shown = text if len(text) <= 40 else text[:40] + "…"
    hint = "" if opts else f"No book matches “{shown}”: try part of a title or an author's name."
    values = {o["value"] for o in opts}
    return opts + [o for o in keep if o["value"] not in values], hint


def embedding_models() -> tuple[list[dict[str, str]], str | None]:
    """Models whose current run has item embeddings (LightGCN first)."""
    if data.missing("models", "embeddings"):
        return [], None
    runs = data.store().models().filter(pl.col("has_item_embeddings"))
    return [{"label": m, "value": m} for m in runs["model"].to_list()], (
        runs["model"][0] if runs.height else None
    )


def shared_facets(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[str, str]]:
    """(field, label) pairs two books have in common."""
    return [
        (f, label) for f in data.FIELDS for label in (a.get(f) or []) if label in (b.get(f) or [])
    ]


def _info(book: dict[str, Any]) -> dbc.Card:
    mean = f"{book['mean_rating']:.1f}" if book.get("mean_rating") is not None else "–"
    return dbc.Card(
        dbc.CardBody(
            html.Div(
                [
                    cover(
                        book.get("image_url_l") or book.get("image_url_m"),
                        size="md",
                        alt=book.get("title") or "",
                    ),
                    html.Div(
                        [
                            html.H4(book.get("title") or book["isbn"], className="mb-1"),
                            html.Div(
                                f"{book.get('author') or 'unknown author'} · {book.get('year') or 'year unknown'} · "
                                f"{book.get('publisher') or ''}",
                                className="text-muted",
                            ),
                            html.Div(
                                f"ISBN {book['isbn']} · {book['n_interactions']:,} readers · {book['n_explicit']:,} ratings · "
                                f"mean {mean}",
                                className="small mt-1",
                            ),
                            facet_badges(
                                {f: book.get(f) for f in data.FIELDS},
                                confidence=data.store()
                                .facet_confidence([book["isbn"]])
                                .get(book["isbn"]),
                            ),
                            html.P(book["summary"], className="small mt-2 mb-0")
                            if book.get("summary")
                            else None,
                        ],
                        className="ms-3 min-w-0",
                    ),
                ],
                className="d-flex",
            )
        ),
        className="mb-3",
    )


def _neighbours(book: dict[str, Any], frame: pl.DataFrame, what: str) -> Any:
    if frame.is_empty():
        return notice(
            f"No {what} neighbours: this book has no embedding there (no ratings in the training split, "
            "or not embedded yet).",
            color="info",
        )
    cards = []
    conf = data.store().facet_confidence(frame["isbn"].to_list())
    for r in frame.iter_rows(named=True):
        shared = shared_facets(book, r)
        line = f"similarity {r['score']:.3f}" + (
            f" · shares {', '.join(lb for _, lb in shared)}" if shared else ""
        )
        cards.append(
            book_card(
                r,
                shared=shared,
                extra=html.Div(line, className="small text-muted"),
                confidence=conf.get(r["isbn"]),
            )
        )
    return html.Div(cards)


def render(isbn: Any, model: Any) -> tuple[Any, Any, Any, str]:
    """The similar-books callback as a plain function: book info, collaborative, content, URL."""
    key = params.one(isbn)
    url = params.search({"isbn": key, "model": params.one(model)})
    if key is None:
        return html.P("Search for a book above.", className="text-muted"), None, None, url
    store = data.store()
    try:
        book = store.book(key)
    except data.UnknownEntityError:
        shown = key if len(key) <= 40 else key[:40] + "…"
        return (
            notice(f"No book with ISBN “{shown}”. Search by title or author instead."),
            None,
            None,
            url,
        )
    try:
        gap = data.missing("models", "embeddings")
        collab = (
            empty_state(*gap)
            if gap
            else _neighbours(
                book, store.similar_collab(book["isbn"], params.one(model), K), "collaborative"
            )
        )
        gap = data.missing("content")
        content = (
            empty_state(*gap)
            if gap
            else _neighbours(book, store.similar_content(book["isbn"], K), "content")
        )
    except data.BookrecError as exc:
        return _info(book), notice(exc.line()), None, url
    return _info(book), collab, content, url


def layout(**query: Any) -> html.Div:
    """The similar-books page (?isbn=ISBN&model=NAME)."""
    head = [
        html.H2("Similar books", className="page-title"),
        html.P(
            "Books read by the same people (collaborative embeddings) and books that read alike (content "
            "embeddings of title, author, facets and summary). Shared facets are highlighted.",
            className="page-lead",
        ),
    ]
    gap = data.missing("data")
    if gap:
        return html.Div([*head, empty_state(*gap)])
    isbn = params.one(query.get("isbn"))
    opts, default = embedding_models()
    model = params.one(query.get("model"))
    model = model if model in {o["value"] for o in opts} else default
    return html.Div(
        [
            *head,
            dcc.Location(id="similar-url", refresh=False),
            dbc.Card(
                dbc.CardBody(
                    dbc.Row(
                        [
                            dbc.Col(
                                [
                                    dbc.Label("Book", html_for="similar-book"),
                                    dcc.Dropdown(
                                        id="similar-book",
                                        options=book_options(None, isbn)[0],
                                        value=isbn,
                                        searchable=True,
                                        clearable=True,
                                        placeholder="title, author or ISBN",
                                    ),
                                    html.Div(
                                        id="similar-book-hint", className="form-text text-warning"
                                    ),
                                ],
                                md=8,
                            ),
                            dbc.Col(
                                [
                                    dbc.Label("Collaborative model", html_for="similar-model"),
                                    dbc.Select(
                                        id="similar-model",
                                        options=opts,
                                        value=model,
                                        disabled=not opts,
                                    ),
                                ],
                                md=4,
                            ),
                        ]
                    )
                ),
                className="mb-3",
            ),
            dcc.Loading(
                [
                    html.Div(id="similar-info"),
                    dbc.Row(
                        [
                            dbc.Col(
                                section(
                                    "Readers of this book also read",
                                    html.Div(id="similar-collab"),
                                    subtitle="cosine similarity of the model's item embeddings",
                                ),
                                lg=6,
                            ),
                            dbc.Col(
                                section(
                                    "Similar content",
                                    html.Div(id="similar-content"),
                                    subtitle="cosine similarity of MiniLM content embeddings",
                                ),
                                lg=6,
                            ),
                        ]
                    ),
                ],
                type="dot",
                delay_show=300,
            ),
        ]
    )


callback(
    Output("similar-book", "options"),
    Output("similar-book-hint", "children"),
    Input("similar-book", "search_value"),
    State("similar-book", "value"),
    prevent_initial_call=True,
)(book_options)

callback(
    Output("similar-info", "children"),
    Output("similar-collab", "children"),
    Output("similar-content", "children"),
    Output("similar-url", "search"),
    Input("similar-book", "value"),
    Input("similar-model", "value"),
)(render)
