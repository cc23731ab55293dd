"""Published snapshots of a database for `bookrec serve`: its workers never hold the live file.

DuckDB lets one process write a file or many read it, never both. A server holding the live file
read-only would lock every stage out, so `publish(db)` copies it instead: the live file is opened
read-only (which fails while a writer holds it, so the copy is never of a half-written state, and
no writer can start until the copy is done), copied (with its .wal, if a crashed writer left one:
a read-only open replays it, and so does the copy's), verified by opening the copy and reading its
newest stage run, and then named by a pointer file written atomically:

    <db dir>/.serving/<db name>/<stamp>/<db name>   the snapshot (same file name as the live one)
    <db dir>/.serving/<db name>/current             JSON: snapshot, stage runs, newest stage run

`refresh(db)` publishes only when the live file records a stage run the current snapshot lacks.
`python -m engine.snapshot publish|refresh DB` prints the pointer as one JSON line: the gunicorn
master runs it in a child process, so it never imports DuckDB or Polars itself (its workers are
forked from it, and neither library's threads survive a fork). Never imports dash.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from engine import db
from engine.errors import BookrecError, DatabaseError

POINTER = "current"
KEEP = 2  # snapshots kept: the current one and the previous one (its workers may still finish)
STALE_TMP_S = 3600.0  # an unfinished copy this old belongs to a publisher that died


def serving_dir(db_path: str | Path) -> Path:
    """Where the snapshots of `db_path` live: <db dir>/.serving/<db file name>/."""
    path = Path(db_path).resolve()
    return path.parent / ".serving" / path.name


def _wal(path: Path) -> Path:
    return path.with_name(path.name + ".wal")


def _marker(con: Any) -> dict[str, Any]:
    """How many stage runs a database holds and which is newest (what a reload compares)."""
    runs, last = con.execute("SELECT count(*), max(finished_at) FROM stage_runs").fetchone()
    stage = con.execute(
        "SELECT stage FROM stage_runs ORDER BY finished_at DESC, stage LIMIT 1"
    ).fetchall()
    return {
        "runs": int(runs),
        "finished_at": last.isoformat(sep=" ", timespec="seconds") if last else None,
        "finished_at_exact": last.isoformat() if last else None,
        "stage": stage[0][0] if stage else None,
    }


def _same(a: dict[str, Any] | None, b: dict[str, Any]) -> bool:
    return a is not None and all(a.get(k) == b[k] for k in ("runs", "finished_at_exact", "stage"))


def state(db_path: str | Path) -> dict[str, Any] | None:
    """The pointer of `db_path`'s current snapshot (None when none was published or it is gone)."""
    try:
        found = json.loads((serving_dir(db_path) / POINTER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return found if Path(found.get("snapshot", "")).is_file() else None


def current(db_path: str | Path) -> Path | None:
    """The snapshot of `db_path` that a worker should open now, or None."""
    found = state(db_path)
    return Path(found["snapshot"]) if found else None


def publish(db_path: str | Path) -> Path:
    """Copy the live file to a new snapshot and point `current` at it; DatabaseError when locked."""
    return Path(_publish(Path(db_path), only_if_newer=False)["snapshot"])


def refresh(db_path: str | Path) -> dict[str, Any]:
    """Publish when the live file records a stage run the current snapshot lacks; the pointer
    with "published": whether a new snapshot was made."""
    return _publish(Path(db_path), only_if_newer=True)


def _publish(live: Path, *, only_if_newer: bool) -> dict[str, Any]:
    live = live.resolve()
    root = serving_dir(live)
    before = state(live)
    con = db.connect(live, read_only=True)  # missing, stale or write-locked: one clear line
    tmp = None
    try:
        marker = _marker(con)
        if only_if_newer and _same(before, marker):
            return {**before, "published": False}
        stamp = time.strftime("%Y%m%dT%H%M%S") + f"-{time.time_ns() % 10**9:09d}-{os.getpid()}"
        tmp = root / f"{stamp}.tmp"
        tmp.mkdir(parents=True)
        # the read-only connection is still open: no writer can change the file while we copy
        shutil.copyfile(live, tmp / live.name)
        if _wal(live).exists():
            shutil.copyfile(_wal(live), tmp / _wal(live).name)
    except BaseException:
        con.close()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    con.close()
    try:
        copy = db.connect(tmp / live.name, read_only=True)
        try:
            copied = _marker(copy)
        finally:
            copy.close()
        if copied != marker:
            raise DatabaseError(
                "the snapshot does not match the database it was copied from",
                where=str(tmp),
                hint="Check the disk (space, errors) and run `bookrec serve` again",
            )
        for f in tmp.iterdir():
            f.chmod(0o444)  # a snapshot is read-only by contract
        os.replace(tmp, root / stamp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    pointer = {
        "snapshot": str(root / stamp / live.name),
        "source": str(live),
        "published_at": datetime.now().isoformat(sep=" ", timespec="seconds"),
        **marker,
    }
    _write_atomic(root / POINTER, json.dumps(pointer, indent=1) + "\n")
    prune(live)
    return {**pointer, "published": True}


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def prune(db_path: str | Path, keep: int = KEEP) -> list[Path]:
    """Remove all but the `keep` newest snapshots (never the current one) and dead unfinished
    copies; the removed directories back. A worker still reading a removed snapshot is unharmed:
    on POSIX an open file outlives its name."""
    root = serving_dir(db_path)
    if not root.is_dir():
        return []
    now = time.time()
    live = current(db_path)
    done = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.endswith(".tmp"))
    removed = [p for p in done[:-keep] if live is None or live.parent != p]
    removed += [
        p
        for p in root.iterdir()
        if p.is_dir() and p.name.endswith(".tmp") and now - p.stat().st_mtime > STALE_TMP_S
    ]
    for p in removed:
        shutil.rmtree(p, ignore_errors=True)
    return removed


def main(argv: list[str] | None = None) -> int:
    """`python -m engine.snapshot publish|refresh DB`: the pointer as one JSON line on stdout, or
    {"error": "..."} (always exit 0: a gunicorn master may reap this process before it can)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] not in ("publish", "refresh"):
        print("usage: python -m engine.snapshot publish|refresh DB", file=sys.stderr)
        return 2
    try:
        found = _publish(Path(args[1]), only_if_newer=args[0] == "refresh")
    except BookrecError as exc:
        found = {"error": exc.line()}
    print(json.dumps(found), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
