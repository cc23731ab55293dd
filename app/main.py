"""The Dash app: `create_app(db_path)` opens the database read-only and wires the pages."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import dash
import dash_bootstrap_components as dbc
import flask
from dash import html

from app import api, data

HERE = Path(__file__).parent
PLOTLY_2D = HERE / "static" / "plotly-cartesian.min.js"
PLOTLY_FULL = "/_dash-component-suites/plotly/package_data/plotly.min.js"
log = logging.getLogger(__name__)


def bundle_version(path: Path) -> str | None:
    """The plotly.js version in a bundle's header comment ('plotly.js (...) v4.1.1' -> '4.1.1')."""
    with path.open(encoding="utf-8") as f:
        head = f.read(300)
    found = re.search(r"plotly\.js\b[^\n]*? v(\d+\.\d+\.\d+)", head)
    return found.group(1) if found else None


def plotly_2d_route(app: dash.Dash) -> None:
    """Serve the cartesian plotly.js bundle at /_bookrec/plotly-2d.js (assets/plotly-bundle.js
    points 2D pages at it) when it matches the installed plotly's plotly.js, else the full bundle."""
    from plotly.offline import get_plotlyjs_version

    want, have = get_plotlyjs_version(), bundle_version(PLOTLY_2D)
    if have != want:
        log.warning(
            "app/static/plotly-cartesian.min.js is plotly.js %s, plotly ships %s: serving the full "
            "bundle to every page (see app/static/README.md to update it)",
            have,
            want,
        )

    def plotly_2d() -> flask.Response:
        if have != want:
            return flask.redirect(app.get_relative_path(PLOTLY_FULL))
        return flask.send_file(PLOTLY_2D, mimetype="text/javascript", max_age=86_400)

    app.server.add_url_rule("/_bookrec/plotly-2d.js", "bookrec_plotly_2d", plotly_2d)


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


def create_app(
    db_path: str | Path,
    *,
    warm: bool = False,
    threads: int | None = None,
    debug: bool = False,
    api_token: str | None = None,
) -> dash.Dash:
    """Build the dashboard over `db_path` (opened read-only once per process, DuckDB limited to
    `threads` threads when given); `debug` turns on Dash's dev tools (the browser's error overlay).
    The JSON API (app/api) is mounted at /api/v1 on the same Flask server; a non-empty
    `api_token` makes it require `Authorization: Bearer <api_token>`."""
    store = data.init(db_path, warm=warm, threads=threads)
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
                    # the file name only: the server's directories are no visitor's business
                    html.Small(f"database: {store.path.name}", className="text-muted"),
                    fluid="xl",
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
    plotly_2d_route(app)
    api.install(app.server, api_token)  # before the first request: Flask refuses blueprints after
    if debug:
        # before the warm-up request below: Flask refuses new error handlers after a first request
        app.enable_dev_tools(debug=True, dev_tools_hot_reload=False)
    if warm:
        # build every page once: the first figure pays for Plotly's templates and validators (~0.2 s)
        for page in dash.page_registry.values():
            layout = page["layout"]
            if callable(layout):
                layout()
        # Serve a first request now: Dash registers the script paths it may serve while it sets up
        # on a process's first request, and in a gunicorn worker a script request racing that
        # setup in another thread got a 500 ("the path requested is not valid"): a blank page.
        client = app.server.test_client()
        for path in ("/", "/_dash-layout", "/_dash-dependencies"):
            client.get(path).close()
    return app
