"""The app's single data-access module: pages read only through here, and this only through engine.query."""

from __future__ import annotations

from pathlib import Path

from engine import query
from engine.errors import BookrecError, StageNotReadyError, UnknownEntityError
from engine.query import FIELDS, LOW_CONFIDENCE, SORTABLE, BrowseQuery, Store

__all__ = [
    "FIELDS",
    "LOW_CONFIDENCE",
    "SORTABLE",
    "BookrecError",
    "BrowseQuery",
    "StageNotReadyError",
    "Store",
    "UnknownEntityError",
    "init",
    "missing",
    "store",
]

_STORE: Store | None = None


def init(db_path: str | Path, *, warm: bool = False, threads: int | None = None) -> Store:
    """Open the database read-only for this process (once) and optionally preload the indexes."""
    global _STORE
    _STORE = query.open_store(db_path, threads=threads)
    if warm:
        _STORE.warm()
    return _STORE


def store() -> Store:
    """The process's Store; create_app() opens it."""
    if _STORE is None:
        raise RuntimeError("app.data.init(db_path) has not been called")
    return _STORE


def missing(*parts: str) -> tuple[str, str] | None:
    """(message, what to run) for the first of `parts` whose stage has not run, else None."""
    for part in parts:
        if not store().ready(part):
            return query.HINTS[part]
    return None
