"""Read-only indexes shared by every worker of `bookrec serve`: built once, memory-mapped by all.

A worker loads what the fast callbacks scan (the book table, ratings by reader, embeddings, top-N
lists, sort orders) into memory. Per worker that is a copy each: at 10x Book-Crossing about a
gigabyte apiece. Served from a published snapshot (engine/snapshot.py), the first worker to need
an index builds it and writes it next to the snapshot; every worker then maps the file read-only,
so the operating system keeps one copy in its page cache for all of them:

    <snapshot dir>/shared/<name>.arrow     a Polars frame as Arrow IPC (strings as string views,
                                           which Polars imports without copying)
    <snapshot dir>/shared/<name>/*.npy     numpy arrays (np.load(mmap_mode="r"))
    <snapshot dir>/shared/<name>.faiss     a faiss index (read with IO_FLAG_MMAP_IFC), with
    <snapshot dir>/shared/<name>.json      what its builder measured (recall, nprobe)

Builders take an exclusive `fcntl` lock on `<name>.lock`, so two workers never build the same
index; a file appears under its name only when complete (written aside, then renamed). A snapshot
never changes, so neither does anything built from it; its directory, shared files included, goes
when the snapshot is pruned. Without a directory (a Store on the live file, the tests' fixtures)
nothing is written and every load stays in the process. Names are chosen by the code (a query
name and a run id), never by a client. Never imports dash.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.ipc as ipc

DIR = "shared"


def _view_type(t: pa.DataType) -> pa.DataType:
    """`t` with every string (inside lists and structs too) as a string view: Polars' own layout,
    so a mapped column becomes a Polars column without a copy."""
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return pa.string_view()
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return pa.list_(_view_type(t.value_type))
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, _view_type(f.type), f.nullable) for f in t])
    return t


class SharedIndexes:
    """Where a Store's large loads are built once and mapped (None: kept in the process)."""

    def __init__(self, root: Path | None):
        self.root = root

    @classmethod
    def for_database(cls, path: Path) -> SharedIndexes:
        """Shared beside a published snapshot (`.serving/<db>/<stamp>/<db>`), else in-process."""
        path = Path(path).resolve()
        if path.parent.parent.parent.name != ".serving" or os.environ.get(
            "BOOKREC_SERVE_SHARED", "1"
        ) in ("0", "false", "no"):
            return cls(None)
        return cls(path.parent / DIR)

    @property
    def enabled(self) -> bool:
        return self.root is not None

    def _name(self, key: str) -> str:
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", key)[:60]
        return f"{slug}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"

    @contextmanager
    def _locked(self, name: str):
        self.root.mkdir(exist_ok=True)
        with open(self.root / f".{name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def frame(self, key: str, build: Callable[[], pl.DataFrame]) -> pl.DataFrame:
        """`build()`'s frame, mapped from `<key>.arrow` (built by the first worker that asks)."""
        if self.root is None:
            return build()
        name = self._name(key)
        path = self.root / f"{name}.arrow"
        if not path.exists():
            with self._locked(name):
                if not path.exists():
                    table = build().to_arrow()
                    schema = pa.schema(
                        [pa.field(f.name, _view_type(f.type), f.nullable) for f in table.schema]
                    )
                    tmp = path.with_name(f".{name}.{os.getpid()}.tmp")
                    try:
                        with pa.OSFile(str(tmp), "wb") as out, ipc.new_file(out, schema) as w:
                            w.write_table(table.cast(schema))
                        os.replace(tmp, path)
                    finally:
                        tmp.unlink(missing_ok=True)
        table = ipc.open_file(pa.memory_map(str(path), "r")).read_all()
        return pl.from_arrow(table, rechunk=False)

    def arrays(
        self, key: str, build: Callable[[], dict[str, np.ndarray | None]]
    ) -> dict[str, np.ndarray | None]:
        """`build()`'s arrays (numeric or fixed-width strings; None stays None), mapped read-only
        from `<key>/*.npy` (built by the first worker that asks). A build holding an object array
        (strings too long for a fixed width, see query._strings) stays in the process."""
        if self.root is None:
            return build()
        name = self._name(key)
        where = self.root / name
        if not where.is_dir():
            with self._locked(name):
                if not where.is_dir():
                    arrays = build()
                    if any(a is not None and a.dtype == object for a in arrays.values()):
                        return arrays
                    tmp = self.root / f".{name}.{os.getpid()}.tmp"
                    shutil.rmtree(tmp, ignore_errors=True)
                    tmp.mkdir()
                    try:
                        for k, a in arrays.items():
                            if a is None:
                                (tmp / f"{k}.none").touch()
                                continue
                            np.save(tmp / f"{k}.npy", np.ascontiguousarray(a), allow_pickle=False)
                        os.replace(tmp, where)
                    finally:
                        shutil.rmtree(tmp, ignore_errors=True)
        out: dict[str, Any] = {}
        for f in sorted(where.iterdir()):
            if f.suffix == ".none":
                out[f.stem] = None
            elif f.suffix == ".npy":
                out[f.stem] = np.load(f, mmap_mode="r", allow_pickle=False)
        return out

    def faiss_index(
        self, key: str, build: Callable[[], tuple[Any, dict[str, Any]]]
    ) -> tuple[Any, dict[str, Any]]:
        """`build()`'s (faiss index or None, facts about it), the index written to
        `<key>.faiss` and read back memory-mapped (faiss's IO_FLAG_MMAP_IFC: its vectors stay in
        the page cache, one copy for every worker), the facts to `<key>.json`."""
        if self.root is None:
            return build()
        import faiss

        name = self._name(key)
        path, facts = self.root / f"{name}.faiss", self.root / f"{name}.json"
        if not facts.exists():
            with self._locked(name):
                if not facts.exists():
                    index, info = build()
                    tmp = self.root / f".{name}.{os.getpid()}.tmp"
                    try:
                        if index is not None:
                            faiss.write_index(index, str(tmp))
                            os.replace(tmp, path)
                        tmp.write_text(json.dumps(info))
                        os.replace(tmp, facts)  # last: the index is complete when this appears
                    finally:
                        tmp.unlink(missing_ok=True)
        info = json.loads(facts.read_text())
        if not path.exists():
            return None, info
        flags = faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY
        return faiss.read_index(str(path), flags), info


class Keys:
    """Row of each key in a sorted array of keys (ISBNs), by binary search: a dict's interface
    (`in`, `[]`, `get`) over one array that can be mapped, instead of a dict per worker
    (~120 bytes an entry: 330 MB for 2.7 M books)."""

    def __init__(self, keys: np.ndarray):
        keys = np.asarray(keys)  # fixed-width strings, or (odd catalogues) Python strings
        self.keys = keys
        # the longest key a fixed-width array can hold: a longer one is not there, and searching
        # for it would make numpy cast the whole array to the wider width first (19 ms at 1.9 M)
        self._width = keys.dtype.itemsize // 4 if keys.dtype.kind == "U" else None
        self._order: np.ndarray | None = None
        if keys.size > 1 and not bool(np.all(keys[1:] >= keys[:-1])):
            self._order = np.argsort(keys, kind="stable")
            self._sorted = keys[self._order]
        else:
            self._sorted = keys

    def __len__(self) -> int:
        return int(self.keys.size)

    def get(self, key: object, default: int | None = None) -> int | None:
        if not isinstance(key, str) or not self.keys.size:
            return default
        if self._width is not None and len(key) > self._width:
            return default
        at = int(np.searchsorted(self._sorted, key))
        if at >= self._sorted.size or self._sorted[at] != key:
            return default
        return int(self._order[at]) if self._order is not None else at

    def __contains__(self, key: object) -> bool:
        return self.get(key) is not None

    def __getitem__(self, key: str) -> int:
        at = self.get(key)
        if at is None:
            raise KeyError(key)
        return at
