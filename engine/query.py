"""The dashboard's query layer: one read-only DuckDB connection per process, a cursor per request.

Every answer is a Polars frame (or a small dict) from named SQL in sql/queries/app.sql. The
database cannot change while it is open read-only, so what the latency-bound callbacks need
(books with their activity and facets, ratings by reader, item and content embeddings) is loaded
once per process and answered from memory: browse, recommendations and neighbours in a few
milliseconds instead of a full scan per click. The SQL macros (facet_search, recommend_model,
similar_books_model, similar_books_by_content) stay the public API; tests check that the answers
here agree with them. This module never imports dash or plotly.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import duckdb
import numpy as np
import polars as pl

from engine import db, neighbours
from engine.errors import StageNotReadyError, UnknownEntityError
from engine.shared import Keys, SharedIndexes

T = TypeVar("T")

FIELDS = ("genre", "category", "theme", "tone", "audience")
# the book columns of a recommendation and of a neighbour (`_rec_frame`, `_neighbours`)
REC_COLUMNS = ("isbn", "title", "author", "year", "image_url_m", "n_interactions", *FIELDS)
NEIGHBOUR_COLUMNS = ("isbn", "title", "author", "year", "image_url_m", *FIELDS)
SORTABLE = ("score", "mean_rating", "n_explicit", "n_interactions", "year", "title", "author")
WARM_M = (0.0, 50.0, 100.0, 200.0, 500.0)  # the browse page's m slider stops
MAX_M = 10_000.0  # the browse page's largest prior weight; larger values are clamped
# Client values (a browse m, a facet label, a search text) key these caches: each keeps only its
# most recent entries, so no sequence of requests can grow a worker (at full size an m costs
# ~4.4 MB of scores and orders, a facet mask 0.27 MB, a text mask 0.27 MB).
RECENT_M = 16  # entries: an m's scores and its order each take one
RECENT_FACETS = 128
RECENT_TEXTS = 64
# labels whose confidence is below this show as pale chips (the zero-shot labeller's softmax
# probability; engine.enrich.zeroshot.LOW_CONFIDENCE is the same number)
LOW_CONFIDENCE = 0.35
CACHE_AFTER_WARM = "256MB"  # DuckDB's memory limit once the in-memory indexes are loaded
HINTS = {
    "data": ("No books in the database yet", "Run `bookrec ingest` (or `just demo`) first"),
    "facets": ("No facets yet", "Run `bookrec enrich` then `bookrec facets` first"),
    "models": ("No trained models yet", "Run `bookrec train --model lightgcn` first"),
    "embeddings": (
        "No model with item embeddings yet",
        "Run `bookrec train --model lightgcn` first",
    ),
    "content": ("No content embeddings yet", "Run `bookrec content` first"),
    "ingest": ("No ingest runs recorded", "Run `bookrec ingest` first"),
}


@dataclass(frozen=True)
class BrowseQuery:
    """Filters, sort and page of the browse table (facets: field -> labels, OR within a field)."""

    m: float = 50.0
    facets: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    year_min: int | None = None
    year_max: int | None = None
    min_ratings: int = 0
    text: str = ""
    sort: str = "score"
    desc: bool = True
    page: int = 1
    page_size: int = 20


class _Recent:
    """A small thread-safe LRU map for values computed from what a client sends."""

    def __init__(self, size: int):
        self.size = size
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Hashable, load: Callable[[], T]) -> T:
        """The value of `key`, loading it (outside the lock) and evicting the oldest if new."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = load()
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value


@dataclass
class _Vectors:
    """An embedding matrix with its ISBN order: raw rows for inner products, unit rows for cosine."""

    isbns: np.ndarray
    row: Keys
    raw: np.ndarray
    unit: np.ndarray

    def arrays(self) -> dict[str, np.ndarray | None]:
        """What `from_arrays` rebuilds it from (the unit rows only when they differ)."""
        unit = None if self.unit is self.raw else self.unit
        return {"isbns": _strings(self.isbns), "raw": self.raw, "unit": unit}

    @classmethod
    def from_arrays(cls, a: Mapping[str, np.ndarray | None]) -> _Vectors:
        raw = a["raw"]
        return cls(a["isbns"], Keys(a["isbns"]), raw, raw if a["unit"] is None else a["unit"])


@dataclass
class _Neighbours:
    """Precomputed top-k lists: row of each ISBN, (n, k) neighbour rows and scores, best first."""

    isbns: np.ndarray
    row: Keys
    hits: np.ndarray
    scores: np.ndarray

    @property
    def k(self) -> int:
        return self.hits.shape[1]

    @staticmethod
    def arrays(lists: _Neighbours | None) -> dict[str, np.ndarray | None]:
        if lists is None:
            return {"isbns": None}
        return {"isbns": _strings(lists.isbns), "hits": lists.hits, "scores": lists.scores}

    @classmethod
    def from_arrays(cls, a: Mapping[str, np.ndarray | None]) -> _Neighbours | None:
        if a["isbns"] is None:
            return None
        return cls(a["isbns"], Keys(a["isbns"]), a["hits"], a["scores"])


@dataclass
class _TopLists:
    """A 'topn' run's stored lists in memory (recommendations rows in (user_id, rank) order):
    reader `users[j]` owns rows starts[j]:starts[j + 1]; rows with user_id NULL (one list for
    everybody) are `shared`; `codes` index `isbns`."""

    users: np.ndarray
    starts: np.ndarray
    shared: np.ndarray
    codes: np.ndarray
    scores: np.ndarray
    isbns: np.ndarray

    def of(self, user_id: int, limit: int | None = None) -> list[tuple[str, float]]:
        """(isbn, score) of the reader's list and the shared one, as app_topn orders them
        (score descending, then ISBN); with `limit`, the first `limit` of them (those above the
        limit-th score, and every row tied with it, are sorted: popularity's shared list is the
        whole catalogue, 1.9 M rows at xl)."""
        at = find(self.users, user_id)
        rows = self.shared
        if at < self.users.size and self.users[at] == user_id:
            own = np.arange(self.starts[at], self.starts[at + 1])
            rows = np.concatenate([own, rows]) if rows.size else own
        if limit is not None and rows.size > limit:
            values = self.scores[rows]
            kth = np.partition(values, rows.size - limit)[rows.size - limit]
            rows = rows[values >= kth]
        pairs = zip(
            self.isbns[self.codes[rows]].tolist(),
            self.scores[rows].astype(np.float64).tolist(),
            strict=True,
        )
        ordered = sorted(pairs, key=lambda p: (-p[1], p[0]))
        return ordered if limit is None else ordered[:limit]


def _top_lists(frame: pl.DataFrame) -> _TopLists:
    """`_TopLists` from run_recommendations' rows (user_id, rank, isbn, score by user, rank)."""
    shared = frame["user_id"].is_null().to_numpy()
    users = frame["user_id"].fill_null(0).to_numpy()
    names = frame.select(pl.col("isbn").unique()).with_row_index("code")
    codes = frame.select("isbn").join(names, on="isbn", how="left", maintain_order="left")
    scores = frame["score"].to_numpy()
    narrow = scores.astype(np.float32)  # the models score in float32: exact, and half the size
    if np.array_equal(narrow.astype(np.float64), scores):
        scores = narrow
    own = np.flatnonzero(~shared)
    ids, first = np.unique(users[own], return_index=True)
    if own.size and not np.all(np.diff(users[own]) >= 0):
        raise ValueError("run_recommendations rows are not in user order")
    return _TopLists(
        users=ids,
        starts=np.append(own[first], own[-1] + 1 if own.size else 0).astype(np.int64),
        shared=np.flatnonzero(shared),
        codes=codes["code"].to_numpy().astype(np.int32),
        scores=scores,
        isbns=names["isbn"].to_numpy(),
    )


def _neighbour_lists(ids: pl.DataFrame, frame: pl.DataFrame) -> _Neighbours | None:
    """Precomputed lists as fixed-width arrays: `ids` (isbn, sorted) and `frame` (row, hit, score)
    in row then rank order, positions into `ids`. None when empty or ragged (a neighbour outside
    the listed books, or books with lists of different lengths): the caller then searches."""
    n = ids.height
    if n == 0 or frame.height % n:
        return None
    k = frame.height // n
    rows = frame["row"].to_numpy()
    if k == 0 or not np.array_equal(rows, np.repeat(np.arange(n, dtype=rows.dtype), k)):
        return None
    isbns = _strings(ids["isbn"].to_numpy())
    return _Neighbours(
        isbns,
        Keys(isbns),
        frame["hit"].to_numpy().reshape(n, k),
        frame["score"].to_numpy().astype(np.float32).reshape(n, k),
    )


def _as_matrix(frame: pl.DataFrame, column: str = "embedding") -> np.ndarray:
    """A FLOAT[] column as a float32 (rows, dim) matrix."""
    if frame.is_empty():
        return np.zeros((0, 0), dtype=np.float32)
    flat = frame[column].explode().to_numpy().astype(np.float32, copy=False)
    return flat.reshape(frame.height, -1)


STRING_WIDTH = 64  # longest ISBN kept as a fixed-width string (4 bytes a character per row)


def _strings(values: Any) -> np.ndarray:
    """ISBNs (or any strings) as a fixed-width numpy array: one block that can be mapped,
    instead of an array of pointers to Python strings. A catalogue with a longer one (ingest
    keeps odd identifiers) stays an object array, in the process: one stray 300-character ISBN
    would make every row 1.2 KB wide."""
    arr = np.asarray(values)
    if arr.dtype.kind == "U" or not arr.size:
        return arr if arr.size else np.array([], dtype="<U1")
    fixed = arr.astype(str)
    return fixed if fixed.dtype.itemsize <= 4 * STRING_WIDTH else arr


def _vectors(frame: pl.DataFrame) -> _Vectors:
    raw = _as_matrix(frame)
    norms = np.linalg.norm(raw, axis=1, keepdims=True) if raw.size else np.ones((0, 1), np.float32)
    isbns = _strings(frame["isbn"].to_numpy())
    # content embeddings are stored unit-length: share the matrix instead of a 416 MB copy
    unit = raw if np.allclose(norms, 1.0, atol=1e-4) else raw / np.where(norms == 0, 1, norms)
    return _Vectors(isbns, Keys(isbns), raw, unit)


def find(sorted_ids: np.ndarray, value: int, side: Literal["left", "right"] = "left") -> int:
    """np.searchsorted for one id, searched in the array's own integer type: a Python int makes
    numpy cast the whole array to int64 first (14 ms a lookup over xl's 11.5 M ratings by reader,
    in every reader request); an id outside the type's range sorts before or after every row."""
    if sorted_ids.dtype.kind in "iu":
        info = np.iinfo(sorted_ids.dtype)
        if value < info.min:
            return 0
        if value > info.max:
            return int(sorted_ids.size)
        return int(np.searchsorted(sorted_ids, sorted_ids.dtype.type(value), side))
    return int(np.searchsorted(sorted_ids, value, side))


def _top(scores: np.ndarray, isbns: np.ndarray, k: int) -> np.ndarray:
    """Row indices of the k best finite scores, best first, ties by ISBN (as the SQL macros order)."""
    m = k * 4 + 64
    finite = None
    if scores.size > m:
        # the m largest (+inf included) by partitioning the negated scores: NaN sorts last there,
        # and numpy's introselect stays linear when most scores tie (at size - m on the scores
        # themselves it took ~3 ms on a fold-in's 18k mostly-zero scores instead of 0.15)
        head = np.argpartition(-scores, m - 1)[:m]
        head = head[np.isfinite(scores[head])]
        if head.size >= k:
            finite = head
    if finite is None:
        finite = np.flatnonzero(np.isfinite(scores))
        if finite.size > m:
            finite = finite[np.argpartition(-scores[finite], m - 1)[:m]]
    if finite.size > k:
        # a tie at the k-th score may reach past the m kept: take its whole group, so that ties
        # go by ISBN and not by which of the tied rows the partition happened to keep
        kth = -np.partition(-scores[finite], k - 1)[k - 1]
        tied = np.count_nonzero(scores[finite] == kth)
        group = np.flatnonzero(scores == kth)
        if group.size > tied:
            finite = np.concatenate([finite[scores[finite] > kth], group])
    order = np.lexsort((isbns[finite], -scores[finite]))
    return finite[order[:k]]


class _ContentIndex:
    """Exact top-k inner-product search over the content vectors: faiss's brute-force kernel
    (`faiss.knn`) reads the matrix in place, so the index adds no copy of its 416 MB (an
    `IndexFlatIP` would hold one) and only the ISBN order (2 MB at full size). Ties are broken
    as similar_books_by_content breaks them: equal scores by ISBN."""

    def __init__(self, raw: np.ndarray, isbns: np.ndarray):
        self.raw = np.ascontiguousarray(raw, dtype=np.float32)
        self.ranks = neighbours.isbn_ranks(isbns)

    def top(self, row: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k rows with the highest inner product with row `row` (itself excluded), best first."""
        hits, scores = neighbours.exact_rows(
            self.raw, np.array([row]), k, self.ranks, decimals=None
        )
        return hits[0], scores[0]


class Store:
    """The read-only database of one process: named queries on per-request cursors, memoised loads."""

    def __init__(self, path: str | Path, *, threads: int | None = None):
        self.path = Path(path)
        self._con = db.connect(self.path, read_only=True, threads=threads)
        # served from a snapshot, the large loads are built once and mapped by every worker
        self.shared = SharedIndexes.for_database(self.path)
        self._lock = threading.RLock()  # loads nest (scores -> book_table)
        self._memo: dict[Any, Any] = {}  # keys chosen by the code, never by a client
        self._by_m = _Recent(RECENT_M)  # scores and orders of m values off the slider's stops
        self._facets = _Recent(RECENT_FACETS)
        self._texts = _Recent(RECENT_TEXTS)
        objects = self.frame("app_objects")
        self.objects = set(objects["name"].to_list())
        self.sizes: dict[str, int] = self.frame("app_table_sizes").row(0, named=True)
        self.sizes["content"] = (
            int(self.frame("app_content_size")["n"][0])
            if "book_content_embeddings" in self.objects
            else 0
        )

    # ------------------------------------------------------------------ plumbing

    def close(self) -> None:
        """Close the connection (tests; the app keeps it for the life of the process)."""
        self._con.close()

    @contextmanager
    def cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor for one request: DuckDB runs cursors of one connection concurrently."""
        cur = self._con.cursor()
        try:
            yield cur
        finally:
            cur.close()

    def frame(self, name: str, params: Mapping[str, Any] | None = None) -> pl.DataFrame:
        """Run a named query from sql/queries on a fresh cursor."""
        with self.cursor() as cur:
            return db.query(cur, name, params)

    def _cached(self, key: Any, load: Callable[[], T]) -> T:
        """Load once per process (the file cannot change under a read-only connection)."""
        if key in self._memo:
            return self._memo[key]
        with self._lock:
            if key not in self._memo:
                self._memo[key] = load()
            return self._memo[key]

    def _per_m(self, key: tuple[Any, ...], m: float, load: Callable[[], np.ndarray]) -> np.ndarray:
        """Kept for the life of the process (and shared) at the slider's stops, among the recent
        ones else: a client's m never reaches the shared directory."""
        return self._shared_array(key, load) if m in WARM_M else self._by_m.get(key, load)

    def _shared_array(self, key: tuple[Any, ...], load: Callable[[], np.ndarray]) -> np.ndarray:
        """One array, memoised and (from a snapshot) mapped from the shared directory; `key`
        is chosen by the code."""
        return self._cached(key, lambda: self.shared.arrays(repr(key), lambda: {"a": load()})["a"])

    def cache_sizes(self) -> dict[str, int]:
        """How many entries each in-process cache holds (tests, benchmarks)."""
        return {
            "memo": len(self._memo),
            "by_m": len(self._by_m),
            "facets": len(self._facets),
            "texts": len(self._texts),
        }

    def cached_frame(self, name: str, params: Mapping[str, Any] | None = None) -> pl.DataFrame:
        """A named query's result, memoised by name and parameters."""
        key = (name, tuple(sorted((params or {}).items())))
        return self._cached(key, lambda: self.frame(name, params))

    # ------------------------------------------------------------------ readiness

    def ready(self, what: str) -> bool:
        """Whether the stage behind a page part has produced its tables (see HINTS)."""
        checks = {
            "data": lambda: self.sizes["books"] > 0,
            "facets": lambda: (
                self.sizes["book_facets"] > 0 and "facet_cooccurrence" in self.objects
            ),
            "models": lambda: self.sizes["model_runs"] > 0 and "recommend_model" in self.objects,
            "embeddings": lambda: (
                self.sizes["item_embeddings"] > 0 and "similar_books_model" in self.objects
            ),
            "content": lambda: (
                self.sizes["content"] > 0 and "similar_books_by_content" in self.objects
            ),
            "ingest": lambda: self.sizes["ingest_runs"] > 0,
        }
        return checks[what]()

    def require(self, what: str) -> None:
        """Raise StageNotReadyError with what to run when `what` is not ready."""
        if not self.ready(what):
            message, hint = HINTS[what]
            raise StageNotReadyError(message, hint=hint)

    def warm(self) -> None:
        """Load everything the fast callbacks need, so the first click is as quick as the rest."""
        if not self.ready("data"):
            return
        self.book_table()
        for sort in SORTABLE:
            for desc in (True, False):
                for m in WARM_M if sort == "score" else (50.0,):
                    self._order(m, sort, desc)
        self._ratings_by_user()
        self._users()
        self.dataset_stats()
        self.activity("book")
        self.activity("user")
        for name in ("rating_distribution", "ages", "rejected_by_reason"):
            self.overview(name)
        self.overview("countries", limit=15)
        self.overview("ingest_runs", limit=5)
        self.year_bounds()
        if self.ready("facets"):
            self.facet_options()
        if self.ready("models"):
            for run in self.models().iter_rows(named=True):
                if run["has_item_embeddings"]:
                    self._item_vectors(run["run_id"])
                    self._item_neighbours(run["run_id"])
                if run["scoring"] == "embedding":
                    self._user_vectors(run["run_id"])
                    self._reader_index(run["run_id"])
                self._warm_fold_in(run)
            default = self._run(None)
            if default["scoring"] == "topn":  # the readers' page and the API's default answer
                self._top_lists(default["run_id"])
        if self.ready("content") and self._content_neighbours() is None:
            self._content_index()  # no precomputed lists: search the vectors
        # Everything the callbacks scan now lives in numpy/Polars; what DuckDB cached while loading
        # (~0.7 GB of table blocks at full size) is only needed by the small per-request queries.
        with self.cursor() as cur:
            cur.execute(f"SET memory_limit = '{CACHE_AFTER_WARM}'").fetchall()

    # ------------------------------------------------------------------ overview

    def dataset_stats(self) -> dict[str, Any]:
        """Headline numbers (dataset_stats view)."""
        return self.cached_frame("app_dataset_stats").row(0, named=True)

    def activity(self, kind: str) -> pl.DataFrame:
        """How many books (kind='book') or readers ('user') have n interactions: n, items."""
        return self.cached_frame("app_book_activity" if kind == "book" else "app_user_activity")

    def overview(self, name: str, limit: int | None = None) -> pl.DataFrame:
        """A small overview query: rating_distribution, ages, countries, ingest_runs, rejected_by_reason."""
        return self.cached_frame(f"app_{name}", {"limit": limit} if limit is not None else None)

    # ------------------------------------------------------------------ books and browse

    def book_table(self) -> pl.DataFrame:
        """Every book with activity and facet lists, plus lower-case title/author for text search."""

        def load() -> pl.DataFrame:
            books = self.frame("app_book_table")
            # one chunk: row gathers on a many-chunked frame rechunk it on every call (~10 ms each)
            return books.with_columns(
                title_lc=pl.col("title").str.to_lowercase(),
                author_lc=pl.col("author").str.to_lowercase(),
            ).rechunk()

        return self._cached("book_table", lambda: self.shared.frame("book_table", load))

    def _book_row(self) -> Keys:
        """Row of each ISBN in the book table (which is in ISBN order)."""
        return self._cached(
            "book_row",
            lambda: Keys(
                self._shared_array(
                    ("book_isbns",), lambda: _strings(self.book_table()["isbn"].to_numpy())
                )
            ),
        )

    def explicit_mean(self) -> float:
        """The global mean explicit rating C of the Bayesian score."""
        return float(self.cached_frame("app_explicit_mean")["c"][0])

    def _plain_books(self) -> pl.DataFrame:
        return self._cached(
            "plain_books", lambda: self.book_table().drop("title_lc", "author_lc").rechunk()
        )

    def books(self, isbns: Sequence[str]) -> pl.DataFrame:
        """Book rows in the order given; ISBNs not in `books` come back with null metadata."""
        row = self._book_row()
        table = self._plain_books()
        rows = [row.get(i) for i in isbns]
        known = [r for r in rows if r is not None]
        picked = table[known] if known else table.clear()
        if len(known) == len(rows):
            return picked
        order = pl.DataFrame({"isbn": list(isbns)}, schema={"isbn": pl.String})
        return order.join(picked, on="isbn", how="left", maintain_order="left")

    def book(self, isbn: str) -> dict[str, Any]:
        """One book with activity, facets, large cover and summary; UnknownEntityError if absent."""
        key = (isbn or "").strip().upper()
        if key not in self._book_row():
            raise UnknownEntityError(
                f"no book with ISBN {isbn!r}", hint="Search by title or author"
            )
        info = self.books([key]).row(0, named=True)
        extra = self.frame("app_book_extra", {"isbn": key})
        info.update(
            extra.row(0, named=True) if extra.height else {"image_url_l": None, "summary": None}
        )
        return info

    def scores(self, m: float) -> np.ndarray:
        """Bayesian score of every book (popular_books_m's formula) for prior weight m."""

        def load() -> np.ndarray:
            books, c = self.book_table(), self.explicit_mean()
            v = books["n_explicit"].to_numpy().astype(np.float64)
            mean = books["mean_rating"].fill_null(c).to_numpy().astype(np.float64)
            with np.errstate(invalid="ignore", divide="ignore"):
                s = v / (v + m) * mean + m / (v + m) * c
            return np.where(v + m > 0, s, c)

        return self._per_m(("scores", m), m, load)

    def _order(self, m: float, sort: str, desc: bool) -> np.ndarray:
        """Row order of the whole book table for a sort (int32, cached); filters keep this order.
        Ties: most read first, then ISBN. Only the score sort depends on m."""
        key = ("order", m if sort == "score" else None, sort, desc)

        def load() -> np.ndarray:
            books = self.book_table()
            n_int = books["n_interactions"].to_numpy()
            isbn_rank = np.arange(books.height)  # the table is ordered by ISBN
            if sort == "score":
                score = self.scores(m)
                primary = -score if desc else score
            else:
                col = books[{"title": "title_lc", "author": "author_lc"}.get(sort, sort)]
                primary = col.rank("dense", descending=desc).fill_null(col.len() + 1).to_numpy()
            return np.lexsort([isbn_rank, -n_int, primary]).astype(np.int32)

        return self._per_m(key, m, load) if sort == "score" else self._shared_array(key, load)

    def _labels(self, fld: str) -> frozenset[str]:
        """The facet labels that books of the table carry in one field."""
        return self._cached(
            ("labels", fld),
            lambda: frozenset(self.book_table()[fld].explode().drop_nulls().unique().to_list()),
        )

    def _facet_mask(self, fld: str, label: str) -> np.ndarray:
        return self._facets.get(
            (fld, label), lambda: self.book_table()[fld].list.contains(label).to_numpy()
        )

    def _mask(self, q: BrowseQuery) -> np.ndarray | None:
        """Which books pass the filters (None: all of them)."""
        books = self.book_table()
        mask = None

        def both(a: np.ndarray | None, b: np.ndarray) -> np.ndarray:
            return b if a is None else a & b

        for fld, labels in q.facets.items():
            if fld in FIELDS and labels:
                any_of = np.zeros(books.height, dtype=bool)
                # a label no book carries matches nothing: refused before any scan or cache
                for label in self._labels(fld).intersection(labels):
                    any_of |= self._facet_mask(fld, label)
                mask = both(mask, any_of)
        year = books["year"]
        if q.year_min is not None:
            mask = both(mask, (year >= q.year_min).fill_null(False).to_numpy())
        if q.year_max is not None:
            mask = both(mask, (year <= q.year_max).fill_null(False).to_numpy())
        if q.min_ratings > 0:
            mask = both(mask, books["n_explicit"].to_numpy() >= q.min_ratings)
        text = q.text.strip().lower()
        if text:
            mask = both(mask, self._text_mask(text))
        return mask

    def _text_mask(self, text: str) -> np.ndarray:
        """Books whose title or author contains `text` (literal, lower-case); recent ones are kept,
        so paging and re-sorting a search does not scan the titles again."""

        def load() -> np.ndarray:
            books = self.book_table()
            found = books["title_lc"].str.contains(text, literal=True) | books[
                "author_lc"
            ].str.contains(text, literal=True)
            return found.fill_null(False).to_numpy()

        return self._texts.get(text, load)

    def browse(self, q: BrowseQuery) -> tuple[pl.DataFrame, int]:
        """One page of popular books under the filters, and the number of matches."""
        self.require("data")
        m = float(q.m)
        m = min(max(m, 0.0), MAX_M) if math.isfinite(m) else BrowseQuery.m
        order = self._order(m, q.sort if q.sort in SORTABLE else "score", bool(q.desc))
        mask = self._mask(q)
        rows = order if mask is None else order[mask[order]]
        size = max(1, q.page_size)
        start = (max(q.page, 1) - 1) * size
        page = rows[start : start + size]
        table = self.book_table().drop("title_lc", "author_lc")
        out = table[page].with_columns(score=pl.Series(self.scores(m)[page], dtype=pl.Float64))
        return out, int(rows.size)

    def popular(
        self,
        facets: Mapping[str, tuple[str, ...]] | None = None,
        k: int = 10,
        exclude: Sequence[str] = (),
    ) -> pl.DataFrame:
        """The most popular books (m = 50) within facets, skipping `exclude` (cold-start readers)."""
        page, _ = self.browse(BrowseQuery(facets=facets or {}, page_size=k + len(exclude)))
        return page.filter(~pl.col("isbn").is_in(list(exclude))).head(k)

    def facet_confidence(self, isbns: Sequence[str]) -> dict[str, dict[tuple[str, str], float]]:
        """Per book, {(field, facet label): confidence} for the labels that carry one (zero-shot);
        empty before migration 065 or for LLM labels (no confidence: shown as confident)."""
        if not isbns or "book_label_confidence" not in self.objects:
            return {}
        out: dict[str, dict[tuple[str, str], float]] = {}
        frame = self.frame("app_book_facet_confidence", {"isbns": list(isbns)})
        for isbn, fld, label, conf in frame.iter_rows():
            out.setdefault(isbn, {})[(fld, label)] = float(conf)
        return out

    def facet_options(self) -> dict[str, list[tuple[str, int]]]:
        """Facet labels per field with their book counts, biggest first."""
        frame = self.cached_frame("app_facet_options")
        out: dict[str, list[tuple[str, int]]] = {f: [] for f in FIELDS}
        for r in frame.iter_rows(named=True):
            out.setdefault(r["field"], []).append((r["label"], r["n"]))
        return out

    def year_bounds(self) -> tuple[int | None, int | None]:
        """Earliest and latest publication year."""
        r = self.cached_frame("app_year_bounds").row(0)
        return r[0], r[1]

    def search_books(self, q: str, limit: int = 20) -> pl.DataFrame:
        """Type-ahead over all books: the exact ISBN first, then titles starting with q, then titles
        or authors containing it (case-insensitive, literal text), most read first."""
        text = (q or "").strip().lower()
        cols = ["isbn", "title", "author", "year", "n_interactions"]
        books = self.book_table()
        if not text:
            return books.select(cols).clear()
        hits = books.filter(
            (pl.col("isbn") == text.upper())
            | pl.col("title_lc").str.contains(text, literal=True)
            | pl.col("author_lc").str.contains(text, literal=True)
        )
        return (
            hits.sort(
                [
                    pl.col("isbn") == text.upper(),
                    pl.col("title_lc").str.starts_with(text),
                    "n_interactions",
                    "title",
                ],
                descending=[True, True, True, False],
                nulls_last=True,
            )
            .head(limit)
            .select(cols)
        )

    # ------------------------------------------------------------------ readers

    def search_users(self, prefix: str, limit: int = 20) -> pl.DataFrame:
        """Reader ids starting with prefix (digits only), exact match first."""
        digits = (prefix or "").strip()
        if not digits.isdigit() or len(digits) > 10:
            return pl.DataFrame(
                schema={
                    "user_id": pl.Int32,
                    "country": pl.String,
                    "age": pl.Int16,
                    "n_ratings": pl.Int64,
                }
            )
        return self.frame("app_user_search", {"prefix": str(int(digits)), "limit": limit})

    def user(self, user_id: int) -> dict[str, Any] | None:
        """A reader's profile and activity, or None when the id is in neither users nor ratings."""
        if not -(2**31) <= user_id < 2**31:
            return None
        ids, users = self._users()
        at = find(ids, user_id)
        profile = users.row(at, named=True) if at < ids.size and ids[at] == user_id else None
        rated = self.user_ratings(user_id)["rating"]
        if profile is None and rated.len() == 0:
            return None
        explicit = rated.filter(rated > 0)
        return {
            "user_id": user_id,
            "city": None,
            "state": None,
            "country": None,
            "age": None,
            **(profile or {}),
            "n_ratings": rated.len(),
            "n_explicit": explicit.len(),
            "mean_rating": float(explicit.mean()) if explicit.len() else None,
        }

    def _users(self) -> tuple[np.ndarray, pl.DataFrame]:
        def load() -> tuple[np.ndarray, pl.DataFrame]:
            users = self.shared.frame("users", lambda: self.frame("app_users").rechunk())
            return users["user_id"].to_numpy(), users

        return self._cached("users", load)

    def _ratings_by_user(self) -> tuple[np.ndarray, pl.DataFrame]:
        def load() -> tuple[np.ndarray, pl.DataFrame]:
            ratings = self.shared.frame(
                "ratings_by_user", lambda: self.frame("app_ratings_by_user").rechunk()
            )
            return ratings["user_id"].to_numpy(), ratings.select("isbn", "rating")

        return self._cached("ratings_by_user", load)

    def user_ratings(self, user_id: int) -> pl.DataFrame:
        """A reader's rated books (isbn, rating), best rated first."""
        users, ratings = self._ratings_by_user()
        lo, hi = find(users, user_id), find(users, user_id, "right")
        return ratings.slice(int(lo), int(hi - lo))

    def user_history(self, user_id: int, limit: int = 200) -> pl.DataFrame:
        """A reader's rated books with titles and covers, best rated first."""
        rated = self.user_ratings(user_id).head(limit)
        meta = self.books(rated["isbn"].to_list()).select("title", "author", "year", "image_url_m")
        return pl.concat([rated, meta], how="horizontal")

    # ------------------------------------------------------------------ models

    def models(self) -> pl.DataFrame:
        """Current run of each model (LightGCN first): model, run_id, scoring, has_item_embeddings."""
        self.require("models")
        return self.cached_frame("app_models")

    def default_model(self) -> tuple[str, str]:
        """The model that answers when none is named, and why it is the default."""
        runs = self.models()
        top = runs.row(0, named=True)
        if top["valid_recall"] is not None and top["on_current_split"]:
            rivals = runs.filter(pl.col("valid_recall").is_not_null() & pl.col("on_current_split"))
            return top["model"], (
                f"best recall@20 on the validation part ({top['valid_recall']:.4f}) of the "
                f"{rivals.height} current model{'s' * (rivals.height > 1)} on the current split"
            )
        return top["model"], "the newest run: no current run was measured on a validation part"

    def _run(self, model: str | None, *, embeddings: bool = False) -> dict[str, Any]:
        # a dict lookup per request (a Polars filter took ~0.2 ms, two or three per API request)
        first, by_model = self._cached(
            ("runs_by_model", embeddings), lambda: self._runs(embeddings)
        )
        if model is None:
            return first
        if model not in by_model:
            known = ", ".join(by_model)
            raise UnknownEntityError(f"no current run of model {model!r}", hint=f"Known: {known}")
        return by_model[model]

    def _runs(self, embeddings: bool) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        """(the first current run, the first run of each model) of `models()`, with item
        embeddings only when `embeddings`."""
        runs = self.models()
        if embeddings:
            runs = runs.filter(pl.col("has_item_embeddings"))
            if runs.is_empty():
                self.require("embeddings")
                raise StageNotReadyError(*HINTS["embeddings"])
        rows = runs.to_dicts()
        by_model: dict[str, dict[str, Any]] = {}
        for r in rows:
            by_model.setdefault(r["model"], r)
        return rows[0], by_model

    def _user_vectors(self, run_id: str) -> tuple[np.ndarray, np.ndarray]:
        def load() -> dict[str, np.ndarray | None]:
            frame = self.frame("app_user_embeddings", {"run_id": run_id})
            return {"ids": frame["user_id"].to_numpy(), "matrix": _as_matrix(frame)}

        def mapped() -> tuple[np.ndarray, np.ndarray]:
            a = self.shared.arrays(f"user vectors {run_id}", load)
            return a["ids"], a["matrix"]

        return self._cached(("users", run_id), mapped)

    def _item_vectors(self, run_id: str) -> _Vectors:
        return self._vector_set(
            f"item vectors {run_id}", lambda: self.frame("app_item_embeddings", {"run_id": run_id})
        )

    def _vector_set(self, key: str, load: Callable[[], pl.DataFrame]) -> _Vectors:
        """Embeddings with their ISBN order, memoised and shared under `key`."""
        return self._cached(
            ("vectors", key),
            lambda: _Vectors.from_arrays(
                self.shared.arrays(key, lambda: _vectors(load()).arrays())
            ),
        )

    def recommend(self, model: str | None, user_id: int, k: int = 10) -> pl.DataFrame:
        """Top-k unrated books for a reader from a model's current run (recommend_model's answer),
        with the popularity fallback for readers the run does not know, and a reason per book."""
        return self._rec_frame(*self._reader_plan(model, user_id, k, exclude_read=True))

    def _reader_plan(
        self, model: str | None, user_id: int, k: int, *, exclude_read: bool
    ) -> tuple[Mapping[str, Any], list[str], list[float], str, str, list[str]]:
        """What `recommend` / `recommend_reader` answer, before any metadata: (run, isbns,
        scores, source, model name, the reader's rated books)."""
        run = self._run(model)
        rated = self.user_ratings(user_id)["isbn"].to_list()
        isbns, scores = self._model_top(run, user_id, set(rated) if exclude_read else set(), k)
        if isbns:
            return run, isbns, scores, "model", run["model"], rated
        top = self.popular(k=k, exclude=rated) if exclude_read else self.popular(k=k)
        isbns, scores = top["isbn"].to_list(), top["score"].to_list()
        return run, isbns, scores, "popularity_fallback", "popular_books", rated

    def _model_top(
        self, run: Mapping[str, Any], user_id: int, rated: set[str], k: int
    ) -> tuple[list[str], list[float]]:
        if run["scoring"] == "embedding":
            ids, matrix = self._user_vectors(run["run_id"])
            at = find(ids, user_id)
            if at >= ids.size or ids[at] != user_id:
                return [], []
            return self._embedding_top(run["run_id"], matrix[at], rated, k)
        lists = self._memo.get(("top_lists", run["run_id"]))
        if lists is not None:  # the default run's lists, loaded by warm(): no query per request
            # the rated books are dropped from the first k + |rated|: no more is ever needed
            kept = [p for p in lists.of(user_id, k + len(rated)) if p[0] not in rated][:k]
            return [p[0] for p in kept], [p[1] for p in kept]
        top = self.frame(
            "app_topn_head",
            {"run_id": run["run_id"], "user_id": user_id, "limit": k + len(rated)},
        )
        top = top.filter(~pl.col("isbn").is_in(list(rated))).head(k)
        return top["isbn"].to_list(), top["score"].to_list()

    def _embedding_top(
        self, run_id: str, vec: np.ndarray, skip: set[str], k: int
    ) -> tuple[list[str], list[float]]:
        """The k items of an embedding run with the largest inner product with `vec`, `skip`ped
        ISBNs left out, best first, ties by ISBN: from the readers' index when the run has one
        and it can answer, else by scanning every item vector."""
        items = self._item_vectors(run_id)
        rows = [items.row[i] for i in skip if i in items.row]
        index = self._reader_index(run_id)
        got = None
        if index is not None:
            excluded = np.array(rows, dtype=np.int64)
            got = neighbours.reader_candidates(index, items.raw, vec, excluded, k)
        if got is not None:  # the index's candidates, in the scan's order
            cand, scores = got
            best = _top(scores, items.isbns[cand], k)
            return items.isbns[cand[best]].tolist(), scores[best].astype(float).tolist()
        scores = items.raw @ np.asarray(vec, dtype=np.float32)
        scores[rows] = -np.inf
        best = _top(scores, items.isbns, k)
        return items.isbns[best].tolist(), scores[best].astype(float).tolist()

    def _reader_index(self, run_id: str) -> Any:
        """The served readers' index over a run's item vectors (neighbours.reader_index), or
        None: the exact scan answers. Only from a snapshot, where one worker builds it (~30 s at
        xl's 1.9 M items) and every worker maps it, and only above `reader_exact_max` items (the
        scan is ~60 ms a request at 1.9 M x 64, ~8 ms at Book-Crossing's 271k) when its recall@10
        on sample readers reaches min_recall: a one-off Store (the CLI, the tests) scans, as the
        recommend_model macro does."""
        return self.reader_index_facts(run_id)[0]

    def reader_index_facts(self, run_id: str) -> tuple[Any, dict[str, Any] | None]:
        """(the readers' index of a run or None, what its build measured or None when none
        was built: a one-off Store, or no more than `reader_exact_max` items)."""
        if not self.shared.enabled:
            return None, None
        return self._cached(("reader_index", run_id), lambda: self._reader_index_built(run_id))

    def _reader_index_built(self, run_id: str) -> tuple[Any, dict[str, Any] | None]:
        settings = self._cached("neighbour_settings", neighbours.load)
        items = self._item_vectors(run_id)
        if items.raw.shape[0] <= settings.reader_exact_max:
            return None, None

        def build() -> tuple[Any, dict[str, Any]]:
            ids, matrix = self._user_vectors(run_id)
            live = np.flatnonzero(np.any(np.asarray(matrix) != 0, axis=1))
            rng = np.random.default_rng(settings.seed)
            sample = np.sort(rng.choice(live, min(live.size, settings.reader_sample), False))
            exclude = []
            for u in ids[sample].tolist():
                read = self.user_ratings(u)["isbn"].to_list()
                exclude.append(np.array([items.row[i] for i in read if i in items.row], np.int64))
            index = neighbours.reader_index(items.raw, settings)
            if index is None or sample.size == 0:
                return None, {"items": int(items.raw.shape[0]), "readers": int(sample.size)}
            recall = neighbours.reader_checked(
                index, items.raw, np.asarray(matrix[sample]), exclude, settings
            )
            info = {
                "items": int(items.raw.shape[0]),
                "lists": int(index.nlist),
                "nprobe": int(index.nprobe),
                "readers": int(sample.size),
                f"recall@{neighbours.READER_K}": round(recall, 4),
            }
            return (index if recall >= settings.min_recall else None), info

        return self.shared.faiss_index(f"reader index {run_id}", build)

    def _top_lists(self, run_id: str) -> _TopLists:
        """A 'topn' run's stored lists in memory (~8 bytes a row: 39 MB for 4.8 M rows)."""

        def load() -> dict[str, np.ndarray | None]:
            lists = _top_lists(self.frame("run_recommendations", {"run_id": run_id}))
            return {**vars(lists), "isbns": _strings(lists.isbns)}

        return self._cached(
            ("top_lists", run_id),
            lambda: _TopLists(**self.shared.arrays(f"top lists {run_id}", load)),
        )

    def _reasons(
        self, run: Mapping[str, Any], isbns: Sequence[str], rated: Sequence[str]
    ) -> pl.DataFrame:
        """For each recommended book, the closest book in the reader's history by item-embedding
        cosine (the run's embeddings, or the default embedding run's for models without any)."""
        recs, because, titles, sims = self._reason_lists(run, isbns, rated)
        return pl.DataFrame(
            {"isbn": recs, "because_isbn": because, "because_title": titles, "because_score": sims},
            schema={
                "isbn": pl.String,
                "because_isbn": pl.String,
                "because_title": pl.String,
                "because_score": pl.Float64,
            },
        )

    def _reason_lists(
        self, run: Mapping[str, Any], isbns: Sequence[str], rated: Sequence[str]
    ) -> tuple[list[str], list[str], list[str], list[float]]:
        """`_reasons` as lists: (recommended isbns that have one, their because isbns, because
        titles (the ISBN when untitled), cosines)."""
        try:
            reason_run = run if run["has_item_embeddings"] else self._run(None, embeddings=True)
        except (StageNotReadyError, UnknownEntityError):
            return [], [], [], []
        items = self._item_vectors(reason_run["run_id"])
        hist = [i for i in rated if i in items.row]
        recs = [i for i in isbns if i in items.row]
        if not hist or not recs:
            return [], [], [], []
        sims = items.unit[[items.row[i] for i in recs]] @ items.unit[[items.row[i] for i in hist]].T
        best = sims.argmax(axis=1)
        because = [hist[j] for j in best]
        row = self._book_row()
        title = self._plain_books()["title"]
        at = [row.get(b) for b in because]
        known = title.gather([r for r in at if r is not None]).to_list()
        got = iter(known)
        titles = [next(got) if r is not None else None for r in at]
        return (
            recs,
            because,
            [t or b for t, b in zip(titles, because, strict=True)],
            sims[np.arange(len(recs)), best].astype(float).tolist(),
        )

    def _item_neighbours(self, run_id: str) -> _Neighbours | None:

        def load() -> dict[str, np.ndarray | None]:
            return _Neighbours.arrays(
                _neighbour_lists(
                    self.frame("app_item_neighbour_ids", {"run_id": run_id}),
                    self.frame("app_item_neighbours", {"run_id": run_id}),
                )
            )

        return self._cached(
            ("item_neighbours", run_id),
            lambda: _Neighbours.from_arrays(self.shared.arrays(f"item lists {run_id}", load)),
        )

    def _listed(
        self, lists: _Neighbours | None, key: str, k: int, source: str
    ) -> pl.DataFrame | None:
        """The first k of a precomputed list as neighbours, or None when the lists are absent or
        shorter than k (the caller then searches the vectors)."""
        plan = self._listed_plan(lists, key, k, source)
        return None if plan is None else self._neighbours(*plan)

    def _listed_plan(
        self, lists: _Neighbours | None, key: str, k: int, source: str
    ) -> tuple[list[str], list[float], str] | None:
        """`_listed` before any metadata: (isbns, scores, source), or None."""
        if lists is None or k > lists.k:
            return None
        if key not in lists.row:
            return [], [], source
        at = lists.row[key]
        return (
            lists.isbns[lists.hits[at, :k]].tolist(),
            lists.scores[at, :k].astype(float).tolist(),
            source,
        )

    def similar_collab(self, isbn: str, model: str | None = None, k: int = 10) -> pl.DataFrame:
        """Nearest books by cosine of the run's item embeddings (similar_books_model's answer):
        from the lists written with the run, or by scanning the embeddings for a longer k."""
        return self._neighbours(*self._collab_plan(isbn, model, k))

    def _collab_plan(
        self, isbn: str, model: str | None, k: int
    ) -> tuple[list[str], list[float], str]:
        """`similar_collab` before any metadata: (isbns, scores, source)."""
        run = self._run(model, embeddings=True)
        key = (isbn or "").strip().upper()
        listed = self._listed_plan(self._item_neighbours(run["run_id"]), key, k, run["model"])
        if listed is not None:
            return listed
        items = self._item_vectors(run["run_id"])
        if key not in items.row or not items.unit[items.row[key]].any():
            return [], [], run["model"]  # a zero vector (unread in training): no direction
        scores = items.unit @ items.unit[items.row[key]]
        scores[items.row[key]] = -np.inf
        best = _top(scores, items.isbns, k)
        return items.isbns[best].tolist(), scores[best].astype(float).tolist(), run["model"]

    def _content_vectors(self) -> _Vectors:
        return self._vector_set("content vectors", lambda: self.frame("app_content_embeddings"))

    def _content_index(self) -> _ContentIndex:
        vecs = self._content_vectors()
        return self._cached("content_index", lambda: _ContentIndex(vecs.raw, vecs.isbns))

    def _content_neighbours(self) -> _Neighbours | None:

        def load() -> dict[str, np.ndarray | None]:
            return _Neighbours.arrays(
                _neighbour_lists(
                    self.frame("app_content_neighbour_ids"), self.frame("app_content_neighbours")
                )
            )

        return self._cached(
            "content_neighbours",
            lambda: _Neighbours.from_arrays(self.shared.arrays("content lists", load)),
        )

    def similar_content(self, isbn: str, k: int = 10) -> pl.DataFrame:
        """Nearest books by content embedding (similar_books_by_content's answer): from the lists
        `bookrec content` precomputed, or by searching the vectors when k is longer than those."""
        self.require("content")
        key = (isbn or "").strip().upper()
        listed = self._listed(self._content_neighbours(), key, k, "content")
        if listed is not None:
            return listed
        vecs = self._content_vectors()
        if key not in vecs.row:
            return self._neighbours([], [], "content")
        best, scores = self._content_index().top(vecs.row[key], k)
        return self._neighbours(vecs.isbns[best].tolist(), scores.astype(float).tolist(), "content")

    def _neighbours(self, isbns: list[str], scores: list[float], source: str) -> pl.DataFrame:
        out = self.books(isbns).select(NEIGHBOUR_COLUMNS)
        return out.with_columns(
            rank=pl.int_range(1, len(isbns) + 1, dtype=pl.Int64),
            score=pl.Series(scores, dtype=pl.Float64),
            source=pl.lit(source),
        )

    # ------------------------------------------------------------------ JSON API (issue 13)

    def run_of(self, model: str | None) -> dict[str, Any]:
        """The current run of `model` (the default model when None); UnknownEntityError if none."""
        return self._run(model)

    def similar_model(self, isbn: str, model: str | None = None, k: int = 10) -> pl.DataFrame:
        """`similar_collab`, or for an item-based run without item vectors (RP3beta, hybrid,
        item-kNN, ...) the book's largest stored item-item weights (its row of W: the books a
        reader of it is recommended first), ties by ISBN."""
        return self._neighbours(*self._similar_plan(isbn, model, k))

    def similar_rows(
        self, isbn: str, model: str | None = None, k: int = 10
    ) -> list[dict[str, Any]]:
        """`similar_model`'s rows as dicts (the JSON API: no frame built per request)."""
        isbns, scores, source = self._similar_plan(isbn, model, k)
        rows = self._book_dicts(isbns, NEIGHBOUR_COLUMNS)
        for rank, (r, score) in enumerate(zip(rows, scores, strict=True), 1):
            r.update(rank=rank, score=float(score), source=source)
        return rows

    def _similar_plan(
        self, isbn: str, model: str | None, k: int
    ) -> tuple[list[str], list[float], str]:
        """`similar_model` before any metadata: (isbns, scores, source)."""
        if model is not None:
            run = self._run(model)
            weights = None if run["has_item_embeddings"] else self._item_weights(run["run_id"])
            if weights is not None:
                ids, row, w = weights
                at = row.get((isbn or "").strip().upper())
                if at is None:
                    return [], [], run["model"]
                lo, hi = w.indptr[at], w.indptr[at + 1]
                cols, vals = w.indices[lo:hi], w.data[lo:hi].astype(np.float64)
                keep = (cols != at) & (vals > 0)
                cols, vals = cols[keep], vals[keep]
                order = np.lexsort((ids[cols], -vals))[:k]
                return ids[cols[order]].tolist(), vals[order].tolist(), run["model"]
        return self._collab_plan(isbn, model, k)

    def recommend_reader(
        self, model: str | None, user_id: int, k: int = 10, exclude_read: bool = True
    ) -> pl.DataFrame:
        """`recommend`, or with exclude_read=False the run's best books read ones included
        (embedding runs; a topn run's stored list never holds the books it was trained on)."""
        return self._rec_frame(*self._reader_plan(model, user_id, k, exclude_read=exclude_read))

    def recommend_rows(
        self, model: str | None, user_id: int, k: int = 10, exclude_read: bool = True
    ) -> list[dict[str, Any]]:
        """`recommend_reader`'s rows as dicts (the JSON API: no frame built per request)."""
        return self._rec_rows(*self._reader_plan(model, user_id, k, exclude_read=exclude_read))

    def has_user(self, user_id: int) -> bool:
        """Whether `user(user_id)` is not None: the reader is in users or has ratings."""
        if not -(2**31) <= user_id < 2**31:
            return False
        ids, _ = self._users()
        at = find(ids, user_id)
        if at < ids.size and ids[at] == user_id:
            return True
        users, _ = self._ratings_by_user()
        lo = find(users, user_id)
        return lo < users.size and users[lo] == user_id

    def has_book(self, isbn: str) -> str:
        """The normalised ISBN of a catalogued book (what `book` checks, without its query)."""
        key = (isbn or "").strip().upper()
        if key not in self._book_row():
            raise UnknownEntityError(
                f"no book with ISBN {isbn!r}", hint="Search by title or author"
            )
        return key

    def _book_dicts(self, isbns: Sequence[str], columns: tuple[str, ...]) -> list[dict[str, Any]]:
        """`books(isbns).select(columns)` as one dict per ISBN (nulls for unknown ISBNs)."""
        table = self._cached(
            ("book_columns", columns), lambda: self._plain_books().select(columns).rechunk()
        )
        row = self._book_row()
        at = [row.get(i) for i in isbns]
        known = [r for r in at if r is not None]
        got = iter(table[known].to_dicts() if known else ())
        blank = dict.fromkeys(columns)
        return [
            next(got) if r is not None else {**blank, "isbn": i}
            for i, r in zip(isbns, at, strict=True)
        ]

    def _rec_rows(
        self,
        run: Mapping[str, Any],
        isbns: Sequence[str],
        scores: Sequence[float],
        source: str,
        name: str,
        rated: Sequence[str],
    ) -> list[dict[str, Any]]:
        """`_rec_frame(...)`'s rows as dicts, as `iter_rows(named=True)` gives them."""
        rows = self._book_dicts(isbns, REC_COLUMNS)
        recs, because, titles, sims = self._reason_lists(run, list(isbns), list(rated))
        reasons = {r: (b, t, s) for r, b, t, s in zip(recs, because, titles, sims, strict=True)}
        for rank, (r, score) in enumerate(zip(rows, scores, strict=True), 1):
            b, t, s = reasons.get(r["isbn"], (None, None, None))
            r.update(
                rank=rank,
                score=float(score),
                source=source,
                model=name,
                because_isbn=b,
                because_title=t,
                because_score=s,
            )
        return rows

    def _rec_frame(
        self,
        run: Mapping[str, Any],
        isbns: Sequence[str],
        scores: Sequence[float],
        source: str,
        name: str,
        rated: Sequence[str],
    ) -> pl.DataFrame:
        """Recommended books as `recommend` returns them: metadata, rank, score, source, reason."""
        recs = self.books(list(isbns)).select(REC_COLUMNS)
        recs = recs.with_columns(
            rank=pl.int_range(1, len(isbns) + 1),
            score=pl.Series(list(scores), dtype=pl.Float64),
            source=pl.lit(source),
            model=pl.lit(name),
        )
        return recs.join(
            self._reasons(run, list(isbns), list(rated)),
            on="isbn",
            how="left",
            maintain_order="left",
        )

    def _run_params(self, run_id: str) -> dict[str, Any]:
        def load() -> dict[str, Any]:
            import json

            frame = self.frame("api_run_params", {"run_id": run_id})
            return json.loads(frame["params"][0] or "{}") if frame.height else {}

        return self._cached(("params", run_id), load)

    def _item_weights(self, run_id: str) -> tuple[np.ndarray, Keys, Any] | None:
        """A run's fold-in weights W (engine.foldin) as CSR over its books, or None if it has none."""

        def load() -> tuple[np.ndarray, Keys, Any] | None:
            if "item_weights" not in self.objects:
                return None
            import scipy.sparse as sp

            ids = self.frame("api_item_weight_ids", {"run_id": run_id})["isbn"].to_numpy()
            if ids.size == 0:
                return None
            frame = self.frame("api_item_weights", {"run_id": run_id})
            w = sp.csr_matrix(
                (
                    frame["weight"].to_numpy().astype(np.float32),
                    (frame["row"].to_numpy(), frame["col"].to_numpy()),
                ),
                shape=(ids.size, ids.size),
            )
            return ids, Keys(_strings(ids)), w

        return self._cached(("item_weights", run_id), load)

    def _global_ranking(self, run_id: str) -> pl.DataFrame:
        """A run's one ranking for everybody (popularity: recommendations with user_id NULL)."""
        return self._cached(
            ("global_ranking", run_id),
            lambda: self.frame("app_topn", {"run_id": run_id, "user_id": None}),
        )

    def _als_gram(self, run_id: str) -> np.ndarray:
        def load() -> np.ndarray:
            raw = self._item_vectors(run_id).raw.astype(np.float64)
            return raw.T @ raw

        return self._cached(("als_gram", run_id), load)

    def _book_positions(self, isbns: np.ndarray, key: Any) -> np.ndarray:
        """Row in the book table of each ISBN of a run's item list (-1: not in `books`)."""

        def load() -> np.ndarray:
            row = self._book_row()
            return np.array([row.get(i, -1) for i in isbns.tolist()], dtype=np.int64)

        return self._cached(("book_positions", key), load)

    def fold_in(
        self,
        model: str | None,
        isbns: Sequence[str],
        k: int = 20,
        facets: Mapping[str, tuple[str, ...]] | None = None,
        exclude: Sequence[str] = (),
    ) -> tuple[pl.DataFrame, dict[str, Any]]:
        """Recommendations for a reader no run knows, from the books they picked (engine.foldin):
        item-based runs sum their stored item-item weights, embedding runs solve the reader's
        vector from the item vectors; no usable pick gets popularity within `facets`.
        Returns the books (as `recommend`) and how they were computed."""
        plan, info = self._fold_plan(model, isbns, k, facets, exclude)
        return self._rec_frame(*plan), info

    def fold_in_rows(
        self,
        model: str | None,
        isbns: Sequence[str],
        k: int = 20,
        facets: Mapping[str, tuple[str, ...]] | None = None,
        exclude: Sequence[str] = (),
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """`fold_in` with the books as dicts (the JSON API: no frame built per request)."""
        plan, info = self._fold_plan(model, isbns, k, facets, exclude)
        return self._rec_rows(*plan), info

    def _fold_plan(
        self,
        model: str | None,
        isbns: Sequence[str],
        k: int,
        facets: Mapping[str, tuple[str, ...]] | None,
        exclude: Sequence[str],
    ) -> tuple[tuple[Mapping[str, Any], list[str], list[float], str, str, list[str]], dict]:
        """`fold_in` before any metadata: ((run, isbns, scores, source, name, picks), info)."""
        from engine import foldin

        run = self._run(model)
        seen: dict[str, None] = {}
        for i in isbns[: foldin.MAX_PICKS]:
            seen.setdefault((i or "").strip().upper(), None)
        picks = [i for i in seen if i]
        skip = set(picks) | {(i or "").strip().upper() for i in exclude[: foldin.MAX_PICKS]}
        facets = {f: tuple(v) for f, v in (facets or {}).items() if f in FIELDS and v}
        allowed = self._mask(BrowseQuery(facets=facets)) if facets else None
        info: dict[str, Any] = {"run_id": run["run_id"], "model": run["model"]}
        top: list[str] = []
        values: list[float] = []
        vector = self._fold_vector(run, picks, info) if allowed is None else None
        if vector is not None:  # ranked as a reader's: by the readers' index where it has one
            vec, used = vector
            if used:
                top, values = self._embedding_top(run["run_id"], vec, skip, k)
            universe = scores = None
        else:
            universe, scores, used = self._fold_scores(run, picks, info)
        info["used"] = used
        info["ignored"] = [i for i in picks if i not in set(used)]
        if universe is not None and scores is not None:
            scores = scores.astype(np.float64, copy=True)
            rows = self._book_positions(universe, ("universe", run["run_id"], info["method"]))
            at = self._cached(
                ("universe_at", run["run_id"], info["method"]),
                lambda: {isbn: i for i, isbn in enumerate(universe.tolist())},
            )  # a dict lookup per pick: np.isin over the run's ISBN strings was ~6 ms a request
            drop = np.zeros(universe.size, bool)
            drop[[at[i] for i in skip if i in at]] = True
            if allowed is not None:
                drop |= ~np.where(rows >= 0, allowed[np.maximum(rows, 0)], False)
            scores[drop] = -np.inf
            best = _top(scores, universe, k)
            top, values = universe[best].tolist(), scores[best].astype(float).tolist()
        if not top:
            pop = self.popular(facets=facets, k=k, exclude=sorted(skip))
            info.update(method="popularity within facets", exact=True)
            named, values = pop["isbn"].to_list(), pop["score"].to_list()
            return (run, named, values, "popularity_fallback", "popular_books", picks), info
        return (run, top, values, "model", run["model"], picks), info

    def _warm_fold_in(self, run: Mapping[str, Any]) -> None:
        """What POST /api/v1/recommendations reads for a run, loaded before DuckDB's memory is
        capped (the item-item weights are millions of rows at Book-Crossing size)."""
        if run["model"] == "popularity":
            self._global_ranking(run["run_id"])
        elif run["has_item_embeddings"]:
            self._run_params(run["run_id"])
            if run["model"] == "als":
                self._als_gram(run["run_id"])
        else:
            self._item_weights(run["run_id"])

    def _fold_scores(
        self, run: Mapping[str, Any], picks: list[str], info: dict[str, Any]
    ) -> tuple[np.ndarray | None, np.ndarray | None, list[str]]:
        """(item ISBNs, the new reader's scores over them, the picks the run knows) for a run."""
        from engine import foldin

        run_id, name = run["run_id"], run["model"]
        if name == "popularity":
            ranking = self._global_ranking(run_id)
            info.update(method="popularity ranking", exact=True)
            return ranking["isbn"].to_numpy(), ranking["score"].to_numpy(), list(picks)
        weights = self._item_weights(run_id)
        if weights is not None:
            ids, row, w = weights
            used = [i for i in picks if i in row]
            info.update(
                method="sum of the picked books' rows of the item-item weights",
                exact=name in foldin.EXACT_MODELS,
            )
            if not used:
                return None, None, []
            at = np.array([row[i] for i in used], dtype=np.int64)
            cut = self._run_params(run_id).get("item_weights_per_row")
            info["exact"] = foldin.rows_complete(w, at, name, cut=cut)
            return ids, foldin.item_scores(w, at), used
        vector = self._fold_vector(run, picks, info)
        if vector is not None:
            vec, used = vector
            if not used:
                return None, None, []
            items = self._item_vectors(run_id)
            return items.isbns, items.raw @ vec, used
        info.update(method="none: the run stored no item weights or vectors", exact=False)
        return None, None, []

    def _fold_vector(
        self, run: Mapping[str, Any], picks: list[str], info: dict[str, Any]
    ) -> tuple[np.ndarray, list[str]] | None:
        """(a new reader's float32 vector, the picks the run knows) for a run scored by its
        item vectors (not popularity, no item-item weights); None for other runs."""
        from engine import foldin

        run_id, name = run["run_id"], run["model"]
        if name == "popularity" or not run["has_item_embeddings"]:
            return None
        if self._item_weights(run_id) is not None:
            return None
        items = self._item_vectors(run_id)
        used = [i for i in picks if i in items.row]
        at = np.array([items.row[i] for i in used], dtype=np.int64)
        params = self._run_params(run_id).get("model", {})
        gram = self._als_gram(run_id) if name == "als" else None
        vec, method = foldin.user_vector(name, params, items.raw, at, gram)
        info.update(method=method, exact=False)
        return vec.astype(np.float32), used

    def health(self) -> dict[str, Any]:
        """The database and its current runs with their age (the API's /health); a run whose
        readers' index this process has built also says what its check measured (`reader_index`:
        lists, nprobe, readers, recall@10; `used` false when it missed min_recall and the scan
        answers). A health call never builds one."""
        from datetime import UTC, datetime

        now = datetime.now(UTC).replace(tzinfo=None)
        runs = []
        if self.sizes["model_runs"] > 0 and "item_weights" in self.objects:
            for r in self.frame("api_health").iter_rows(named=True):
                done = r["finished_at"]
                entry = {
                    **r,
                    "finished_at": done.isoformat() if done else None,
                    "age_s": (now - done).total_seconds() if done else None,
                }
                index, facts = self._memo.get(("reader_index", r["run_id"]), (None, None))
                if facts is not None:
                    entry["reader_index"] = {**facts, "used": index is not None}
                runs.append(entry)
        return {
            "database": self.path.name,
            "books": self.sizes["books"],
            "ratings": self.sizes["ratings"],
            "runs": runs,
        }

    # ------------------------------------------------------------------ metadata and runs

    def cooccurrence(self, field_a: str, field_b: str) -> pl.DataFrame:
        """Label pairs of two facet fields with books, lift and P(b|a) (facet_cooccurrence)."""
        self.require("facets")
        _fields(field_a, field_b)
        return self.cached_frame("facet_pair_counts", {"field_a": field_a, "field_b": field_b})

    def facet_counts(self) -> pl.DataFrame:
        """Books per facet label of every field (facet_counts)."""
        self.require("facets")
        return self.cached_frame("facet_counts_all")

    def facet_triples(self, x: str = "genre", y: str = "audience", z: str = "tone") -> pl.DataFrame:
        """Books per (x, y, z) label triple: the 3D surface x × y -> z."""
        self.require("facets")
        _fields(x, y, z)
        return self.cached_frame("facet_triples", {"x_field": x, "y_field": y, "z_field": z})

    def facet_labels(self, fld: str) -> pl.DataFrame:
        """Raw label -> facet mapping of one field."""
        self.require("facets")
        _fields(fld)
        return self.cached_frame("facet_labels_of_field", {"field": fld})

    def runs(self) -> pl.DataFrame:
        """Every model run, current ones first."""
        return self.cached_frame("app_runs")

    def tuning_runs(self) -> pl.DataFrame:
        """Every tuning study (`bookrec tune`), latest first."""
        return self.cached_frame("app_tuning_runs")

    def tuning_trials(self, tune_id: str) -> pl.DataFrame:
        """The trials of one stored study; UnknownEntityError for any other id (nothing cached)."""
        if tune_id not in set(self.tuning_runs()["tune_id"].to_list()):
            raise UnknownEntityError(f"no tuning study {tune_id!r}", hint="Run `bookrec tune`")
        return self.cached_frame("app_tuning_trials", {"tune_id": tune_id})

    def run_curves(self, run_ids: Sequence[str]) -> pl.DataFrame:
        """Per-epoch history (loss, validation metrics) of some runs."""
        return self.frame("app_run_curves", {"run_ids": list(run_ids)})


def _fields(*names: str) -> None:
    """Refuse a facet field that is not one of FIELDS (such answers are memoised per field)."""
    for name in names:
        if name not in FIELDS:
            raise UnknownEntityError(
                f"no facet field {name!r}", hint=f"Fields: {', '.join(FIELDS)}"
            )


_STORES: dict[Path, Store] = {}
_STORES_LOCK = threading.Lock()


def open_store(path: str | Path, *, threads: int | None = None) -> Store:
    """The process-wide Store of a database file, opened read-only on first use."""
    key = Path(path).resolve()
    with _STORES_LOCK:
        if key not in _STORES:
            _STORES[key] = Store(key, threads=threads)
        return _STORES[key]


def close_all() -> None:
    """Close every open Store (tests)."""
    with _STORES_LOCK:
        for store in _STORES.values():
            store.close()
        _STORES.clear()
