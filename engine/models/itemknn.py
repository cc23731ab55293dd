"""Item-kNN: cosine / asymmetric cosine item-item similarity with shrinkage and top-k pruning, sparse."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp
import torch

from engine.config import as_dict
from engine.errors import ConfigError
from engine.models.base import (
    Callback,
    Dataset,
    FitResult,
    Recommender,
    register,
    settings_from_dict,
    usable_out,
)
from engine.models.checkpoint import pack_csr, unpack_csr
from engine.models.trainer import set_threads

# A search space (read by `bookrec tune`, engine.models.tune) maps a setting to
# ("int" | "int_log" | "float" | "log", low, high) or ("cat", (choice, ...)); "log" is a float
# drawn log-uniformly.
SearchSpace = dict[str, tuple]


@dataclass(frozen=True)
class ItemKNNSettings:
    """Item-kNN; the defaults were chosen on the validation part of real Book-Crossing (BENCHMARKS)."""

    # cosine: c_ij / (sqrt(n_i n_j) + shrink), c_ij = users with both items, n_i = users of i.
    # asymmetric (Aiolli 2013): c_ij / (n_i^(1-alpha) n_j^alpha + shrink), j the scored item;
    # alpha 0.5 is the cosine, a lower alpha divides less by the scored item's popularity
    similarity: Literal["cosine", "asymmetric"] = "asymmetric"
    alpha: float = 0.2
    shrink: float = 150.0  # added to the denominator: damps similarities built on few co-raters
    topk: int = 400  # neighbours kept per scored item (the k of kNN)
    block_mb: int = 256  # memory bound of one block of similarity rows (the result is the same)
    device: str = "auto"  # where scores are returned; the similarity itself is built with scipy
    num_threads: int = 0

    def __post_init__(self) -> None:
        if self.topk < 1 or self.shrink < 0 or not 0 <= self.alpha <= 1:
            raise ValueError("itemknn needs topk >= 1, shrink >= 0 and 0 <= alpha <= 1")


def row_blocks(work: np.ndarray, budget: int) -> list[tuple[int, int]]:
    """Consecutive row ranges whose summed `work` stays under `budget` (at least one row each)."""
    ends = np.cumsum(work, dtype=np.float64)
    out, start = [], 0
    while start < len(work):
        base = ends[start - 1] if start else 0.0
        stop = max(int(np.searchsorted(ends, base + budget, side="right")), start + 1)
        out.append((start, min(stop, len(work))))
        start = stop
    return out


def topk_rows(
    block: Callable[[int, int], sp.csr_matrix],
    weight: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray],
    n: int,
    k: int,
    work: np.ndarray,
    block_mb: int,
) -> sp.csr_matrix:
    """An n x n CSR keeping, per row, the k largest positive `weight(rows, cols, values)` off the diagonal.

    `block(r0, r1)` gives rows r0:r1 of the unweighted sparse product; rows are taken in blocks
    whose estimated entries (`work` per row) fit in `block_mb`, so memory is bounded whatever n is.
    Ties are broken by the lower column index (deterministic). The kept entries go straight into
    CSR parts (per-row counts, int32 columns, float32 values: 8 bytes an entry; xl's 288 M took
    20 as COO triplets with int64 rows and columns, and did not fit), sorted within each row.
    """
    budget = max(1, block_mb * 2**20 // 24)  # ~24 bytes per entry while weighting and sorting
    counts, cols_out, vals_out = [], [], []
    for r0, r1 in row_blocks(work, budget):
        b = block(r0, r1).tocsr()
        r = np.repeat(np.arange(r0, r1, dtype=np.int64), np.diff(b.indptr))
        c, v = b.indices.astype(np.int64), b.data.astype(np.float32)
        v = weight(r, c, v).astype(np.float32)
        keep = (v > 0) & (r != c)
        r, c, v = r[keep], c[keep], v[keep]
        keep = top_per_row(r - r0, c, v, r1 - r0, k)
        # rows stay in order: each block adds its rows' counts, columns and values (CSR parts)
        counts.append(np.bincount(r[keep] - r0, minlength=r1 - r0))
        cols_out.append(c[keep].astype(np.int32 if n < 2**31 else np.int64))
        vals_out.append(v[keep])
        del b, r, c, v, keep
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(_cat(counts, np.int64), out=indptr[1:])
    indices = _cat(cols_out, np.int32)
    cols_out.clear()
    data = _cat(vals_out, np.float32)
    vals_out.clear()
    if indptr[-1] < 2**31 and indices.dtype == np.int32:
        indptr = indptr.astype(np.int32)
    out = sp.csr_matrix((data, indices, indptr), shape=(n, n))
    out.sort_indices()
    return out


def top_per_row(
    r: np.ndarray, c: np.ndarray, v: np.ndarray, n: int, k: int | np.ndarray
) -> np.ndarray:
    """Indices of the k largest `v` of each row (rows `r` grouped, 0..n-1), ties by lower `c`;
    `k` one number or one per row.

    Rows with at most k entries keep them all; a longer row takes a partition (linear) and sorts
    only the entries tied at its k-th value, instead of sorting every entry of the block."""
    ends = np.cumsum(np.bincount(r, minlength=n))
    starts = ends - np.bincount(r, minlength=n)
    ks = np.broadcast_to(np.asarray(k, dtype=np.int64), (n,))
    out = np.ones(len(v), dtype=bool)
    for row in np.flatnonzero(ends - starts > ks):
        s, e, k = starts[row], ends[row], int(ks[row])
        seg = v[s:e]
        thr = np.partition(seg, len(seg) - k)[len(seg) - k]
        above = seg > thr
        tied = np.flatnonzero(seg == thr)
        need = k - int(above.sum())
        above[tied[np.argsort(c[s:e][tied], kind="stable")[:need]]] = True
        out[s:e] = above
    return np.flatnonzero(out)


def _cat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, dtype)


def cooccurrence_work(x: sp.csr_matrix) -> np.ndarray:
    """Upper bound on the entries of each row of X^T X: sum over the item's users of their degree."""
    deg_u = np.diff(x.indptr).astype(np.float64)
    return np.asarray(x.T @ deg_u).ravel()


class ItemItemModel(Recommender):
    """Shared scoring and state of sparse item-item models: score_u = x_u @ W."""

    name = "item-item"
    search_space: ClassVar[SearchSpace] = {}

    def __init__(self, settings: Any = None):
        super().__init__(settings)
        self.train: sp.csr_matrix | None = None
        self.weights: sp.csr_matrix | None = None

    def similarity(self, x: sp.csr_matrix) -> sp.csr_matrix:
        """The sparse item x item weights W (rows: items the user has, columns: scored items)."""
        raise NotImplementedError

    def fit(
        self, data: Dataset, settings: Any = None, *, callback: Callback | None = None
    ) -> FitResult:
        """Build W from the training interactions only."""
        if settings is not None:
            self.settings = settings
        set_threads(self.settings.num_threads)
        t0 = time.perf_counter()
        self.train = data.train.astype(np.float32)
        self.weights = self.similarity(self.train)
        seconds = time.perf_counter() - t0
        if callback is not None:
            callback(0, {})
        return FitResult(
            history=[{"epoch": 0, "loss": 0.0, "seconds": seconds}],
            best_epoch=0,
            train_seconds=seconds,
        )

    def score(self, users: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """x_u @ W for a batch of users (sparse rows x sparse W; each user touches its items' rows),
        densified into `out` when that is a usable CPU buffer."""
        product = self.train[users.cpu().numpy()] @ self.weights
        if product.dtype == np.float32 and usable_out(
            out, len(users), product.shape[1], torch.device("cpu")
        ):
            product.toarray(out=out.numpy())
            return out
        dense = product.toarray()
        return torch.from_numpy(dense.astype(np.float32, copy=False)).to(users.device)

    def sparse_scores(self, users: np.ndarray) -> sp.csr_matrix | None:
        """x_u @ W as sparse rows: a reader's scores are zero off its items' neighbours."""
        return (self.train[np.asarray(users)] @ self.weights).tocsr()

    def item_item(self, topk: int) -> sp.csr_matrix | None:
        """W itself: sparse by construction (the model's own top-k), so fold-in is exact."""
        return None if self.weights is None else self.weights.tocsr()

    def state(self) -> dict[str, Any]:
        """Settings, the training matrix and W as CSR tensors (loads with weights_only=True)."""
        return {
            "model": self.name,
            "settings": as_dict(self.settings),
            "train": pack_csr(self.train),
            "weights": pack_csr(self.weights),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ItemItemModel:
        """Rebuild from `state()` (no recomputation)."""
        model = cls(settings_from_dict(cls.settings_cls, state["settings"]))
        model.train = unpack_csr(state["train"])
        model.weights = unpack_csr(state["weights"])
        return model


@register
class ItemKNN(ItemItemModel):
    """Item-kNN: W[i, j] = c_ij / (n_i^(1-alpha) n_j^alpha + shrink), top-k i kept per scored item j."""

    name = "itemknn"
    settings_cls = ItemKNNSettings
    search_space: ClassVar[SearchSpace] = {
        "similarity": ("cat", ("cosine", "asymmetric")),
        "alpha": ("float", 0.0, 1.0),
        "shrink": ("float", 0.0, 1000.0),
        "topk": ("int_log", 10, 2000),
    }

    def similarity(self, x: sp.csr_matrix) -> sp.csr_matrix:
        """Row j of the transposed W is item j's co-occurrences, weighted; top-k per row, then W."""
        s = self.settings
        if s.similarity not in ("cosine", "asymmetric"):
            raise ConfigError(
                f"unknown itemknn similarity {s.similarity!r}", hint="Use cosine or asymmetric"
            )
        alpha = 0.5 if s.similarity == "cosine" else s.alpha
        n_i = np.asarray(x.sum(axis=0), dtype=np.float64).ravel()
        xt = x.T.tocsr()

        def weight(j: np.ndarray, i: np.ndarray, c: np.ndarray) -> np.ndarray:
            return c / (n_i[i] ** (1.0 - alpha) * n_i[j] ** alpha + s.shrink + 1e-9)

        w_t = topk_rows(
            lambda r0, r1: xt[r0:r1] @ x,
            weight,
            x.shape[1],
            s.topk,
            cooccurrence_work(x),
            s.block_mb,
        )
        return w_t.T.tocsr()
