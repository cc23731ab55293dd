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

Workers open a published snapshot of the file (engine/snapshot.py), never the live one, so stages
can write while the server runs. The master (`Reloader`) watches the live file and renews the
snapshot when a stage records a new run, or on SIGHUP, then rolls the workers: N new ones load the
new snapshot while the old ones keep answering, and only once the new ones are ready are the old
ones stopped gracefully (their requests in flight finish on the old state). The master itself never
imports DuckDB or Polars (it forks the workers): it stats the file, and runs
`python -m engine.snapshot` in a child process to compare and copy.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import subprocess
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


def command(
    db_path: Path,
    host: str,
    port: int,
    workers: int,
    threads: int,
    *,
    snapshot: Path | None = None,
    reload_poll: float = 5.0,
) -> list[str]:
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
        *(["--snapshot", str(snapshot)] if snapshot else []),
        "--reload-poll",
        str(reload_poll),
        "--workers",
        str(workers),
        "--threads",
        str(threads),
    ]


def _worker_threads() -> int:
    return int(os.environ.get("POLARS_MAX_THREADS", "0")) or (os.cpu_count() or 1)


def _say(line: str) -> None:
    print(f"bookrec: {line}", flush=True)


def _file_state(db_path: Path) -> tuple[Any, ...]:
    """(mtime_ns, size) of the database and of its .wal: what changes when a stage writes."""
    out: list[Any] = []
    for path in (db_path, db_path.with_name(db_path.name + ".wal")):
        try:
            st = path.stat()
            out.append((st.st_mtime_ns, st.st_size))
        except OSError:
            out.append(None)
    return tuple(out)


def _write_locked(db_path: Path) -> bool:
    """Whether a writer holds the database now (DuckDB's fcntl lock), without opening it in DuckDB.

    The probe takes a shared lock for an instant; a writer starting just then waits (db.connect)."""
    try:
        fd = os.open(db_path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.lockf(fd, fcntl.LOCK_UN)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


class _Job:
    """`python -m engine.snapshot publish|refresh DB` in a child process, read without blocking.

    Its answer is the JSON line it prints, never its exit status: gunicorn's master reaps every
    child (waitpid(-1)), so the status may be gone before we ask."""

    def __init__(self, action: str, db_path: Path):
        self.action = action
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "engine.snapshot", action, str(db_path)],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
        assert self.proc.stdout is not None
        os.set_blocking(self.proc.stdout.fileno(), False)
        self.out = b""
        self.started = time.monotonic()

    def result(self) -> dict[str, Any] | None:
        """The child's answer once it has finished, else None."""
        assert self.proc.stdout is not None
        while True:
            try:
                chunk = self.proc.stdout.read()
            except BlockingIOError:
                chunk = None
            if chunk is None:  # nothing more for now
                if time.monotonic() - self.started < 600:
                    return None
                self.proc.kill()
                return self._finish({"error": "the snapshot copy took over 10 minutes"})
            if chunk == b"":
                lines = self.out.decode(errors="replace").strip().splitlines()
                try:
                    found = json.loads(lines[-1])
                except (IndexError, ValueError):
                    found = {"error": "the snapshot process printed no answer"}
                return self._finish(found)
            self.out += chunk

    def _finish(self, found: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        with contextlib.suppress(subprocess.TimeoutExpired, ChildProcessError):
            self.proc.wait(timeout=5)
        return found


class Reloader:
    """The master's side of reloads, run from gunicorn's main loop (no thread: the master forks).

    Each pass of the loop (at least once a second) it reads which workers finished loading (they
    write their pid to a pipe from post_worker_init), every `poll` seconds stats the live file and,
    when it changed and no writer holds it, asks a child process to publish a snapshot if a newer
    stage run is recorded; a SIGHUP publishes one unconditionally. A new snapshot starts a roll."""

    def __init__(self, db_path: Path, snapshot: Path, poll: float):
        self.db_path, self.snapshot, self.poll = db_path, snapshot, poll
        self.arbiter: Any = None
        self._ready_r, self._ready_w = os.pipe()
        os.set_blocking(self._ready_r, False)
        self._ready: set[int] = set()
        self._buf = b""
        self._job: _Job | None = None
        self._hup_at: float | None = None  # when to publish for a SIGHUP (None: not asked)
        self._error = ""  # the last failure said, so a lasting one is said once
        self._pending: dict[str, Any] | None = None  # published, waiting for a roll
        self._roll: tuple[frozenset[int], int, float] | None = None  # old pids, workers, start
        self._seen: tuple[Any, ...] | None = None  # None: check at the first poll
        self._next_poll = time.monotonic() + poll

    # gunicorn hooks --------------------------------------------------------------------------

    def when_ready(self, arbiter: Any) -> None:
        """Hook the arbiter: our HUP handler, and a pass of `tick` before each manage_workers."""
        self.arbiter = arbiter
        manage = arbiter.manage_workers

        def manage_workers() -> None:
            try:
                self.tick()
            except Exception as exc:  # a reload problem must never take the server down
                _say(
                    f"reload check failed ({type(exc).__name__}: {exc}); serving the last snapshot"
                )
                self._job, self._seen = None, None
            manage()

        arbiter.manage_workers = manage_workers
        arbiter.handle_hup = self.handle_hup

    def post_worker_init(self, worker: Any) -> None:
        """In a worker, once its app is loaded: tell the master it can take requests."""
        os.close(self._ready_r)
        os.write(self._ready_w, f"{os.getpid()}\n".encode())

    def handle_hup(self) -> None:
        """SIGHUP (a user's `kill -HUP`): publish the file as it is now, then roll the workers."""
        _say("SIGHUP: publishing a fresh snapshot of the database")
        self._hup_at = time.monotonic()
        self._error = ""

    # the master's loop -----------------------------------------------------------------------

    def tick(self) -> None:
        """One pass: collect ready workers and a finished copy, advance a roll, start a check."""
        self._read_ready()
        if self._job is not None and (found := self._job.result()) is not None:
            self._done(self._job.action, found)
            self._job = None
        if self._roll is not None:
            self._advance()
        elif self._pending is not None:
            self._start(self._pending)
        if self._job is not None:
            return
        now = time.monotonic()
        if self._hup_at is not None and now >= self._hup_at:
            self._hup_at = None
            self._job = _Job("publish", self.db_path)
        elif self.poll and now >= self._next_poll:
            self._next_poll = now + self.poll
            seen = _file_state(self.db_path)
            if seen != self._seen and not _write_locked(self.db_path):
                self._seen = seen
                self._job = _Job("refresh", self.db_path)

    def _read_ready(self) -> None:
        while True:
            try:
                chunk = os.read(self._ready_r, 4096)
            except BlockingIOError:
                break
            if not chunk:
                break
            self._buf += chunk
        *lines, self._buf = self._buf.split(b"\n")
        self._ready.update(int(x) for x in lines if x.strip().isdigit())

    def _done(self, action: str, found: dict[str, Any]) -> None:
        if "error" in found:
            if found["error"] != self._error:
                _say(f"cannot publish a snapshot ({found['error']}): serving the last one")
                self._error = found["error"]
            self._seen = None  # try again at the next poll
            if action == "publish":  # a SIGHUP's publish: again in a while
                self._hup_at = time.monotonic() + max(self.poll, 5.0)
            return
        self._error = ""
        if found.get("published"):
            self._pending = found

    def _start(self, found: dict[str, Any]) -> None:
        self._pending = None
        self.snapshot = Path(found["snapshot"])  # what every worker forked from now on opens
        n = self.arbiter.num_workers
        self._roll = (frozenset(self.arbiter.WORKERS), n, time.monotonic())
        _say(
            f"new database state (stage {found.get('stage')} at {found.get('finished_at')}): "
            "reloading workers"
        )
        self.arbiter.num_workers = 2 * n  # manage_workers spawns n more, right after this pass

    def _advance(self) -> None:
        assert self._roll is not None
        old, n, start = self._roll
        fresh = [p for p in self.arbiter.WORKERS if p not in old and p in self._ready]
        if len(fresh) < n and time.monotonic() - start < 2 * self.arbiter.timeout:
            return
        self._roll = None
        self._ready &= set(self.arbiter.WORKERS)
        self.arbiter.num_workers = n  # manage_workers stops the oldest: the old workers
        _say(
            f"{len(fresh)} worker{'s' * (len(fresh) != 1)} on the new state after "
            f"{time.monotonic() - start:.1f} s; stopping the old ones"
        )


def serve(
    db_path: Path,
    host: str,
    port: int,
    workers: int,
    threads: int,
    *,
    snapshot: Path | None = None,
    reload_poll: float = 5.0,
) -> None:
    """Run gunicorn until interrupted (gthread workers, the app loaded in each worker)."""
    from gunicorn.app.base import BaseApplication

    if snapshot is None:  # started without `bookrec serve`: publish the first snapshot here
        done = subprocess.run(
            [sys.executable, "-m", "engine.snapshot", "publish", str(db_path)],
            capture_output=True,
            text=True,
        )
        found = json.loads(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else {}
        if "snapshot" not in found:
            sys.exit(f"bookrec: {found.get('error') or done.stderr.strip()[-500:]}")
        snapshot = Path(found["snapshot"])
    reloader = Reloader(db_path, snapshot, reload_poll)

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
                "when_ready": reloader.when_ready,
                "post_worker_init": reloader.post_worker_init,
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
                reloader.snapshot,  # set in the master before this worker was forked
                warm=True,
                threads=_worker_threads(),
                api_token=os.environ.get(API_TOKEN_VAR) or None,
            )
            print(
                f"bookrec: worker {os.getpid()} ready in {time.perf_counter() - start:.1f} s "
                f"({reloader.snapshot.parent.name})",
                flush=True,
            )
            return app.server

    url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    watch = f"checked every {reload_poll:g} s" if reload_poll else "reload with SIGHUP"
    print(
        f"bookrec: dashboard on {url} ({workers} worker{'s' * (workers > 1)} x "
        f"{threads} threads; each loads a read-only snapshot of {db_path}, {watch}; "
        f"master PID {os.getpid()}; Ctrl+C to stop)\n"
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
    ap.add_argument("--snapshot", type=Path, default=None)
    ap.add_argument("--reload-poll", type=float, default=5.0)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=4)
    args = ap.parse_args(argv)
    serve(
        args.db,
        args.host,
        args.port,
        args.workers,
        args.threads,
        snapshot=args.snapshot,
        reload_poll=args.reload_poll,
    )


if __name__ == "__main__":
    main()
