"""Fold-in: recommendations for a reader no model was trained on, from the books they picked.

numpy/scipy only (the serving layer imports it; the app never loads torch). Two kinds of model:

- **item-based** (item-kNN, RP3beta, hybrid, EASE, GF-CF, ChebyCF): the trained score of a reader is
  linear in their (binary) row x of the interaction matrix, score = x W with W items x items, so
  a new reader's scores are the sum of W's rows of the books they picked. `bookrec train` stores
  W in `item_weights` (`item_item_weights` below); item-kNN's and RP3beta's W is sparse by
  construction and stored whole up to `MAX_WEIGHTS` entries, so their fold-in is **exact** (the
  trained model's scores for the same history; above it each row keeps its largest
  `MAX_WEIGHTS // rows`, and a reader whose picked rows were cut is approximate); EASE's, GF-CF's and ChebyCF's W is dense and keeps its `TOPK` largest
  weights per row, so theirs is **approximate** (the pruned tail only lowers scores); hybrid's
  (RP3beta's W plus same-author/publisher links) keeps `TOPK` per row too, which cuts only the
  rows of books in a group of more than ~`TOPK` books. A request says whether its own answer is
  exact (`rows_complete`: none of the picked books' rows was cut).
  Popularity has one ranking for everybody: exact.
- **embedding** models (MF, LightGCN, BPR, NCF's GMF vectors, ALS): the reader's vector is solved
  from the item vectors of the picked books. ALS uses its own user step, solved exactly
  (`als_user`: implicit's confidence-weighted least squares with the run's reg and alpha over all
  items); the others take ridge regression on the picked items' vectors with target 1 per book
  (`ridge_user`; reg `RIDGE_REG` x the mean squared norm of the run's item vectors: the BPR-style
  models have no least-squares reg of their own).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import polars as pl
import scipy.sparse as sp

TOPK = 200  # weights kept per row of a dense model's W (EASE, GF-CF, ChebyCF)
DENSE_MAX_ITEMS = 60_000  # dense models with more items store no W (n^2 scores to prune)
RIDGE_REG = 0.1  # ridge weight, relative to the mean squared norm of the item vectors
MAX_PICKS = 500  # books one fold-in request may name
# item-item weights stored per run at most (12 B each in a serving worker's CSR): above it each
# row keeps its largest MAX_WEIGHTS // rows (xl's item-kNN W has 288 M entries: stored whole it
# took over 24 GB to write, and as much again for every worker to load; DuckDB holds ~90 B a
# row of an open transaction in memory, so 50 M still took the xl write past 20 GB)
MAX_WEIGHTS = 20_000_000
WRITE_BLOCK = 1 << 22  # item_weights rows built and appended at a time


def _row_blocks(w: sp.csr_matrix, entries: int) -> list[tuple[int, int]]:
    """[start, stop) row ranges of a CSR holding about `entries` stored values each (a longer
    row alone)."""
    out, start, n = [], 0, w.shape[0]
    while start < n:
        stop = int(np.searchsorted(w.indptr, w.indptr[start] + entries, side="right")) - 1
        stop = min(n, max(start + 1, stop))
        out.append((start, stop))
        start = stop
    return out


def prune_rows(w: sp.spmatrix, topk: int, block: int = 1 << 24) -> sp.csr_matrix:
    """W with only the `topk` largest entries of each row (ties: lower column first), sorted in
    blocks of rows holding ~`block` entries (xl's W: 288 M entries, ~6 GB to sort at once)."""
    w = sp.csr_matrix(w, dtype=np.float32)
    w.eliminate_zeros()
    lengths = np.diff(w.indptr)
    if lengths.size == 0 or lengths.max() <= topk:
        return w
    parts = []
    for start, stop in _row_blocks(w, block):
        coo = w[start:stop].tocoo()
        order = np.lexsort((coo.col, -coo.data, coo.row))
        r, c, v = coo.row[order], coo.col[order], coo.data[order]
        first = np.searchsorted(r, r, side="left")
        keep = np.arange(r.size) - first < topk
        parts.append(sp.csr_matrix((v[keep], (r[keep], c[keep])), shape=(stop - start, w.shape[1])))
    return sp.vstack(parts, format="csr", dtype=np.float32)


def capped(w: sp.spmatrix, max_entries: int | None = None) -> tuple[sp.csr_matrix, int | None]:
    """(W as a run stores it for fold-in, the entries per row it was cut to or None): whole up
    to `max_entries` (MAX_WEIGHTS), else each row's `max_entries // rows` largest."""
    max_entries = MAX_WEIGHTS if max_entries is None else max_entries
    w = sp.csr_matrix(w, dtype=np.float32)
    if w.nnz <= max_entries:
        return w, None
    k = max(1, max_entries // max(1, w.shape[0]))
    return prune_rows(w, k), k


def dense_item_item(
    rows_of: Callable[[int, int], np.ndarray], n: int, topk: int = TOPK, block: int = 256
) -> sp.csr_matrix:
    """W from a model's scores of one-book readers: `rows_of(r0, r1)` returns the dense scores
    [r1 - r0, n] of the readers who picked only book r0, ..., r1 - 1; each row keeps its `topk`
    largest off-diagonal entries (a picked book is never recommended back to its reader)."""
    k = min(topk, max(n - 1, 0))
    rows, cols, vals = [], [], []
    for r0 in range(0, n, block):
        r1 = min(n, r0 + block)
        dense = np.array(rows_of(r0, r1), dtype=np.float32)
        dense[np.arange(r1 - r0), np.arange(r0, r1)] = -np.inf
        dense[~np.isfinite(dense)] = -np.inf
        if k == 0:
            continue
        part = np.argpartition(-dense, k - 1, axis=1)[:, :k]
        val = np.take_along_axis(dense, part, axis=1)
        ok = np.isfinite(val) & (val != 0)
        rows.append(np.repeat(np.arange(r0, r1), k).reshape(r1 - r0, k)[ok])
        cols.append(part[ok])
        vals.append(val[ok])
    if not rows:
        return sp.csr_matrix((n, n), dtype=np.float32)
    return sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)
    )


def weight_frames(run_id: str, w: sp.spmatrix, isbns: np.ndarray) -> Iterator[pl.DataFrame]:
    """`item_weights` rows (run_id, isbn, neighbour, weight) of W over the run's items, in
    frames of about WRITE_BLOCK rows (one frame of xl's 288 M rows would be ~25 GB of strings)."""
    w = sp.csr_matrix(w)
    names = pl.Series("isbn", [str(i) for i in isbns], dtype=pl.Utf8)
    for start, stop in _row_blocks(w, WRITE_BLOCK):
        coo = w[start:stop].tocoo()
        yield pl.DataFrame(
            {
                "run_id": pl.repeat(run_id, coo.nnz, dtype=pl.Utf8, eager=True),
                "isbn": names.gather(coo.row.astype(np.int64) + start),
                "neighbour": names.gather(coo.col.astype(np.int64)).rename("neighbour"),
                "weight": pl.Series(coo.data.astype(np.float32), dtype=pl.Float32),
            }
        )


def item_scores(w: sp.csr_matrix, picked: np.ndarray) -> np.ndarray:
    """x W for the binary reader x with the books at rows `picked`: the sum of their rows."""
    if len(picked) == 0:
        return np.zeros(w.shape[1], dtype=np.float64)
    return np.asarray(w[np.asarray(picked, dtype=np.int64)].sum(axis=0), dtype=np.float64).ravel()


def ridge_reg(items: np.ndarray, reg: float = RIDGE_REG) -> float:
    """The ridge weight for a run: `reg` x the mean squared norm of its item vectors."""
    if items.size == 0:
        return reg
    return float(reg * max(float(np.mean(np.einsum("ij,ij->i", items, items))), 1e-12))


def ridge_user(picked: np.ndarray, reg: float, targets: np.ndarray | None = None) -> np.ndarray:
    """argmin_u |V u - t|^2 + reg |u|^2 over the picked items' vectors V (t = 1 per book)."""
    v = np.asarray(picked, dtype=np.float64)
    t = np.ones(v.shape[0]) if targets is None else np.asarray(targets, dtype=np.float64)
    a = v.T @ v + reg * np.eye(v.shape[1])
    return np.linalg.solve(a, v.T @ t)


def als_user(
    gram: np.ndarray, picked: np.ndarray, reg: float, alpha: float, values: np.ndarray | None = None
) -> np.ndarray:
    """Implicit ALS's user step (Hu et al. 2008, as `implicit` trains it) solved exactly:
    (Y^T Y + reg I + sum_i (c_i - 1) y_i y_i^T) u = sum_i c_i y_i, with confidence c_i =
    alpha * r_i (r_i = 1: a picked book), over every item (Y^T Y = `gram`)."""
    y = np.asarray(picked, dtype=np.float64)
    c = alpha * (np.ones(y.shape[0]) if values is None else np.asarray(values, dtype=np.float64))
    a = gram + reg * np.eye(gram.shape[0]) + (y.T * (c - 1.0)) @ y
    return np.linalg.solve(a, y.T @ c)


def user_vector(
    model: str,
    params: dict,
    items: np.ndarray,
    picked: np.ndarray,
    gram: np.ndarray | None = None,
) -> tuple[np.ndarray, str]:
    """A reader's vector from the item vectors `items` of a run and the rows `picked` they have,
    by the model's rule (ALS: its own user step; BPR: ridge with the bias column met by a fixed 1;
    others: ridge), with a one-line description of the method. `gram`: items^T items (ALS only;
    computed when None)."""
    if model == "als":
        reg, alpha = float(params.get("reg", 10.0)), float(params.get("alpha", 40.0))
        if gram is None:
            raw = items.astype(np.float64)
            gram = raw.T @ raw
        vec = als_user(gram, items[picked], reg, alpha)
        return vec, f"ALS user step (reg {reg:g}, alpha {alpha:g})"
    reg = ridge_reg(items)
    chosen = items[picked].astype(np.float64)
    if model == "bpr":  # the last item column is a bias the user meets with a fixed 1
        vec = np.append(ridge_user(chosen[:, :-1], reg, 1.0 - chosen[:, -1]), 1.0)
    else:
        vec = ridge_user(chosen, reg)
    return vec, f"ridge on the picked books' vectors (reg {reg:.3g})"


def rows_complete(
    w: sp.csr_matrix,
    picked: np.ndarray,
    model: str,
    topk: int | None = None,
    cut: int | None = None,
) -> bool:
    """Whether the stored rows of the `picked` books are the model's whole rows, i.e. the fold-in
    of this reader is exact: for the models whose W is their own (EXACT_MODELS) unless the run
    stored W `cut` to that many entries per row (`capped`); for the others (`item_item(topk)`
    keeps the `topk` largest entries of a row, all of a shorter one), when every picked row
    holds fewer than `topk` (and `cut`) entries: such a row was not pruned."""
    if model in EXACT_MODELS:
        if cut is None:
            return True
        limit = cut
    else:
        limit = TOPK if topk is None else topk
        limit = limit if cut is None else min(limit, cut)
    lengths = np.diff(w.indptr)[np.asarray(picked, dtype=np.int64)]
    return bool(lengths.size == 0 or lengths.max() < limit)


# item-based models whose stored W is the model's own (sparse by construction): exact fold-in.
# hybrid's W (RP3beta + same-author/publisher links) is pruned to TOPK per row: exact for a
# reader whose picked rows were not cut (rows_complete), approximate for the others.
EXACT_MODELS = frozenset({"itemknn", "rp3beta"})
