"""`bookrec serve`: the Dash dashboard over the DuckDB file (read-only), served by gunicorn."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import socket
import time
from pathlib import Path

import click

from engine import config, db, snapshot
from engine.commands.options import db_option
from engine.errors import ConfigError, DatabaseError


@dataclasses.dataclass(frozen=True)
class ServeSettings:
    """[serve] in bookrec.toml, BOOKREC_SERVE_<FIELD>, or the flags.

    workers: processes, each with its own copy of the indexes (~1.4 GB at full Book-Crossing size);
    0 means one per core, at most 4. threads: requests one worker answers at once.
    reload_poll: seconds between checks for a newer stage run in the database (then the workers
    are replaced, one snapshot later); 0 turns the check off (a SIGHUP still reloads)."""

    host: str = "127.0.0.1"
    port: int = 8050
    workers: int = 0
    threads: int = 4
    reload_poll: float = 5.0
    # the JSON API's bearer token: required when host is not loopback (never printed or logged)
    api_token: str = dataclasses.field(default="", repr=False)

    def __post_init__(self) -> None:
        if not 1 <= self.port <= 65535:
            raise ValueError(f"port {self.port} is not in 1..65535")
        if self.workers < 0 or self.threads < 1:
            raise ValueError("workers must be >= 0 and threads >= 1")
        if not 0 <= self.reload_poll < float("inf"):
            raise ValueError(f"reload_poll {self.reload_poll} must be >= 0 seconds")

    @property
    def processes(self) -> int:
        """Worker processes to start (resolves workers = 0)."""
        return self.workers or max(1, min(4, os.cpu_count() or 1))


def is_loopback(host: str) -> bool:
    """Whether `host` names only this machine (127.0.0.0/8, ::1 or localhost)."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_debug(host: str) -> None:
    if not is_loopback(host):
        raise ConfigError(
            f"--debug serves Flask's debugger, which runs code sent to it, so it listens on "
            f"loopback only, not on {host}",
            hint="Drop --host (127.0.0.1 is the default) or drop --debug",
        )


def _check_token(host: str, token: str) -> None:
    if not is_loopback(host) and not token:
        raise ConfigError(
            f"the JSON API would answer anyone who can reach {host}: give it a token",
            hint="Pass --api-token TOKEN (or [serve] api_token / BOOKREC_SERVE_API_TOKEN), "
            "or drop --host (127.0.0.1 is the default)",
        )


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


def _first_snapshot(db_path: Path) -> Path:
    """Publish the snapshot the workers open first (a missing or stale database fails here, in
    one line); while a stage holds the file, serve the last snapshot if there is one."""
    try:
        return snapshot.publish(db_path)
    except DatabaseError as exc:
        last = snapshot.current(db_path)
        if last is None or "in use" not in exc.what:
            raise
        found = snapshot.state(db_path) or {}
        click.echo(
            f"bookrec: {exc.what}: serving the last snapshot (stage {found.get('stage')} at "
            f"{found.get('finished_at')}) until it is free",
            err=True,
        )
        return last


@click.command()
@db_option
@click.option(
    "--host", default=None, help="Interface to listen on (0.0.0.0 for all).  [default: 127.0.0.1]"
)
@click.option(
    "--port",
    default=None,
    type=click.IntRange(1, 65535),
    help="Port to listen on.  [default: 8050]",
)
@click.option(
    "--workers",
    default=None,
    type=click.IntRange(0, 64),
    help="Worker processes, each loads the indexes (0: one per core, at most 4).  [default: 0]",
)
@click.option(
    "--threads", default=None, type=click.IntRange(1, 64), help="Threads per worker.  [default: 4]"
)
@click.option(
    "--reload-poll",
    default=None,
    type=click.FloatRange(0),
    help="Seconds between checks for a newer stage run (workers then reload; 0: off, SIGHUP "
    "still reloads).  [default: 5]",
)
@click.option(
    "--api-token",
    default=None,
    help="Bearer token the JSON API (/api/v1) requires; needed when --host is not loopback "
    "(also [serve] api_token or BOOKREC_SERVE_API_TOKEN).",
)
@click.option(
    "--debug",
    is_flag=True,
    help="Flask's development server and debugger in this process, with Dash's error overlay in "
    "the browser; loopback hosts only.",
)
def serve(
    db_path: Path,
    host: str | None,
    port: int | None,
    workers: int | None,
    threads: int | None,
    reload_poll: float | None,
    api_token: str | None,
    debug: bool,
) -> None:
    """Start the dashboard (http://127.0.0.1:8050 by default) over a read-only snapshot of the
    database, renewed when a stage records a new run (--debug: the file itself, no reloads)."""
    settings = config.load_settings(
        ServeSettings,
        "serve",
        {
            "host": host,
            "port": port,
            "workers": workers,
            "threads": threads,
            "reload_poll": reload_poll,
            "api_token": api_token,
        },
    )
    if debug:
        _check_debug(settings.host)
    _check_token(settings.host, settings.api_token)
    _check_port(settings.host, settings.port)
    if not debug:
        from app.server import API_TOKEN_VAR, command, thread_env  # loaded in the new process

        argv = command(
            db_path,
            settings.host,
            settings.port,
            settings.processes,
            settings.threads,
            snapshot=_first_snapshot(db_path),
            reload_poll=settings.reload_poll,
        )
        env = thread_env(settings.processes)
        env.pop(API_TOKEN_VAR, None)
        if settings.api_token:
            env[API_TOKEN_VAR] = settings.api_token  # the environment, not argv (ps shows argv)
        os.execve(argv[0], argv, env)
    # a missing or stale database fails here, in one line, before the server starts
    db.connect(db_path, read_only=True).close()
    from app.main import create_app  # the dashboard's imports (dash, plotly) stay out of the engine

    start = time.perf_counter()
    app = create_app(db_path, warm=True, debug=True, api_token=settings.api_token or None)
    click.echo(
        f"bookrec: {db_path} loaded in {time.perf_counter() - start:.1f} s; "
        f"dashboard on http://{settings.host}:{settings.port} (debug server; Ctrl+C to stop); "
        f"JSON API on http://{settings.host}:{settings.port}/api/v1 (docs /api/v1/docs)"
    )
    # Dash's dev tools are on already (create_app); Dash.run would set them up a second time
    app.server.run(
        host=settings.host, port=settings.port, debug=True, use_reloader=False, threaded=True
    )


commands = [serve]
