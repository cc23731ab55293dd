"""Training-free GF-CF (Shen et al. 2021): linear + ideal low-pass filters (EASE^R lives in ease.py)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch

from engine.config import as_dict
from engine.errors import ConfigError
from engine.models import memory
from engine.models.base import (
    Callback,
    Dataset,
    FitResult,
    Recommender,
    register,
    settings_from_dict,
)
from engine.models.checkpoint import pack_csr, unpack_csr
from engine.models.trainer import set_threads


@dataclass(frozen=True)
class GFCFSettings:
    """GF-CF: score = r R~^T R~ + alpha * r D^-1/2 V^T V D^1/2, V the top singular vectors of R~."""

    alpha: float = (
        0.3  # weight of the ideal low-pass term (the paper's value); 0 = linear filter only
    )
    svd_k: int = 256
    svd_method: str = "randomized"  # randomized (sklearn), torch (randomized, all cores) or arpack
    svd_iters: int = 8  # power iterations of the randomized SVD
    seed: int = 2020
    # Build the items x items filter densely (in column blocks) when it takes at most this many GB:
    # scoring is then a sum of rows per user, ~3x faster than the factored products (6.7 GB for
    # Gowalla's 41k items). 0 = always factored (R~ and the singular vectors only).
    dense_max_gb: float = 8.0
    device: str = "auto"  # where scores are returned; the filter itself runs on the CPU
    num_threads: int = 0


def graph_bytes(nnz: int) -> int:
    """R, R~ (scipy) and R~, R~^T as torch CSR with int64 indices."""
    return 2 * nnz * 8 + 2 * nnz * 12


def check_size(data: Dataset, s: GFCFSettings) -> None:
    """Refuse up front (nothing allocated yet) data whose item x item filter will not fit in memory."""
    users, n = data.n_users, data.n_items
    k = min(s.svd_k, max(1, min(users, n) - 1)) if s.alpha > 0 else 0
    dense = memory.dense_items_bytes(n) <= s.dense_max_gb * 1e9
    factored = graph_bytes(data.train.nnz)
    if k:  # the SVD's working set, then V^T, V D^1/2 [k, items] and r D^-1/2 V^T [users, k]
        factored += memory.svd_bytes(users, n, k) + (users + 2 * n) * k * memory.FLOAT
    if dense:  # the blocks of P, then one [rows, items] score block per batch of users
        need = factored + memory.dense_items_bytes(n) + memory.score_block_bytes(n)
        how = "kept dense (gfcf dense_max_gb)"
    else:  # per batch: R~ x^T [users, rows], R~^T R~ x^T [items, rows] and the [rows, items] scores
        need = factored + memory.score_block_bytes(users + 2 * n)
        how = f"applied factored: R~, its top-{k} SVD and {memory.SCORE_ROWS}-user score blocks"
    budget, where = memory.budget(torch.device("cpu"))
    hint = f"{memory.SPARSE_HINT}, or EASE over the most popular items ([ease] top_items = N)"
    if dense and factored + memory.score_block_bytes(users + 2 * n) <= budget:
        hint += ", or [gfcf] dense_max_gb = 0 (the factored filter fits)"
    what = f"its item x item filter, {memory.dense_items_text(n)}, {how}"
    memory.require("GF-CF", need, what, hint, budget, where)


def _degree_inv_sqrt(counts: np.ndarray) -> np.ndarray:
    out = np.zeros_like(counts, dtype=np.float64)
    nz = counts > 0
    out[nz] = counts[nz] ** -0.5
    return out


def top_singular(
    m: sp.csr_matrix, k: int, method: str, iters: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """([k] singular values, [k, n_cols] right singular vectors) of the top of `m`'s spectrum."""
    k = min(k, min(m.shape) - 1)
    if method == "arpack":
        from scipy.sparse.linalg import svds

        _, s, vt = svds(m.astype(np.float64), k=k, random_state=seed)
        return s, vt.astype(np.float32)
    if method == "randomized":
        from sklearn.utils.extmath import randomized_svd

        _, s, vt = randomized_svd(m.astype(np.float32), k, n_iter=iters, random_state=seed)
        return s.astype(np.float64), vt.astype(np.float32)
    if method == "torch":
        return _randomized_svd_torch(m, k, iters, seed)
    raise ConfigError(f"unknown svd_method {method!r}", hint="Use randomized, torch or arpack")


def _randomized_svd_torch(
    m: sp.csr_matrix, k: int, iters: int, seed: int, oversample: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """Halko et al.'s randomized SVD with normalised power iterations, on torch's threads.

    sklearn's `randomized_svd` algorithm, but its sparse products run on every core (scipy's on
    one), the power iterations are normalised by Cholesky-QR (half a Householder QR's time) and the
    small final SVD goes through the eigenvectors of B B^T (0.2 s instead of 1.5 s on Gowalla).
    """
    fwd, bwd = torch_csr(m), torch_csr(m.T.tocsr())
    gen = torch.Generator().manual_seed(seed)
    q = _orthonormal(torch.sparse.mm(fwd, torch.randn(m.shape[1], k + oversample, generator=gen)))
    for _ in range(iters):
        q = _orthonormal(torch.sparse.mm(bwd, q))
        q = _orthonormal(torch.sparse.mm(fwd, q))
    q = torch.linalg.qr(q).Q  # one exact orthonormalisation before projecting
    b = torch.sparse.mm(bwd, q).T.contiguous()  # Q^T M, [k + oversample, n_cols]
    evals, evecs = torch.linalg.eigh((b @ b.T).double())  # ascending
    top = torch.flip(torch.arange(len(evals)), (0,))[:k]
    s = evals[top].clamp(min=0).sqrt()
    vt = (evecs[:, top].T.float() @ b) / s.float().clamp(min=1e-12)[:, None]
    return s.numpy(), np.ascontiguousarray(vt.numpy())


def _orthonormal(a: torch.Tensor) -> torch.Tensor:
    """An orthonormal basis of a's columns: Cholesky-QR, Householder QR when a is rank deficient."""
    lower, info = torch.linalg.cholesky_ex((a.T @ a).double())
    if int(info) == 0:
        return torch.linalg.solve_triangular(lower.T.float(), a, upper=True, left=False)
    return torch.linalg.qr(a).Q


def top_right_singular(m: sp.csr_matrix, k: int, method: str, iters: int, seed: int) -> np.ndarray:
    """[k, n_cols] top right singular vectors of `m`."""
    return top_singular(m, k, method, iters, seed)[1]


@dataclass(frozen=True)
class NormalizedGraph:
    """R (binary CSR), R~ = Du^-1/2 R Di^-1/2 (scipy, and torch CSR both ways) and item degrees."""

    train: sp.csr_matrix
    norm: sp.csr_matrix
    item_degree: np.ndarray
    fwd: torch.Tensor  # R~ [users, items], torch sparse CSR float32
    bwd: torch.Tensor  # R~^T [items, users]

    def gram(self, x: torch.Tensor) -> torch.Tensor:
        """R~^T R~ x for dense x [items, batch]: two sparse x dense products, never the gram itself."""
        # R~ has 0.8 M entries on Gowalla, R~^T R~ tens of millions: the factored product is far
        # cheaper, and torch's CSR x dense runs on every thread (scipy's on one).
        return torch.sparse.mm(self.bwd, torch.sparse.mm(self.fwd, x))

    def gram_rows(self, rows: sp.csr_matrix) -> torch.Tensor:
        """R~^T R~ x for x given as sparse rows [batch, items] (x^T is the signal): dense [items, batch]."""
        # The first product keeps x sparse (a user rated ~30 items): scipy's sparse x sparse gives
        # R~ x^T [users, batch] in a fraction of a dense pass; the second is one CSR x dense.
        half = (self.norm @ sp.csr_matrix(rows, dtype=np.float32).T).toarray()
        return torch.sparse.mm(self.bwd, torch.from_numpy(np.ascontiguousarray(half, np.float32)))

    def laplacian(self, x: torch.Tensor) -> torch.Tensor:
        """L~ x = x - 2 R~^T R~ x (spectrum in [-1, 1]: eigenvalue 1 - 2 lambda)."""
        return self.gram(x).mul_(-2.0).add_(x)


def torch_csr(m: sp.csr_matrix) -> torch.Tensor:
    """A scipy CSR matrix as a torch sparse CSR float32 tensor (int64 indices)."""
    m = sp.csr_matrix(m, dtype=np.float32)
    return torch.sparse_csr_tensor(
        torch.from_numpy(m.indptr.astype(np.int64)),
        torch.from_numpy(m.indices.astype(np.int64)),
        torch.from_numpy(m.data),
        size=m.shape,
        check_invariants=False,  # built from a valid scipy CSR; the check costs a pass over it
    )


def normalized_graph(r: sp.csr_matrix) -> NormalizedGraph:
    """Normalise the binary user-item matrix symmetrically by degree; items never seen get 0."""
    r = sp.csr_matrix(r, dtype=np.float32)
    deg_i = np.asarray(r.sum(axis=0)).ravel().astype(np.float64)
    d_u = _degree_inv_sqrt(np.asarray(r.sum(axis=1)).ravel())
    d_i = _degree_inv_sqrt(deg_i)
    norm = (sp.diags(d_u) @ r @ sp.diags(d_i)).tocsr().astype(np.float32)
    norm.sort_indices()
    return NormalizedGraph(r, norm, deg_i, torch_csr(norm), torch_csr(norm.T.tocsr()))


def sparse_rows_dense_t(m: sp.csr_matrix, rows: np.ndarray) -> torch.Tensor:
    """m[rows] as a dense float32 tensor, transposed: [n_cols, len(rows)] (columns are the rows)."""
    sub = m[rows]
    out = torch.zeros(m.shape[1], len(rows), dtype=torch.float32)
    r = np.repeat(np.arange(len(rows), dtype=np.int64), np.diff(sub.indptr))
    out[torch.from_numpy(sub.indices.astype(np.int64)), torch.from_numpy(r)] = torch.from_numpy(
        sub.data.astype(np.float32)
    )
    return out


def _gfcf_parts(
    r: sp.csr_matrix, vt: np.ndarray | None, graph: NormalizedGraph | None = None
) -> dict[str, Any]:
    """The normalised graph (the linear filter R~^T R~ is applied factored) and the low-pass factors."""
    graph = graph if graph is not None else normalized_graph(r)
    parts: dict[str, Any] = {"train": graph.train, "graph": graph}
    if vt is not None:
        d_i = _degree_inv_sqrt(graph.item_degree)
        sqrt_deg = np.sqrt(graph.item_degree)  # D^1/2; items never seen get 0, not inf
        parts["vt"] = vt
        # r_u D^-1/2 V^T for every user at once (sparse x dense), and V D^1/2: the ideal term is then
        # one [b, k] x [k, items] matmul per batch.
        parts["user_low"] = torch.from_numpy(
            np.ascontiguousarray((graph.train @ sp.diags(d_i)) @ vt.T, dtype=np.float32)
        )
        parts["item_low"] = torch.from_numpy(np.ascontiguousarray(vt * sqrt_deg, dtype=np.float32))
    return parts


# Columns per block of the dense filter: a block of Gowalla's (41k x 128 x 4 B = 21 MB) stays in a
# 32 MB L3 cache while every user of a batch sums its rows (measured on Gowalla, 2 cores: 6.5-8.6 s
# for all users against ~30 s for one dense matrix, by embedding_bag or CSR x dense).
_BLOCK_BYTES = 20 * 2**20


def dense_blocks(parts: dict[str, Any], alpha: float) -> list[torch.Tensor]:
    """P = R~^T R~ + alpha D^-1/2 V^T V D^1/2 as contiguous [items, w] column blocks."""
    graph = parts["graph"]
    n = graph.norm.shape[1]
    width = int(min(n, max(16, _BLOCK_BYTES // (4 * n))))
    gram = (graph.norm.T @ graph.norm).tocsr().astype(np.float32)  # symmetric: rows = columns
    low = "vt" in parts and alpha > 0
    if low:  # D^-1/2 V^T, [items, k]
        left = torch.from_numpy(
            np.ascontiguousarray(parts["vt"].T * _degree_inv_sqrt(graph.item_degree)[:, None])
        ).float()
    blocks: list[torch.Tensor] = []
    span = width * max(1, 2048 // width)  # columns per GEMM: wide enough to run at full speed
    for c0 in range(0, n, span):
        c1 = min(n, c0 + span)
        if low:
            cols = torch.mm(left, parts["item_low"][:, c0:c1]).mul_(alpha)  # [items, c1 - c0]
        else:
            cols = torch.zeros(n, c1 - c0)
        part = gram[c0:c1].tocoo()  # entry (j - c0, i) of these rows is P[i, j]'s sparse part
        flat = part.col.astype(np.int64) * (c1 - c0) + part.row
        cols.view(-1).index_add_(0, torch.from_numpy(flat), torch.from_numpy(part.data))
        blocks += [cols[:, b : b + width].contiguous() for b in range(0, c1 - c0, width)]
    return blocks


def score_dense(blocks: list[torch.Tensor], rows: sp.csr_matrix) -> torch.Tensor:
    """rows @ P for binary rows, P in column blocks: per block, each user sums its items' rows."""
    indices = torch.from_numpy(rows.indices.astype(np.int64))
    offsets = torch.from_numpy(rows.indptr[:-1].astype(np.int64))
    out = torch.empty(rows.shape[0], rows.shape[1])
    start = 0
    for b in blocks:
        out[:, start : start + b.shape[1]] = torch.nn.functional.embedding_bag(
            indices, b, offsets, mode="sum"
        )
        start += b.shape[1]
    return out


@register
class GFCF(Recommender):
    """GF-CF: normalized item-item linear filter plus the ideal low-pass filter; nothing to train."""

    name = "gfcf"
    settings_cls = GFCFSettings
    search_space: ClassVar[dict[str, tuple]] = {
        "alpha": ("float", 0.0, 1.0),
        "svd_k": ("int_log", 16, 512),
    }

    def __init__(self, settings: Any = None):
        super().__init__(settings)
        self.parts: dict[str, Any] = {}

    def fit(
        self, data: Dataset, settings: Any = None, *, callback: Callback | None = None
    ) -> FitResult:
        """Normalise R and take the top singular vectors (the item-item filter stays factored)."""
        if settings is not None:
            self.settings = settings
        s = self.settings
        check_size(data, s)
        set_threads(s.num_threads)
        t0 = time.perf_counter()
        graph = normalized_graph(data.train)
        vt = None
        if s.alpha > 0:
            vt = top_right_singular(graph.norm, s.svd_k, s.svd_method, s.svd_iters, s.seed)
        self.parts = _gfcf_parts(graph.train, vt, graph)
        self._densify()
        seconds = time.perf_counter() - t0
        if callback is not None:
            callback(0, {})
        return FitResult(
            history=[{"epoch": 0, "loss": 0.0, "seconds": seconds}],
            best_epoch=0,
            train_seconds=seconds,
        )

    def _densify(self) -> None:
        """Build the dense filter blocks once, when the settings allow its size."""
        n = self.parts["train"].shape[1]
        if "blocks" not in self.parts and n * n * 4 <= self.settings.dense_max_gb * 1e9:
            self.parts["blocks"] = dense_blocks(self.parts, self.settings.alpha)

    def score(self, users: torch.Tensor) -> torch.Tensor:
        """r_u R~^T R~ (+ alpha * ideal low-pass) for a batch of users; runs on the CPU."""
        p = self.parts
        idx = users.cpu().numpy()
        self._densify()  # a model rebuilt by from_state builds its dense filter on first use
        if "blocks" in p:
            return score_dense(p["blocks"], p["train"][idx]).to(users.device)
        # Columns are users: R~^T (R~ X^T) (sparse x sparse, then CSR x dense on all threads), then
        # the ideal term added by one matmul that also lays the result out as [batch, items].
        linear = p["graph"].gram_rows(p["train"][idx])
        if self.settings.alpha > 0:
            low = p["user_low"][torch.from_numpy(idx)]
            scores = torch.addmm(linear.T, low, p["item_low"], alpha=self.settings.alpha)
        else:
            scores = linear.T.contiguous()
        return scores.to(users.device)

    def item_item(self, topk: int) -> sp.csr_matrix | None:
        """P's `topk` largest entries per row (P = R~^T R~ + alpha ideal low-pass: score = r P)."""
        from engine.foldin import DENSE_MAX_ITEMS, dense_item_item

        p = self.parts
        n = p["train"].shape[1]
        if n > DENSE_MAX_ITEMS:
            return None
        self._densify()
        eye = sp.identity(n, dtype=np.float32, format="csr")

        def rows_of(r0: int, r1: int) -> np.ndarray:
            if "blocks" in p:
                return score_dense(p["blocks"], eye[r0:r1]).numpy()
            linear = p["graph"].gram_rows(eye[r0:r1]).T
            if self.settings.alpha > 0 and "vt" in p:
                d_i = _degree_inv_sqrt(p["graph"].item_degree)
                low = torch.from_numpy(np.ascontiguousarray(p["vt"][:, r0:r1].T * d_i[r0:r1, None]))
                linear = torch.addmm(linear, low.float(), p["item_low"], alpha=self.settings.alpha)
            return linear.numpy()

        return dense_item_item(rows_of, n, topk)

    def state(self) -> dict[str, Any]:
        """Settings, the training matrix as CSR tensors and the singular vectors (P is re-derived)."""
        vt = self.parts.get("vt")
        return {
            "model": self.name,
            "settings": as_dict(self.settings),
            "train": pack_csr(self.parts["train"]),
            "vt": None if vt is None else torch.from_numpy(vt),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> GFCF:
        """Rebuild from `state()`; re-derives the item-item filter from the training CSR (seconds)."""
        model = cls(settings_from_dict(cls.settings_cls, state["settings"]))
        vt = state.get("vt")
        model.parts = _gfcf_parts(unpack_csr(state["train"]), None if vt is None else vt.numpy())
        return model
