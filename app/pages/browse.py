"""Browse: popular books by Bayesian score (m adjustable) under facet, year, rating and text filters."""

from __future__ import annotations

import math
from typing import Any

import dash
import dash_bootstrap_components as dbc
from dash import Input, Output, State, callback, dcc, html

from app import data, params
from app.components import book_link, cover, empty_state, facet_badges, notice

dash.register_page(__name__, path="/browse", name="Browse", title="bookrec · browse", order=1)

PAGE_SIZE = 20
YEAR_FLOOR = (
    1900  # the slider starts here; its ends mean "no bound" (Book-Crossing has stray years)
)
COLUMNS = [
    ("title", "Title"),
    ("year", "Year"),
    ("score", "Score"),
    ("mean_rating", "Mean"),
    ("n_explicit", "Ratings"),
    ("n_interactions", "Reads"),
]
TEXT_SORTS = {"title", "author"}


def _year_range() -> tuple[int, int]:
    lo, hi = data.store().year_bounds()
    hi = int(hi) if hi else 2005
    lo = max(int(lo) if lo else YEAR_FLOOR, YEAR_FLOOR)
    return min(lo, hi), hi


def query_from(values: dict[str, Any], years: tuple[int, int]) -> data.BrowseQuery:
    """A BrowseQuery from control values; slider ends and blank fields mean 'no filter'."""
    lo, hi = years
    y0, y1 = (values.get("years") or [lo, hi])[:2]
    return data.BrowseQuery(
        m=params.to_float(values.get("m"), 50.0, lo=0.0, hi=10_000.0),
        facets={
            f: tuple(params.many(values.get(f))) for f in data.FIELDS if params.many(values.get(f))
        },
        year_min=None if y0 is None or y0 <= lo else int(y0),
        year_max=None if y1 is None or y1 >= hi else int(y1),
        min_ratings=params.to_int(values.get("min"), 0, lo=0, hi=10**6) or 0,
        text=params.one(values.get("q")) or "",
        sort=values.get("sort") if values.get("sort") in data.SORTABLE else "score",
        desc=bool(values.get("desc", True)),
        page=params.to_int(values.get("page"), 1, lo=1, hi=10**6) or 1,
        page_size=PAGE_SIZE,
    )


def search_of(q: data.BrowseQuery) -> str:
    """The shareable query string of a BrowseQuery."""
    return params.search(
        {
            "q": q.text,
            **{f: list(v) for f, v in q.facets.items()},
            "y0": q.year_min,
            "y1": q.year_max,
            "min": q.min_ratings or None,
            "m": None if q.m == 50 else f"{q.m:g}",
            "sort": None if q.sort == "score" else q.sort,
            "desc": None if q.desc == (q.sort not in TEXT_SORTS) else int(q.desc),
            "page": None if q.page == 1 else q.page,
        }
    )


def _row(r: dict[str, Any], rank: int) -> html.Tr:
    mean = f"{r['mean_rating']:.1f}" if r.get("mean_rating") is not None else "–"
    return html.Tr(
        [
            html.Td(rank, className="text-muted num"),
            html.Td(cover(r.get("image_url_m"), size="xs", alt=r.get("title") or "")),
            html.Td(
                [
                    html.Div(book_link(r["isbn"], r.get("title")), className="fw-semibold"),
                    html.Div(r.get("author") or "", className="small text-muted"),
                ]
            ),
            html.Td(r.get("year") or "–", className="num"),
            html.Td(
                facet_badges(
                    {"genre": r.get("genre"), "tone": r.get("tone")}, fields=("genre", "tone")
                )
            ),
            html.Td(f"{r['score']:.2f}", className="num fw-semibold"),
            html.Td(mean, className="num"),
            html.Td(f"{r['n_explicit']:,}", className="num"),
            html.Td(f"{r['n_interactions']:,}", className="num"),
        ]
    )


def _header(sort: str, desc: bool) -> html.Thead:
    def button(col: str, label: str) -> html.Button:
        arrow = (" ▼" if desc else " ▲") if col == sort else ""
        return html.Button(
            label + arrow, id=f"browse-sort-{col}", n_clicks=0, title=f"sort by {label.lower()}"
        )

    cells = [
        html.Th(""),
        html.Th(""),
        html.Th(button("title", "Title")),
        html.Th(button("year", "Year"), className="num"),
        html.Th("Facets"),
    ]
    cells += [html.Th(button(col, label), className="num") for col, label in COLUMNS[2:]]
    return html.Thead(html.Tr(cells))


def render(
    text: Any,
    genre: Any,
    category: Any,
    theme: Any,
    tone: Any,
    audience: Any,
    years: Any,
    min_ratings: Any,
    m: Any,
    sort_state: dict[str, Any] | None,
    page: Any,
) -> tuple[Any, ...]:
    """The browse callback as a plain function: table, count, number of pages, page, URL query string."""
    sort_state = sort_state or {"sort": "score", "desc": True}
    filters_changed = params.triggered_id() not in (None, "browse-pages")
    values = {
        "q": text,
        "genre": genre,
        "category": category,
        "theme": theme,
        "tone": tone,
        "audience": audience,
        "years": years,
        "min": min_ratings,
        "m": m,
        "page": 1 if filters_changed else page,
        **sort_state,
    }
    bounds = _year_range()
    q = query_from(values, bounds)
    frame, total = data.store().browse(q)
    pages = max(1, math.ceil(total / PAGE_SIZE))
    if q.page > pages and total:
        q = data.BrowseQuery(**{**q.__dict__, "page": pages})
        frame, total = data.store().browse(q)
    if total == 0:
        body: Any = notice(
            "No books match these filters. Clear a facet, widen the years or lower the minimum ratings.",
            color="info",
        )
    else:
        start = (q.page - 1) * PAGE_SIZE
        rows = [_row(r, start + i + 1) for i, r in enumerate(frame.iter_rows(named=True))]
        body = dbc.Table(
            [_header(q.sort, q.desc), html.Tbody(rows)],
            hover=True,
            size="sm",
            className="browse-table bg-white mb-2",
        )
    count = f"{total:,} book{'' if total == 1 else 's'} · page {q.page:,} of {pages:,} · score = Bayesian mean with m = {q.m:g}"
    return body, count, pages, q.page, search_of(q)


def next_sort(col: str, state: dict[str, Any] | None) -> dict[str, Any] | None:
    """Sorting after a click on column `col`: that column (numbers high first, text A-Z); a second
    click on the sorted column flips the direction. None for an unknown column."""
    state = state or {"sort": "score", "desc": True}
    if col not in data.SORTABLE:
        return None
    if state.get("sort") == col:
        return {"sort": col, "desc": not state.get("desc", True)}
    return {"sort": col, "desc": col not in TEXT_SORTS}


def sort_by(*args: Any) -> Any:
    """Header clicks (the callback): the clicked column's id names the sort."""
    picked = next_sort(str(params.triggered_id() or "").removeprefix("browse-sort-"), args[-1])
    return dash.no_update if picked is None else picked


def _facet_controls(selected: dict[str, list[str]]) -> list[Any]:
    options = data.store().facet_options() if not data.missing("facets") else {}
    if not any(options.values()):
        return [
            empty_state(
                "Facet filters appear after the facets stage",
                "Run `bookrec enrich` then `bookrec facets`",
            )
        ]
    controls = []
    for field in data.FIELDS:
        opts = [
            {"label": f"{label} ({n:,})", "value": label} for label, n in options.get(field, [])
        ]
        controls += [
            dbc.Label(field.capitalize(), html_for=f"browse-{field}"),
            dcc.Dropdown(
                id=f"browse-{field}",
                options=opts,
                value=selected.get(field, []),
                multi=True,
                placeholder=f"any {field}",
            ),
        ]
    return controls


def layout(**query: Any) -> html.Div:
    """The browse page; every filter is in the URL's query string."""
    head = [
        html.H2("Browse", className="page-title"),
        html.P(
            "Popular books ranked by a Bayesian mean rating: books with few ratings are pulled towards the "
            "overall mean; m sets how strongly.",
            className="page-lead",
        ),
    ]
    gap = data.missing("data")
    if gap:
        return html.Div([*head, empty_state(*gap)])
    lo, hi = _year_range()
    y0 = params.to_int(query.get("y0"), lo, lo=lo, hi=hi)
    y1 = params.to_int(query.get("y1"), hi, lo=lo, hi=hi)
    selected = {f: params.many(query.get(f)) for f in data.FIELDS}
    sort = params.one(query.get("sort")) or "score"
    sort = sort if sort in data.SORTABLE else "score"
    desc_default = sort not in TEXT_SORTS
    desc = bool(params.to_int(query.get("desc"), int(desc_default), lo=0, hi=1))
    marks = {y: str(y) for y in range(lo - lo % 10 + 10, hi + 1, 20)}
    facet_ids = [f"browse-{f}" for f in data.FIELDS]
    has_facets = data.missing("facets") is None and any(data.store().facet_options().values())
    filters = dbc.Card(
        dbc.CardBody(
            [
                dbc.Label("Title or author", html_for="browse-text"),
                dbc.Input(
                    id="browse-text",
                    type="search",
                    value=params.one(query.get("q")) or "",
                    debounce=True,
                    placeholder="e.g. tolkien",
                    maxLength=params.MAX_TEXT,
                ),
                *_facet_controls(selected),
                *(
                    []
                    if has_facets
                    else [
                        dcc.Dropdown(id=i, multi=True, value=[], style={"display": "none"})
                        for i in facet_ids
                    ]
                ),
                dbc.Label("Published", html_for="browse-years"),
                dcc.RangeSlider(
                    id="browse-years",
                    min=lo,
                    max=hi,
                    step=1,
                    value=[y0, y1],
                    marks=marks,
                    tooltip={"placement": "bottom"},
                    allowCross=False,
                ),
                dbc.Label("Minimum explicit ratings", html_for="browse-min"),
                dbc.Input(
                    id="browse-min",
                    type="number",
                    min=0,
                    step=1,
                    value=params.to_int(query.get("min"), 0, lo=0),
                    debounce=True,
                ),
                dbc.Label("Prior weight m", html_for="browse-m"),
                dcc.Slider(
                    id="browse-m",
                    min=0,
                    max=500,
                    step=None,
                    value=params.to_float(query.get("m"), 50.0, lo=0, hi=500),
                    marks={0: "0", 50: "50", 100: "100", 200: "200", 500: "500"},
                ),
            ]
        ),
        className="filters",
    )
    return html.Div(
        [
            *head,
            dcc.Location(id="browse-url", refresh=False),
            dcc.Store(id="browse-sort", data={"sort": sort, "desc": desc}),
            dbc.Row(
                [
                    dbc.Col(filters, lg=3, className="mb-3"),
                    dbc.Col(
                        [
                            html.Div(id="browse-count", className="text-muted small mb-2"),
                            dcc.Loading(html.Div(id="browse-table"), type="dot", delay_show=300),
                            dbc.Pagination(
                                id="browse-pages",
                                max_value=1,
                                active_page=params.to_int(query.get("page"), 1, lo=1),
                                fully_expanded=False,
                                first_last=True,
                                previous_next=True,
                                className="mt-2",
                            ),
                        ],
                        lg=9,
                    ),
                ]
            ),
        ]
    )


callback(
    Output("browse-table", "children"),
    Output("browse-count", "children"),
    Output("browse-pages", "max_value"),
    Output("browse-pages", "active_page"),
    Output("browse-url", "search"),
    Input("browse-text", "value"),
    *[Input(f"browse-{f}", "value") for f in data.FIELDS],
    Input("browse-years", "value"),
    Input("browse-min", "value"),
    Input("browse-m", "value"),
    Input("browse-sort", "data"),
    Input("browse-pages", "active_page"),
)(render)

callback(
    Output("browse-sort", "data"),
    *[Input(f"browse-sort-{c}", "n_clicks") for c, _ in COLUMNS],
    State("browse-sort", "data"),
    prevent_initial_call=True,
)(sort_by)
