"""`bookrec serve`: the Dash dashboard over the DuckDB file (read-only)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import click

from engine.commands.options import db_option
from engine.errors import ConfigError


def _check_port(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {host}:{port}: {exc.strerror}",
                hint="Pick another --port or stop what uses it",
            ) from None


@click.command()
@db_option
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Interface to listen on (0.0.0.0 for all).",
)
@click.option(
    "--port",
    default=8050,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="Port to listen on.",
)
@click.option(
    "--debug", is_flag=True, help="Dash debug mode: reload on change, error overlay in the browser."
)
def serve(db_path: Path, host: str, port: int, debug: bool) -> None:
    """Start the dashboard (http://127.0.0.1:8050 by default); the database is opened read-only."""
    _check_port(host, port)
    from app.main import create_app  # the dashboard's imports (dash, plotly) stay out of the engine

    start = time.perf_counter()
    app = create_app(db_path, warm=True)
    click.echo(
        f"bookrec: {db_path} loaded in {time.perf_counter() - start:.1f} s; "
        f"dashboard on http://{host}:{port} (Ctrl+C to stop)"
    )
    app.run(host=host, port=port, debug=debug, use_reloader=False, threaded=True)


commands = [serve]
