"""A running `bookrec serve` serves a published snapshot and reloads it (issue 13).

Real processes on small files: snapshot publishing (a consistent copy, a crashed writer's WAL, a
held file refused), db.connect waiting for another process's lock, and one `bookrec serve` (one
gunicorn worker, reload_poll 0.3 s) over a copy of the dashboard fixture that a writer changes
while it runs: a recorded stage run is served without a restart, a write held open is not, and
`kill -HUP` publishes what no stage run recorded.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from engine import db, pipeline, snapshot
from engine.errors import DatabaseError

REPO = Path(__file__).resolve().parents[1]
POLL = 0.3


def _hold(path: Path, seconds: float, *, read_only: bool, script: str = "") -> subprocess.Popen:
    """A child process holding `path` open (a DuckDB lock) for `seconds`; prints 'held' first."""
    code = (
        "import duckdb, sys, time\n"
        f"con = duckdb.connect({str(path)!r}, read_only={read_only})\n"
        f"{script}\n"
        "print('held', flush=True)\n"
        f"time.sleep({seconds})\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def _add_book(path: Path, isbn: str, *, record: bool) -> None:
    con = db.connect(path)
    with db.transaction(con):
        con.execute("INSERT INTO books (isbn, title, author) VALUES (?, 'New', 'Someone')", [isbn])
        if record:
            pipeline.record(con, "test", isbn, {}, {}, {})
    con.close()


def _books(path: Path) -> int:
    con = db.connect(path, read_only=True)
    try:
        return con.execute("SELECT count(*) FROM books").fetchone()[0]
    finally:
        con.close()


@pytest.fixture()
def small_db(tmp_path, app_db) -> Path:
    path = tmp_path / "live.duckdb"
    shutil.copyfile(app_db, path)
    return path


# --- snapshots --------------------------------------------------------------------------------


def test_publish_gives_a_consistent_copy_and_a_pointer(small_db):
    _add_book(small_db, "X1", record=True)
    first = snapshot.publish(small_db)
    assert first.name == small_db.name and first.parent.parent == snapshot.serving_dir(small_db)
    assert snapshot.current(small_db) == first and _books(first) == _books(small_db)
    pointer = snapshot.state(small_db)
    assert pointer["stage"] == "test" and pointer["runs"] >= 1 and pointer["finished_at"]
    db.connect(small_db, lock_wait=0).close()  # publishing left no lock behind
    # nothing new: refresh keeps the snapshot; a recorded run makes a new one; two are kept
    assert snapshot.refresh(small_db)["published"] is False
    _add_book(small_db, "X2", record=True)
    second = Path(snapshot.refresh(small_db)["snapshot"])
    assert second != first and snapshot.current(small_db) == second
    assert _books(second) == _books(first) + 1
    _add_book(small_db, "X3", record=True)
    third = snapshot.publish(small_db)
    kept = sorted(p for p in snapshot.serving_dir(small_db).iterdir() if p.is_dir())
    assert [p / small_db.name for p in kept] == [second, third]


def test_publish_refuses_a_file_a_writer_holds(small_db):
    writer = _hold(small_db, 20, read_only=False)
    try:
        with pytest.raises(DatabaseError, match="in use by another process"):
            snapshot.publish(small_db)
    finally:
        writer.kill()
        writer.wait()
    assert snapshot.current(small_db) is None
    assert not any(snapshot.serving_dir(small_db).glob("*.tmp"))


def test_publish_keeps_what_a_crashed_writer_committed(small_db):
    """A writer killed after COMMIT leaves a .wal: the snapshot (with its WAL) has the row."""
    before = _books(small_db)
    crash = (
        "con.execute(\"INSERT INTO books (isbn, title) VALUES ('WAL1', 't')\")\n"
        "import os; os.kill(os.getpid(), 9)"
    )
    code = f"import duckdb\ncon = duckdb.connect({str(small_db)!r})\n{crash}\n"
    subprocess.run([sys.executable, "-c", code], check=False)
    assert small_db.with_name(small_db.name + ".wal").exists()
    assert _books(snapshot.publish(small_db)) == before + 1


# --- writers wait for a lock --------------------------------------------------------------------


def test_connect_waits_for_a_lock_then_succeeds(small_db, capsys):
    reader = _hold(small_db, 1.5, read_only=True)
    start = time.monotonic()
    db.connect(small_db, lock_wait=20).close()
    assert time.monotonic() - start > 0.5
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"waiting for the database lock held by PID {reader.pid}" in err[0]
    reader.wait()


def test_connect_gives_up_with_one_clear_line(small_db, capsys, monkeypatch):
    reader = _hold(small_db, 20, read_only=True)
    monkeypatch.setattr(db, "LOCK_WAIT_S", 0.6)
    try:
        start = time.monotonic()
        with pytest.raises(DatabaseError) as caught:
            db.connect(small_db)
        assert 0.5 < time.monotonic() - start < 5
    finally:
        reader.kill()
        reader.wait()
    line = caught.value.line()
    assert "in use by another process" in line and str(reader.pid) in line and "\n" not in line


# --- a running server ---------------------------------------------------------------------------


def _health(base: str) -> dict | None:
    try:
        with urllib.request.urlopen(base + "/api/v1/health", timeout=10) as resp:
            return json.loads(resp.read())
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def _until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def server(app_db, tmp_path_factory):
    """`bookrec serve` (one worker, reload_poll 0.3 s) over a copy of the fixture database."""
    import socket

    live = tmp_path_factory.mktemp("serve") / "live.duckdb"
    shutil.copyfile(app_db, live)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tempfile.NamedTemporaryFile(suffix=".log")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "serve", "--db", str(live), "--port", str(port)]
        + ["--workers", "1", "--threads", "2", "--reload-poll", str(POLL)],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"

    def output() -> str:
        return Path(log.name).read_text(errors="replace")

    try:
        _until(lambda: proc.poll() is not None or _health(base), 90, "bookrec serve to answer")
        assert proc.poll() is None, output()
        yield base, live, proc, output
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_a_stage_writes_while_serving_and_is_served_without_restart(server):
    base, live, proc, output = server
    books = _health(base)["books"]
    # before issue 13 the workers held the live file: this connect failed with a lock error
    con = db.connect(live, lock_wait=5)
    with db.transaction(con):
        con.execute("INSERT INTO books (isbn, title) VALUES ('NEW000001', 'New')")
        pipeline.record(con, "test", "fp-new", {}, {}, {})
    # the writer still holds the file: the server keeps answering from the old snapshot
    time.sleep(4 * POLL)
    assert _health(base)["books"] == books
    con.close()
    _until(lambda: (_health(base) or {}).get("books") == books + 1, 45, "the new state")
    assert proc.poll() is None and f"master PID {proc.pid}" in output()
    assert "new database state (stage test at " in output()
    assert "reloading workers" in output()


def test_sighup_publishes_what_no_stage_run_recorded(server):
    base, live, proc, output = server
    _until(lambda: "stopping the old ones" in output(), 45, "the previous reload to finish")
    books = _health(base)["books"]
    before = snapshot.current(live)
    _add_book(live, "NEW000002", record=False)
    time.sleep(6 * POLL)  # polls see the file change but no new stage run: no reload
    assert _health(base)["books"] == books and snapshot.current(live) == before
    os.kill(proc.pid, signal.SIGHUP)
    _until(lambda: (_health(base) or {}).get("books") == books + 1, 45, "the SIGHUP reload")
    assert snapshot.current(live) != before and proc.poll() is None
    assert output().count("SIGHUP: publishing") == 1


def test_reload_poll_setting_and_the_server_argv():
    from app.server import command
    from engine import config
    from engine.commands.serve import ServeSettings
    from engine.errors import ConfigError

    assert config.load_settings(ServeSettings, "serve", {}).reload_poll == 5.0
    assert config.load_settings(ServeSettings, "serve", {"reload_poll": 0}).reload_poll == 0
    with pytest.raises(ConfigError):
        config.load_settings(ServeSettings, "serve", {"reload_poll": -1})
    argv = command(Path("x.duckdb"), "127.0.0.1", 8123, 2, 3, snapshot=Path("s"), reload_poll=0.5)
    assert argv[argv.index("--snapshot") + 1] == "s" and "0.5" in argv
