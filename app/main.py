"""The Dash app: `create_app(db_path)` opens the database read-only and wires the pages."""

from __future__ import annotations

from pathlib import Path

import dash
import dash_bootstrap_components as dbc
from dash import html

from app import data

HERE = Path(__file__).parent
NAV = [
    ("Overview", "/"),
    ("Browse", "/browse"),
    ("Reader", "/reader"),
    ("Similar books", "/similar"),
    ("Metadata", "/metadata"),
    ("Models", "/models"),
]


def navbar() -> dbc.Navbar:
    """The top bar with one link per page."""
    links = [dbc.NavItem(dbc.NavLink(label, href=href, active="exact")) for label, href in NAV]
    return dbc.Navbar(
        dbc.Container(
            [
                dbc.NavbarBrand(
                    [html.Img(src="/assets/logo.svg", height="26px", className="me-2"), "bookrec"],
                    href="/",
                ),
                dbc.NavbarToggler(id="navbar-toggler"),
                dbc.Collapse(
                    dbc.Nav(links, navbar=True, className="ms-auto"),
                    id="navbar-collapse",
                    navbar=True,
                    is_open=False,
                ),
            ],
            fluid="xl",
        ),
        color="primary",
        dark=True,
        expand="lg",
        className="mb-2",
    )


def create_app(db_path: str | Path, *, warm: bool = False) -> dash.Dash:
    """Build the dashboard over `db_path` (opened read-only once per process)."""
    store = data.init(db_path, warm=warm)
    app = dash.Dash(
        __name__,
        use_pages=True,
        pages_folder=str(HERE / "pages"),
        assets_folder=str(HERE / "assets"),
        title="bookrec",
        update_title=None,
        suppress_callback_exceptions=True,
        # The theme CSS is vendored in assets/ (offline-first); nothing is fetched from a CDN.
        external_stylesheets=[],
    )
    app.layout = html.Div(
        [
            navbar(),
            dbc.Container(dash.page_container, fluid="xl", className="page"),
            html.Footer(
                dbc.Container(
                    html.Small(f"database: {store.path}", className="text-muted"), fluid="xl"
                ),
                className="py-3 border-top bg-white",
            ),
        ]
    )
    dash.clientside_callback(
        "function(n, open) { return n ? !open : open; }",
        dash.Output("navbar-collapse", "is_open"),
        dash.Input("navbar-toggler", "n_clicks"),
        dash.State("navbar-collapse", "is_open"),
    )
    return app
