"""The only door to DuckDB: connect, migrate, load SQL by name, run named queries, swap tables."""

from __future__ import annotations

import hashlib
import re
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from engine.errors import DatabaseError

_MIGRATION_RE = re.compile(r"^(\d{3})_[\w-]+\.sql$")
_NAME_RE = re.compile(r"^--\s*name:\s*([A-Za-z_][\w]*)\s*$", re.MULTILINE)
_LOCK_PID_RE = re.compile(r"\(PID (\d+)\)")
LOCK_WAIT_S = 30.0  # how long a read-write connect waits for another process's lock


def sql_dir() -> Path:
    """Where the SQL files live: inside the installed package (wheel) or the checkout's sql/."""
    packaged = Path(__file__).parent / "sql"
    if packaged.is_dir():
        return packaged
    checkout = Path(__file__).resolve().parent.parent / "sql"
    if checkout.is_dir():
        return checkout
    raise DatabaseError(
        "bookrec's SQL files are missing", where=str(packaged), hint="Reinstall bookrec"
    )


def sql_text(relpath: str) -> str:
    """The text of one SQL file, e.g. sql_text('views/popular_books.sql')."""
    return (sql_dir() / relpath).read_text(encoding="utf-8")


@cache
def _named_queries() -> dict[str, str]:
    queries: dict[str, str] = {}
    for path in sorted((sql_dir() / "queries").glob("*.sql")):
        text = path.read_text(encoding="utf-8")
        marks = list(_NAME_RE.finditer(text))
        for i, mark in enumerate(marks):
            end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
            name = mark.group(1)
            if name in queries:
                raise DatabaseError(f"query {name} defined twice", where=path.name)
            queries[name] = text[mark.end() : end].strip().rstrip(";")
    return queries


def query_sql(name: str) -> str:
    """The SQL of a named query from sql/queries (blocks introduced by `-- name: NAME`)."""
    try:
        return _named_queries()[name]
    except KeyError:
        raise DatabaseError(f"no query named {name}", where="sql/queries") from None


def query(
    con: duckdb.DuckDBPyConnection, name: str, params: Mapping[str, Any] | None = None
) -> pl.DataFrame:
    """Run a named query with named parameters ($name) and return a Polars DataFrame."""
    return fetch(con, query_sql(name), params)


def fetch(
    con: duckdb.DuckDBPyConnection, sql: str, params: Mapping[str, Any] | None = None
) -> pl.DataFrame:
    """Run one SELECT (short, or from a .sql file) with named parameters; a Polars DataFrame back."""
    return con.sql(sql, params=dict(params) if params else None).pl()


def execute(
    con: duckdb.DuckDBPyConnection, name: str, params: Mapping[str, Any] | None = None
) -> None:
    """Run a named statement for its effect."""
    con.execute(query_sql(name), dict(params or {}))


def _migrations() -> list[tuple[int, Path]]:
    found = []
    for path in sorted((sql_dir() / "schema").glob("*.sql")):
        m = _MIGRATION_RE.match(path.name)
        if m:
            found.append((int(m.group(1)), path))
    return found


def _definitions() -> list[Path]:
    """View and macro files, applied in name order after migrations (macros may use views)."""
    root = sql_dir()
    return sorted((root / "views").glob("*.sql")) + sorted((root / "macros").glob("*.sql"))


def _definitions_hash() -> str:
    h = hashlib.sha256()
    for path in _definitions():
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def _pending(con: duckdb.DuckDBPyConnection) -> tuple[list[tuple[int, Path]], bool]:
    has_table = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_migrations'"
    ).fetchall()[0][0]
    applied: set[int] = set()
    defs_hash = None
    if has_table:
        applied = {r[0] for r in con.execute("SELECT version FROM schema_migrations").fetchall()}
        rows = con.execute(
            "SELECT value FROM schema_meta WHERE key = 'definitions_hash'"
        ).fetchall()
        defs_hash = rows[0][0] if rows else None
    pending = [(v, p) for v, p in _migrations() if v not in applied]
    return pending, defs_hash != _definitions_hash()


def migrate(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Apply pending numbered migrations, then (re)create views and macros if their files changed."""
    pending, stale_defs = _pending(con)
    done = []
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations"
            " (version INTEGER PRIMARY KEY, name VARCHAR, applied_at TIMESTAMP DEFAULT now())"
        )
        con.execute(
            "CREATE TABLE IF NOT EXISTS schema_meta (key VARCHAR PRIMARY KEY, value VARCHAR)"
        )
        for version, path in pending:
            con.execute(path.read_text(encoding="utf-8"))
            con.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (?, ?)", [version, path.name]
            )
            done.append(path.name)
        if stale_defs or pending:
            for path in _definitions():
                con.execute(path.read_text(encoding="utf-8"))
            con.execute(
                "INSERT OR REPLACE INTO schema_meta VALUES ('definitions_hash', ?)",
                [_definitions_hash()],
            )
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    return done


def _open(
    path: Path, read_only: bool, config: dict[str, Any], wait: float
) -> duckdb.DuckDBPyConnection:
    """duckdb.connect, retried for up to `wait` seconds while another process holds the lock."""
    deadline = time.monotonic() + wait
    told = False
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only, config=config)
        except duckdb.IOException as exc:
            msg = str(exc).splitlines()[0]
            if "lock" not in msg.lower():
                raise DatabaseError(f"cannot open database: {msg}", where=str(path)) from None
            holder = _LOCK_PID_RE.search(msg)
            who = f"PID {holder.group(1)}" if holder else "another process"
            if time.monotonic() >= deadline:
                raise DatabaseError(
                    f"database is in use by another process ({who})",
                    where=str(path),
                    hint="Stop the other writer (a running stage), or open it read-only",
                ) from None
            if not told:  # e.g. `bookrec serve` copying its snapshot: a moment, usually
                print(
                    f"bookrec: waiting for the database lock held by {who} ({path}), "
                    f"up to {wait:g} s",
                    file=sys.stderr,
                    flush=True,
                )
                told = True
            time.sleep(0.2)
        except duckdb.Error as exc:
            raise DatabaseError(
                f"not a DuckDB database: {str(exc).splitlines()[0]}", where=str(path)
            ) from None


def connect(
    path: str | Path,
    *,
    read_only: bool = False,
    threads: int | None = None,
    lock_wait: float | None = None,
) -> duckdb.DuckDBPyConnection:
    """Open the bookrec DuckDB file; read-write connections migrate, read-only ones must be current.

    A read-write open waits up to `lock_wait` seconds (default LOCK_WAIT_S) for another process's
    lock to go (a serving snapshot copy holds a read lock for a moment); read-only ones never wait."""
    path = Path(path)
    if read_only and not path.exists():
        raise DatabaseError(
            "database not found",
            where=str(path),
            hint="Run `bookrec ingest` (or `just demo`) first",
        )
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    config = {"threads": threads} if threads else {}
    wait = 0.0 if read_only else LOCK_WAIT_S if lock_wait is None else lock_wait
    con = _open(path, read_only, config, wait)
    if read_only:
        pending, stale = _pending(con)
        if pending or stale:
            con.close()
            raise DatabaseError(
                "database schema is older than this bookrec",
                where=str(path),
                hint="Run any bookrec stage (e.g. `bookrec migrate`) once to upgrade it",
            )
    else:
        migrate(con)
    return con


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """BEGIN ... COMMIT, rolled back on any exception: a crash leaves the last good state."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def replace_table(con: duckdb.DuckDBPyConnection, table: str, frame: pl.DataFrame) -> int:
    """Replace all rows of `table` with `frame` (columns matched by name); call inside transaction()."""
    if not re.fullmatch(r"[A-Za-z_]\w*", table):
        raise ValueError(f"bad table name {table!r}")
    view = f"_incoming_{table}"
    con.register(view, frame.to_arrow())
    try:
        cols = ", ".join(f'"{c}"' for c in frame.columns)
        _empty_table(con, table)
        con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {view}")
    finally:
        con.unregister(view)
    return frame.height


def _empty_table(con: duckdb.DuckDBPyConnection, table: str) -> None:
    """Remove all rows; a table with a key or index is dropped and re-created from its catalog DDL.

    DuckDB checks unique keys eagerly, so DELETE + INSERT of the same keys in one transaction is
    pathologically slow (about 25 s for 271k VARCHAR keys, against 2 s this way). DDL is
    transactional, so a rollback still restores the old table, rows and indexes.
    """
    where = (
        "table_name = ? AND schema_name = current_schema() AND database_name = current_database()"
    )
    keyed = con.execute(
        f"SELECT count(*) FROM duckdb_constraints() WHERE {where} AND constraint_type IN ('PRIMARY KEY', 'UNIQUE')",
        [table],
    ).fetchall()[0][0]
    indexes = [
        r[0]
        for r in con.execute(
            f"SELECT sql FROM duckdb_indexes() WHERE {where} AND sql IS NOT NULL", [table]
        ).fetchall()
    ]
    if not keyed and not indexes:
        con.execute(f"DELETE FROM {table}")
        return
    ddl = con.execute(f"SELECT sql FROM duckdb_tables() WHERE {where}", [table]).fetchall()[0][0]
    con.execute(f"DROP TABLE {table}")
    con.execute(ddl)
    for statement in indexes:
        con.execute(statement)


def append_table(con: duckdb.DuckDBPyConnection, table: str, frame: pl.DataFrame) -> int:
    """Append `frame` to `table` (columns matched by name)."""
    if not re.fullmatch(r"[A-Za-z_]\w*", table):
        raise ValueError(f"bad table name {table!r}")
    view = f"_incoming_{table}"
    con.register(view, frame.to_arrow())
    try:
        cols = ", ".join(f'"{c}"' for c in frame.columns)
        con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {view}")
    finally:
        con.unregister(view)
    return frame.height
