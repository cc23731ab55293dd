"""The dashboard's server: gunicorn, N worker processes x T threads, each with its own read-only Store.

`bookrec serve` checks its arguments and the database, then replaces itself (exec) with

    python -m app.server --db PATH --host H --port P --workers N --threads T

in a fresh interpreter whose math libraries (OpenBLAS, OpenMP, Polars) are limited to their share
of the cores (cores // workers) before anything imports them.

Why processes: a callback spends most of its time in GIL-bound Python (building components,
JSON), so in one process 8 concurrent clients queue behind one core whatever the core count. Why
not fork a preloaded app: Polars' thread pool does not survive fork (a child that touches it
deadlocks), so each worker opens the database itself and loads its own indexes (about 1.4 GB and
7 s at full Book-Crossing size, in parallel); the master only binds the port and supervises.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

# what a worker's libraries may use; set by `bookrec serve` before this interpreter starts
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "POLARS_MAX_THREADS")
API_TOKEN_VAR = "BOOKREC_SERVE_API_TOKEN"  # the JSON API's bearer token (set by `bookrec serve`)


def thread_env(workers: int, environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for the server: each library thread pool gets cores // workers threads,
    unless the user set its variable already."""
    env = dict(os.environ if environ is None else environ)
    share = str(max(1, (os.cpu_count() or 1) // max(1, workers)))
    for var in THREAD_VARS:
        env.setdefault(var, share)
    return env


def command(db_path: Path, host: str, port: int, workers: int, threads: int) -> list[str]:
    """The argv that `bookrec serve` execs."""
    return [
        sys.executable,
        "-m",
        "app.server",
        "--db",
        str(db_path),
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--threads",
        str(threads),
    ]


def _worker_threads() -> int:
    return int(os.environ.get("POLARS_MAX_THREADS", "0")) or (os.cpu_count() or 1)


def serve(db_path: Path, host: str, port: int, workers: int, threads: int) -> None:
    """Run gunicorn until interrupted (gthread workers, the app loaded in each worker)."""
    from gunicorn.app.base import BaseApplication

    class Dashboard(BaseApplication):
        def __init__(self) -> None:
            self.options: dict[str, Any] = {
                "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
                "workers": workers,
                "worker_class": "gthread",
                "threads": threads,
                "preload_app": False,  # see the module docstring: no fork after Polars ran
                "timeout": 120,  # a worker loads its indexes before it answers
                "graceful_timeout": 10,
                "accesslog": None,
                "errorlog": "-",
                "loglevel": "warning",
                "proc_name": "bookrec-serve",
                "control_socket_disable": True,
            }
            super().__init__()

        def load_config(self) -> None:
            for key, value in self.options.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            from app.main import create_app

            start = time.perf_counter()
            # the token travels in the environment (BOOKREC_SERVE_API_TOKEN), never on argv
            app = create_app(
                db_path,
                warm=True,
                threads=_worker_threads(),
                api_token=os.environ.get(API_TOKEN_VAR) or None,
            )
            print(
                f"bookrec: worker {os.getpid()} ready in {time.perf_counter() - start:.1f} s",
                flush=True,
            )
            return app.server

    url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    print(
        f"bookrec: dashboard on {url} ({workers} worker{'s' * (workers > 1)} x "
        f"{threads} threads; each loads {db_path} read-only; Ctrl+C to stop)\n"
        f"bookrec: JSON API on {url}/api/v1 (docs {url}/api/v1/docs"
        f"{'; token required' if os.environ.get(API_TOKEN_VAR) else ''})",
        flush=True,
    )
    Dashboard().run()


def main(argv: list[str] | None = None) -> None:
    """Entry point of `python -m app.server` (use `bookrec serve`, which checks the arguments)."""
    ap = argparse.ArgumentParser(prog="python -m app.server", description=__doc__)
    ap.add_argument("--db", type=Path, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8050)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=4)
    args = ap.parse_args(argv)
    serve(args.db, args.host, args.port, args.workers, args.threads)


if __name__ == "__main__":
    main()
