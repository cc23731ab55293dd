"""Reader: find a reader, see what they rated and what each model recommends, with a reason per book."""

from __future__ import annotations

from typing import Any

import dash
import dash_bootstrap_components as dbc
import polars as pl
from dash import Input, Output, State, callback, dcc, html

from app import data, params
from app.components import book_card, book_link, cover, empty_state, notice, section

dash.register_page(__name__, path="/reader", name="Reader", title="bookrec · reader", order=2)

K = 12
COLD_FIELDS = ("genre", "audience", "tone")


def model_options() -> tuple[list[dict[str, str]], str | None]:
    """Current models for the selector (the default, best on validation, first) and the default."""
    if data.missing("models"):
        return [], None
    runs = data.store().models()
    opts = [
        {"label": m + (" (default)" if i == 0 else ""), "value": m}
        for i, m in enumerate(runs["model"].to_list())
    ]
    return opts, runs["model"][0] if runs.height else None


def reader_options(search: str | None, current: str | None) -> tuple[list[dict[str, Any]], str]:
    """Type-ahead for the reader box: matching ids (with country and activity) and a hint line. An
    unknown id can still be picked (it gets the popularity fallback); non-numbers get a hint."""
    keep = [{"label": str(current), "value": str(current)}] if current else []
    text = (search or "").strip()
    if not text:
        return keep, ""
    _, problem = params.reader_id(text)
    if problem:
        return keep, problem
    hits = data.store().search_users(text, limit=15)
    opts = [
        {
            "label": f"{r['user_id']} · {r['country'] or 'unknown country'} · {r['n_ratings']:,} ratings",
            "value": str(r["user_id"]),
        }
        for r in hits.iter_rows(named=True)
    ]
    hint = ""
    if str(int(text)) not in {o["value"] for o in opts}:
        opts.append(
            {"label": f"{int(text)} (not in the data: popular books)", "value": str(int(text))}
        )
        hint = f"No reader {int(text)} in the data; pick it to see popular books for a new reader."
    values = {o["value"] for o in opts}
    return opts + [o for o in keep if o["value"] not in values], hint


def _profile(user: dict[str, Any]) -> dbc.Card:
    where = (
        ", ".join(x for x in (user.get("city"), user.get("state"), user.get("country")) if x)
        or "unknown place"
    )
    mean = f"{user['mean_rating']:.1f}" if user.get("mean_rating") is not None else "–"
    return dbc.Card(
        dbc.CardBody(
            [
                html.H4(f"Reader {user['user_id']}", className="mb-1"),
                html.Div(f"{where} · age {user.get('age') or 'unknown'}", className="text-muted"),
                html.Div(
                    f"{user['n_ratings']:,} books · {user['n_explicit']:,} rated explicitly · mean rating {mean}",
                    className="small mt-1",
                ),
            ]
        ),
        className="mb-3",
    )


def _rec_cards(recs: pl.DataFrame, *, popular: bool) -> html.Div:
    cards = []
    conf = data.store().facet_confidence(recs["isbn"].to_list()) if recs.height else {}
    for r in recs.iter_rows(named=True):
        lines = []
        if r.get("because_isbn") and not popular:
            lines.append(
                html.Div(
                    ["Because you rated ", book_link(r["because_isbn"], r.get("because_title"))],
                    className="reason",
                )
            )
        score = r.get("score")
        label = "Bayesian score" if popular else "score"
        lines.append(
            html.Div(
                f"{label} {score:.3g}" if score is not None else "", className="small text-muted"
            )
        )
        cards.append(
            dbc.Col(book_card(r, extra=html.Div(lines), confidence=conf.get(r["isbn"])), md=6, xl=4)
        )
    return html.Div(dbc.Row(cards, className="g-2"), className="recs")


def _history(user_id: int) -> Any:
    hist = data.store().user_history(user_id, limit=30)
    if hist.is_empty():
        return html.P("No ratings.", className="text-muted")
    rows = []
    for r in hist.iter_rows(named=True):
        badge = dbc.Badge(
            "read" if r["rating"] == 0 else f"★ {r['rating']}",
            color="secondary" if r["rating"] == 0 else "primary",
            className="ms-2",
        )
        rows.append(
            html.Li(
                [
                    cover(r.get("image_url_m"), size="xs", alt=r.get("title") or ""),
                    html.Div(
                        [
                            book_link(r["isbn"], r.get("title") or r["isbn"]),
                            badge,
                            html.Div(r.get("author") or "", className="small text-muted"),
                        ],
                        className="ms-2 min-w-0",
                    ),
                ],
                className="d-flex align-items-center mb-2",
            )
        )
    return html.Ul(rows, className="list-unstyled history")


def _popular(facets: dict[str, tuple[str, ...]], exclude: list[str], why: str) -> list[Any]:
    picked = "; ".join(f"{f}: {', '.join(v)}" for f, v in facets.items() if v) or "no facets picked"
    recs = data.store().popular(facets, k=K, exclude=exclude)
    body: Any = (
        _rec_cards(recs, popular=True)
        if recs.height
        else notice("No books match these facets; remove one.", color="info")
    )
    return [
        notice(
            f"{why} Showing the most popular books (Bayesian score) within the facets you pick ({picked}).",
            color="info",
        ),
        body,
    ]


def render(
    user_value: Any, model: Any, genre: Any, audience: Any, tone: Any
) -> tuple[Any, Any, Any, str]:
    """The reader callback as a plain function: profile, recommendations, history, URL query string."""
    facets = {
        f: tuple(params.many(v))
        for f, v in zip(COLD_FIELDS, (genre, audience, tone), strict=True)
        if params.many(v)
    }
    user_id, problem = params.reader_id(user_value)
    url = params.search(
        {"user": user_id, "model": params.one(model), **{f: list(v) for f, v in facets.items()}}
    )
    store = data.store()
    if user_id is None:
        intro = (
            notice(problem, color="warning")
            if problem
            else html.P(
                "Type a reader id above, or describe a new reader with the facets below.",
                className="text-muted",
            )
        )
        return intro, _popular(facets, [], "New reader."), None, url
    user = store.user(user_id)
    if user is None:
        return (
            notice(f"Reader {user_id} is not in the data.", color="warning"),
            _popular(facets, [], f"Reader {user_id} is unknown."),
            None,
            url,
        )
    gap = data.missing("models")
    if gap:
        recs_part: list[Any] = [empty_state(*gap), *_popular(facets, [], "No model yet.")]
    else:
        try:
            recs = store.recommend(params.one(model), user_id, K)
        except data.UnknownEntityError as exc:
            recs_part = [notice(exc.line())]
        else:
            if recs.height and recs["source"][0] == "popularity_fallback":
                rated = store.user_ratings(user_id)["isbn"].to_list()
                recs_part = _popular(
                    facets,
                    rated,
                    f"The {model or 'current'} model does not know reader {user_id} "
                    "(no training interactions).",
                )
            else:
                name = recs["model"][0] if recs.height else model
                default, why = store.default_model()
                chosen = f" It is the default model: {why}." if name == default else ""
                recs_part = [
                    html.P(
                        f"Top {recs.height} unread books from the current {name} run; the reason is the "
                        f"book in this reader's history closest in the model's item-embedding space.{chosen}",
                        className="text-muted small",
                    ),
                    _rec_cards(recs, popular=False),
                ]
    return _profile(user), recs_part, _history(user_id), url


def layout(**query: Any) -> html.Div:
    """The reader page (?user=ID&model=NAME&genre=...)."""
    head = [
        html.H2("Reader", className="page-title"),
        html.P(
            "A reader's books and recommendations. New or unknown readers get popular books within the "
            "facets they pick.",
            className="page-lead",
        ),
    ]
    gap = data.missing("data")
    if gap:
        return html.Div([*head, empty_state(*gap)])
    user = params.one(query.get("user"))
    opts, default = model_options()
    model = params.one(query.get("model"))
    model = model if model in {o["value"] for o in opts} else default
    facet_opts = data.store().facet_options() if not data.missing("facets") else {}
    cold = []
    for f in COLD_FIELDS:
        choices = [{"label": label, "value": label} for label, _ in facet_opts.get(f, [])]
        cold.append(
            dbc.Col(
                [
                    dbc.Label(f.capitalize(), html_for=f"reader-{f}"),
                    dcc.Dropdown(
                        id=f"reader-{f}",
                        options=choices,
                        value=params.many(query.get(f)),
                        multi=True,
                        placeholder=f"any {f}",
                        disabled=not choices,
                    ),
                ],
                md=4,
            )
        )
    controls = dbc.Card(
        dbc.CardBody(
            [
                dbc.Row(
                    [
                        dbc.Col(
                            [
                                dbc.Label("Reader id", html_for="reader-id"),
                                dcc.Dropdown(
                                    id="reader-id",
                                    options=reader_options(None, user)[0],
                                    value=user,
                                    searchable=True,
                                    clearable=True,
                                    placeholder="type a reader id, e.g. 276725",
                                ),
                                html.Div(id="reader-id-hint", className="form-text text-warning"),
                            ],
                            md=8,
                        ),
                        dbc.Col(
                            [
                                dbc.Label("Model", html_for="reader-model"),
                                dbc.Select(
                                    id="reader-model", options=opts, value=model, disabled=not opts
                                ),
                            ],
                            md=4,
                        ),
                    ]
                ),
                html.Div("New reader? Pick what you like:", className="small text-muted mt-3"),
                dbc.Row(cold),
            ]
        ),
        className="mb-3",
    )
    return html.Div(
        [
            *head,
            dcc.Location(id="reader-url", refresh=False),
            controls,
            dcc.Loading(
                [
                    html.Div(id="reader-profile"),
                    dbc.Row(
                        [
                            dbc.Col(section("Recommendations", html.Div(id="reader-recs")), lg=8),
                            dbc.Col(section("Their books", html.Div(id="reader-history")), lg=4),
                        ]
                    ),
                ],
                type="dot",
                delay_show=300,
            ),
        ]
    )


callback(
    Output("reader-id", "options"),
    Output("reader-id-hint", "children"),
    Input("reader-id", "search_value"),
    State("reader-id", "value"),
    prevent_initial_call=True,
)(reader_options)

callback(
    Output("reader-profile", "children"),
    Output("reader-recs", "children"),
    Output("reader-history", "children"),
    Output("reader-url", "search"),
    Input("reader-id", "value"),
    Input("reader-model", "value"),
    *[Input(f"reader-{f}", "value") for f in COLD_FIELDS],
)(render)
