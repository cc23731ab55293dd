"""Precomputed nearest books: a faiss top-k over embedding rows, exact up to a size threshold.

`bookrec content` keeps each book's nearest books by content (book_content_neighbours) and every
model run with item embeddings keeps each item's nearest items (item_neighbours), so the
dashboard's similar-books page reads two short lists instead of scanning two matrices per click.
The SQL macros (similar_books_by_content, similar_books_run) stay exact scans. Up to
`exact_max` rows (200,000) the lists are faiss's exact inner-product search and give the macros'
answers (tests check that they agree); above it they come from an IVF index (0.993 recall@20
against the exact lists at 271k x 384, docs/BENCHMARKS.md, `bench/neighbours.py`), checked on
500 sample rows first (rows tied with the exact k-th score count as hits; probes double up to
the work of the exact fallback): below `min_recall` (0.95) even with more probes, the search is
exact up to `exact_fallback_max` rows (400,000), and above that no lists are written at all (an
exact search over n rows is n^2 work: xl's 1.66 M 64-d item vectors would take hours), so the
dashboard answers those books by its exact query-time search instead of from doubtful lists.
The dashboard's query-time search (engine/query.py) uses `exact_rows` with the macros' tie rule.

The readers' index (`reader_index`, `reader_candidates`, `reader_checked`) answers the other
question a served dashboard asks of a large catalogue: a reader's best unread items by inner
product, without scanning every item vector per request (engine/query.py uses it above
`reader_exact_max` items, when its recall on sample readers reaches `min_recall`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl

from engine import config

NEIGHBOURS = 20  # nearest books kept per book by default
DECIMALS = 6  # scores equal to 1e-6 are ties, ordered by ISBN (see nearest)
SLACK = 1e-4  # bound on faiss's float32 error in a unit-row score, with room for the rounding
_SCHEMA = {"isbn": pl.String, "rank": pl.Int16, "neighbour": pl.String, "score": pl.Float32}


@dataclass(frozen=True)
class NeighbourSettings:
    """How the neighbour lists are searched ([neighbours] in bookrec.toml, BOOKREC_NEIGHBOURS_*)."""

    exact_max: int = 200_000  # rows up to which the search is exact; above: `approximate`
    approximate: Literal["ivf", "hnsw"] = "ivf"  # IVF-Flat (fast to build) or HNSW-Flat
    nprobe: int = 32  # IVF lists scanned per query (of ~2 sqrt(n) lists)
    ef_search: int = 128  # HNSW candidate queue per query
    min_recall: float = 0.95  # recall@k the approximate index must reach on a sample, else exact
    # above this many rows a failed recall check writes no lists instead of searching exactly
    exact_fallback_max: int = 400_000
    block: int = 8192  # query rows per faiss call (progress; result arrays stay small)
    seed: int = 0  # IVF's training sample and k-means
    # served readers' recommendations (engine/query.py): an exact scan of every item vector per
    # request up to this many items, above it a reader index (`reader_index`) whose sample
    # recall@10 against that scan reaches min_recall, else the scan still
    reader_exact_max: int = 500_000
    reader_sample: int = 500  # sample readers of the reader index's recall check


def load(overrides: dict | None = None) -> NeighbourSettings:
    """NeighbourSettings from bookrec.toml [neighbours], BOOKREC_NEIGHBOURS_* and overrides."""
    return config.load_settings(NeighbourSettings, "neighbours", overrides)


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), float32: inner product = cosine."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1, norms)


@contextmanager
def faiss_threads(threads: int | None) -> Iterator[None]:
    """faiss's OpenMP threads set to `threads` (None: leave them) for the block, then restored."""
    import faiss

    before = faiss.omp_get_max_threads()
    if threads:
        faiss.omp_set_num_threads(threads)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def isbn_ranks(isbns: np.ndarray | list[str]) -> np.ndarray:
    """Each row's position in ISBN order, plus one past the end for faiss's "no hit" (-1)."""
    arr = np.asarray(isbns)  # fixed-width strings sort as themselves (code point order, as str)
    order = np.argsort(arr if arr.dtype.kind == "U" else arr.astype(object), kind="stable")
    ranks = np.empty(len(order) + 1, dtype=np.int64)
    ranks[order] = np.arange(len(order))
    ranks[-1] = len(order)
    return ranks


def _rescored(
    vectors: np.ndarray, rows: np.ndarray, hits: np.ndarray, fast: np.ndarray
) -> np.ndarray:
    """faiss's scores `fast`, with those of rows holding a near-tie (two scores within 1e-5)
    recomputed in float64: faiss's kernels give two copies of one vector scores a few ulps
    apart depending on where they sit in memory, and copies must tie as they do in SQL.
    (-1, "no hit", reads the last row; callers mask it.)"""
    out = fast.astype(np.float64)
    near = np.flatnonzero((np.abs(np.diff(fast, axis=1)) < 1e-5).any(axis=1))
    for at in range(0, near.size, 1024):
        sub = near[at : at + 1024]
        out[sub] = np.einsum("id,ikd->ik", vectors[rows[sub]], vectors[hits[sub]], dtype=np.float64)
    return out


def _ordered(
    rows: np.ndarray,
    hits: np.ndarray,
    sims: np.ndarray,
    ranks: np.ndarray,
    k: int,
    decimals: int | None,
    below: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The first k candidates in the macros' order (score desc, ties by ISBN), the row itself
    and "no hit" (-1) dropped; and whether each answer is certainly the full scan's: every row
    the search did not return scores at most `below` (its last returned score plus float
    slack), so the answer is complete when `below` is under the k-th score after rounding."""
    key = sims if decimals is None else np.round(sims, decimals)
    key = np.where((hits < 0) | (hits == rows[:, None]), -np.inf, key)
    pick = np.lexsort((ranks[hits], -key), axis=-1)[:, :k]
    kth = np.take_along_axis(key, pick[:, -1:], axis=1)[:, 0]
    done = (below < kth) | ((hits >= 0).sum(axis=1) == len(ranks) - 1)  # or it returned all
    return np.take_along_axis(hits, pick, 1), np.take_along_axis(sims, pick, 1), done


def exact_rows(
    vectors: np.ndarray,
    rows: np.ndarray,
    k: int,
    ranks: np.ndarray,
    *,
    decimals: int | None = DECIMALS,
    margin: int = 16,
) -> tuple[np.ndarray, np.ndarray]:
    """(hits, scores), each (len(rows), k): the k rows with the largest inner product with each of
    `rows` (itself excluded), best first, ties (after rounding to `decimals`; None: exact floats,
    as the SQL macros compare) by ISBN rank. faiss's exact search (`faiss.knn`, no copy of
    `vectors`) for k + 1 + margin candidates, rescored in float64; rows whose ties reach past
    them are searched again with 4x as many, up to every row, so the answer always equals
    sorting the full scan."""
    import faiss

    n = vectors.shape[0]
    k = min(k, n - 1)
    rows = np.asarray(rows, dtype=np.int64)
    hits = np.zeros((rows.size, max(k, 0)), dtype=np.int64)
    scores = np.zeros((rows.size, max(k, 0)), dtype=np.float32)
    todo = np.arange(rows.size)
    wide = min(n, k + 1 + margin)
    while todo.size and k > 0:
        # rows searched together hold at most ~32M candidates (0.4 GB) at the widest
        step = max(1, 2**25 // wide)
        again = []
        for at in range(0, todo.size, step):
            part = todo[at : at + step]
            fast, cand = faiss.knn(vectors[rows[part]], vectors, wide, faiss.METRIC_INNER_PRODUCT)
            sims = _rescored(vectors, rows[part], cand, fast)
            below = fast.min(axis=1) + SLACK  # faiss's float32 error, plus half a rounding step
            h, s, done = _ordered(rows[part], cand, sims, ranks, k, decimals, below)
            hits[part], scores[part] = h, s
            again.append(part[~done])
        todo = np.concatenate(again) if wide < n else todo[:0]
        wide = min(n, wide * 4)
    return hits, scores


def _approximate_index(vectors: np.ndarray, settings: NeighbourSettings):  # -> faiss.Index
    """An IVF-Flat (nlist ~ 2 sqrt(n), k-means on a sample) or HNSW-Flat inner-product index."""
    import faiss

    n, d = vectors.shape
    if settings.approximate == "hnsw":
        index = faiss.IndexHNSWFlat(d, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 40
        index.add(vectors)
        index.hnsw.efSearch = settings.ef_search
        return index
    nlist = max(1, min(n // 39, round(2 * math.sqrt(n))))  # faiss wants >= 39 points per list
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed, index.cp.niter = settings.seed, 10
    rng = np.random.default_rng(settings.seed)
    sample = np.sort(rng.choice(n, min(n, 64 * nlist), replace=False))
    index.train(vectors[sample])
    index.add(vectors)
    index.nprobe = min(nlist, settings.nprobe)
    return index


def _checked(
    index,  # faiss.Index
    vectors: np.ndarray,
    k: int,
    ranks: np.ndarray,
    settings: NeighbourSettings,
) -> float:
    """recall@k of `index` against the exact lists on 500 seeded sample rows, doubling nprobe
    (IVF) or efSearch (HNSW) until it reaches `min_recall` or stops being cheaper than exact
    (and than the largest exact search we would run instead: `exact_fallback_max` rows).

    Recall counts ties as hits: a returned row is right when its exact score reaches the exact
    k-th score (both rounded to DECIMALS). The exact lists break ties by ISBN only to be
    deterministic; any of the tied rows is as near. On xl's ALS vectors (1.66 M x 64: books
    read by the same few readers point the same way) 4 rows tie at the k-th score on average,
    and counting only the ISBN-first ones gave 0.923 at nprobe 64 against 0.973 this way."""
    n = vectors.shape[0]
    sample = np.random.default_rng(settings.seed).choice(n, min(n, 500), replace=False)
    _, truth = exact_rows(vectors, sample, k, ranks)
    kth = np.round(truth[:, -1:].astype(np.float64), DECIMALS)
    while True:
        fast, cand = index.search(vectors[sample], min(n, k + 9))
        sims = _rescored(vectors, sample, cand, fast)
        hits, got, _ = _ordered(sample, cand, sims, ranks, k, DECIMALS, np.zeros(sample.size))
        found = (hits >= 0) & (hits != sample[:, None]) & (np.round(got, DECIMALS) >= kth)
        recall = float(found.sum(axis=1).mean() / k)
        if recall >= settings.min_recall:
            return recall
        # more probes while each list search stays under a quarter of the lists and under the
        # work of the largest exact search we would run instead (the exact fallback: n^2 row
        # products up to exact_fallback_max rows). Bounded by exact_max^2 before, the xl ALS
        # vectors (1.66 M x 64) stopped at nprobe 32 with recall 0.949 and got no lists at all.
        probed = index.nprobe * 2 * n / index.nlist * n if hasattr(index, "nprobe") else 0
        budget = float(max(settings.exact_max, settings.exact_fallback_max)) ** 2
        if hasattr(index, "nprobe") and index.nprobe * 2 <= index.nlist // 4 and probed <= budget:
            index.nprobe *= 2
        elif hasattr(index, "hnsw") and index.hnsw.efSearch * 2 <= 1024:
            index.hnsw.efSearch *= 2
        else:
            return recall


def neighbour_rows(
    vectors: np.ndarray,
    k: int,
    ranks: np.ndarray,
    settings: NeighbourSettings,
    progress: Callable[[str], None] | None = None,
) -> tuple[np.ndarray, np.ndarray] | None:
    """(hits, scores), (n, k): every row's k nearest other rows (see `nearest`); None when the
    approximate index misses `min_recall` on more rows than an exact search can afford."""
    n = vectors.shape[0]
    approximate = n > settings.exact_max
    index = _approximate_index(vectors, settings) if approximate else None
    if index is not None:
        recall = _checked(index, vectors, k, ranks, settings)
        if progress:
            progress(f"neighbours (approximate): sample recall@{k} {recall:.3f}")
        if recall < settings.min_recall and n > settings.exact_fallback_max:
            if progress:
                progress(
                    f"neighbours: no lists: recall@{k} {recall:.3f} is under min_recall "
                    f"{settings.min_recall} and an exact search of {n:,} rows is n^2 work "
                    f"(over exact_fallback_max {settings.exact_fallback_max:,}); the dashboard "
                    "searches these vectors exactly per request"
                )
            return None
        if recall < settings.min_recall:
            index, approximate = None, False  # too far off on these vectors: exact it is
    hits = np.empty((n, k), dtype=np.int64)
    scores = np.empty((n, k), dtype=np.float32)
    step = max(1, math.ceil(n / settings.block / 10))
    order = np.arange(n)
    if index is not None and settings.approximate == "ivf":
        # queries in the order of their nearest list: neighbouring queries probe mostly the same
        # lists, which then stay in cache (in row order every query reads ~12 MB from memory)
        order = np.argsort(index.quantizer.search(vectors, 1)[1][:, 0], kind="stable")
    for b, start in enumerate(range(0, n, settings.block)):
        rows = order[start : start + settings.block]
        if index is None:
            hits[rows], scores[rows] = exact_rows(vectors, rows, k, ranks)
        else:
            fast, cand = index.search(vectors[rows], min(n, k + 9))
            sims = _rescored(vectors, rows, cand, fast)
            h, s, _ = _ordered(rows, cand, sims, ranks, k, DECIMALS, np.zeros(len(rows)))
            short = np.flatnonzero((h < 0).any(axis=1) | (h == rows[:, None]).any(axis=1))
            if short.size:  # the probed lists held fewer than k others: search those exactly
                h[short], s[short] = exact_rows(vectors, rows[short], k, ranks)
            hits[rows], scores[rows] = h, s
        if progress and b % step == 0:
            kind = "approximate" if approximate else "exact"
            progress(f"neighbours ({kind}): {start + rows.size:,}/{n:,} books")
    return hits, scores


def nearest(
    isbns: list[str],
    vectors: np.ndarray,
    k: int,
    *,
    threads: int | None = None,
    progress: Callable[[str], None] | None = None,
    settings: NeighbourSettings | None = None,
) -> pl.DataFrame:
    """(isbn, rank, neighbour, score): each book's k nearest other books by inner product,
    best first, ties (to 1e-6) by ISBN, as the similar-books macros order them. Pass unit rows
    for cosine similarity.

    Up to `settings.exact_max` rows an exact search with faiss (the macros' answers, ties
    included); beyond it an approximate IVF (or HNSW) index, ordered the same way among what it
    finds; no rows at all when that index misses `min_recall` above `exact_fallback_max` rows.
    `threads` sets faiss's OpenMP threads for the call (None: all cores).

    A row of zeros (an item nobody read in training: ALS and the like leave it at 0) has no
    direction: it is neither given neighbours nor one of anybody's. Its scores all tie at 0, so
    an exact answer for it is a sort of the whole catalogue (at xl, 1.9 M rows per such book)."""
    settings = settings or load()
    arr = np.ascontiguousarray(vectors, dtype=np.float32)
    live = np.flatnonzero(np.any(arr != 0, axis=1)) if arr.size else np.zeros(0, np.int64)
    if live.size < len(isbns):
        arr = np.ascontiguousarray(arr[live])
        isbns = [isbns[i] for i in live]
    n = len(isbns)
    k = min(k, n - 1)
    if k <= 0:
        return pl.DataFrame(schema=_SCHEMA)
    with faiss_threads(threads):
        found = neighbour_rows(arr, k, isbn_ranks(isbns), settings, progress)
    if found is None:
        return pl.DataFrame(schema=_SCHEMA)
    return as_frame(isbns, *found)


def as_frame(isbns: Sequence[str], hits: np.ndarray, scores: np.ndarray) -> pl.DataFrame:
    """(isbn, rank, neighbour, score) rows from each book's [n, k] neighbour rows and scores."""
    n, k = hits.shape
    names = np.asarray(isbns, dtype=object)
    return pl.DataFrame(
        {
            "isbn": np.repeat(names, k),
            "rank": np.tile(np.arange(1, k + 1, dtype=np.int16), n),
            "neighbour": names[hits.ravel()],
            "score": scores.ravel(),
        },
        schema=_SCHEMA,
    )


READER_K = 10  # the reader index's recall is measured at the dashboard's list length


def reader_index(vectors: np.ndarray, settings: NeighbourSettings):  # -> faiss.IndexIVFFlat | None
    """An IVF-Flat index for the readers' question, which items have the largest inner product
    with a reader's vector, over the non-zero rows of `vectors` (faiss ids: their row numbers).

    An inner-product IVF clusters the items by direction, but a reader's best items are mostly the
    long ones (ALS, MF: popular books): on xl's ALS vectors it found 0.62 of the exact top 10 at
    nprobe 64. So each item x becomes [x, sqrt(M^2 - |x|^2)] (M: the largest norm) and a reader q
    becomes [q, 0]: every item then has length M, the L2 distance is M^2 + |q|^2 - 2 q.x, and the
    nearest items in L2 are those with the largest inner product (Bachrach et al. 2014, "Speeding
    up the Xbox recommender system using a Euclidean transformation for inner-product spaces").
    There an L2 IVF found 0.997 of the top 10 at nprobe 32 (docs/BENCHMARKS.md). On real
    Book-Crossing ALS vectors (dim 256) the lift found only 0.19 at nprobe 32, where the
    inner-product IVF found 0.71. So `reader_checked` decides at build time, and a failed check
    leaves the scan serving."""
    import faiss

    arr = np.asarray(vectors, dtype=np.float32)
    live = np.flatnonzero(np.any(arr != 0, axis=1))
    n, d = live.size, arr.shape[1]
    if n == 0:
        return None  # nothing to index: every score is 0
    top = float(np.max(np.einsum("ij,ij->i", arr[live], arr[live])))

    def lifted(rows: np.ndarray) -> np.ndarray:
        x = arr[rows]
        extra = np.sqrt(np.maximum(top - np.einsum("ij,ij->i", x, x), 0))
        return np.ascontiguousarray(np.hstack([x, extra[:, None]]), dtype=np.float32)

    nlist = max(1, min(n // 39, round(2 * math.sqrt(n))))
    index = faiss.IndexIVFFlat(faiss.IndexFlatL2(d + 1), d + 1, nlist, faiss.METRIC_L2)
    index.cp.seed, index.cp.niter = settings.seed, 10
    rng = np.random.default_rng(settings.seed)
    index.train(lifted(np.sort(rng.choice(live, min(n, 64 * nlist), replace=False))))
    for at in range(0, n, 1 << 18):  # lifted in blocks: no second copy of every row
        rows = live[at : at + (1 << 18)]
        index.add_with_ids(lifted(rows), rows.astype(np.int64))
    index.nprobe = min(nlist, settings.nprobe)
    return index


def reader_candidates(
    index, vectors: np.ndarray, query: np.ndarray, exclude: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """(rows, float32 scores) of the k + len(exclude) items of the reader index nearest to the
    reader vector `query`, `exclude`d rows dropped; None when they cannot be the exact top k: the
    probed lists held fewer than k others, or the k-th score is not above 0 (rows of zeros, which
    the index leaves out, score 0 and could be among the best)."""
    q = np.zeros((1, vectors.shape[1] + 1), dtype=np.float32)
    q[0, :-1] = query
    _, ids = index.search(q, min(index.ntotal, k + exclude.size))
    rows = ids[0][ids[0] >= 0]
    if exclude.size:
        rows = rows[~np.isin(rows, exclude)]
    if rows.size < k:
        return None
    rows = np.sort(rows)  # ascending: the rows are read from a mapped matrix in file order
    scores = np.asarray(vectors[rows], dtype=np.float32) @ np.asarray(query, np.float32)
    if k and np.partition(scores, scores.size - k)[scores.size - k] <= 0:
        return None
    return rows, scores


def reader_checked(
    index,  # faiss.IndexIVFFlat from reader_index
    vectors: np.ndarray,
    queries: np.ndarray,
    exclude: Sequence[np.ndarray],
    settings: NeighbourSettings,
    k: int = READER_K,
) -> float:
    """recall@k of `reader_candidates` against the exact scan for sample readers (`queries`, the
    rows each has read in `exclude`), doubling nprobe until it reaches `min_recall` or probes a
    quarter of the lists. As in `_checked`, a returned item is right when its score (rounded to
    DECIMALS) reaches the exact k-th; a reader `reader_candidates` refuses counts as found,
    since the scan answers it."""
    import faiss

    n = vectors.shape[0]
    arr = np.ascontiguousarray(vectors, dtype=np.float32)
    q = np.ascontiguousarray(queries, dtype=np.float32)
    kth = np.zeros(len(q))
    for at in range(0, len(q), 64):
        part = range(at, min(len(q), at + 64))
        wide = min(n, k + max(exclude[i].size for i in part))
        sims, hits = faiss.knn(q[part.start : part.stop], arr, wide, faiss.METRIC_INNER_PRODUCT)
        for j, i in enumerate(part):
            keep = ~np.isin(hits[j], exclude[i])
            kth[i] = np.round(float(sims[j][keep][:k][-1]), DECIMALS)
    while True:
        found = 0.0
        for i in range(len(q)):
            got = reader_candidates(index, arr, q[i], exclude[i], k)
            if got is None:
                found += k
                continue
            top = np.sort(got[1])[::-1][:k].astype(np.float64)
            found += np.count_nonzero(np.round(top, DECIMALS) >= kth[i])
        recall = found / (k * max(1, len(q)))
        if recall >= settings.min_recall or index.nprobe * 2 > index.nlist // 4:
            return float(recall)
        index.nprobe *= 2
