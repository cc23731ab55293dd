"""ChebyCF (Kim et al., SIGIR 2025): a Chebyshev-interpolated graph filter on the item-item graph.

score(u) = (h(L~) x + alpha * x V^T V) D^beta with x = r_u D^-beta, L~ = I - 2 R~^T R~ (spectrum in
[-1, 1]), h the degree-K Chebyshev interpolant of a "plateau" transfer function and V the top
singular vectors of R~ = Du^-1/2 R Di^-1/2. Nothing is trained: fit normalises R and takes an SVD.
"""

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
from engine.models.gfcf import (
    NormalizedGraph,
    graph_bytes,
    normalized_graph,
    sparse_rows_dense_t,
    top_singular,
)
from engine.models.trainer import set_threads


@dataclass(frozen=True)
class ChebyCFSettings:
    """ChebyCF; the defaults are the authors' Gowalla settings (K 8, phi 1.5, eta 512, alpha 0.2, beta 0.4)."""

    order: int = 8  # K: degree of the Chebyshev interpolant of the transfer function
    flatness: float = 1.5  # phi: how flat the plateau transfer function is around both ends
    ideal_k: int = 512  # eta: singular vectors of the ideal pass filter (0 = no ideal term)
    ideal_weight: float = 0.2  # alpha: weight of the ideal pass filter
    degree_power: float = 0.4  # beta: pre-normalise by item degree^-beta, post by degree^beta
    # Evaluation, not the model: h is applied exactly on the span of the singular vectors and, below
    # them, as the lowest-degree polynomial within `tolerance` of h (fewer passes over the graph:
    # 3 instead of 7 on Gowalla); 0 = the degree-K Chebyshev recurrence everywhere, the authors' way.
    tolerance: float = 2e-4
    svd_method: str = "torch"  # torch (randomized, all cores), randomized (sklearn) or arpack
    svd_iters: int = 8  # power iterations of the randomized SVD
    seed: int = 2020
    batch_size: int = 2048  # users filtered together in score(); memory ~5 x items x batch x 4 B
    device: str = "auto"  # where scores are returned; the filter runs on the CPU
    num_threads: int = 0


@dataclass(frozen=True)
class SplitPlan:
    """How score() applies h: per singular vector, and a polynomial in R~^T R~ for the rest."""

    residual: np.ndarray | None  # q's coefficients in lambda, lowest first; None: the recurrence
    weights: np.ndarray  # [k] extra weight per singular vector: alpha + h(lambda_i) - q(lambda_i)
    cut: float  # q is within max_error of h on [0, cut], which holds the rest of the spectrum
    max_error: float


def plateau(order: int, flatness: float) -> np.ndarray:
    """Target transfer values at the K+1 points cos((K-j)/K pi): 1 at x=-1 (low frequency), 0 at x=1."""
    # Rounded to 3 decimals, as the authors' code does: the published figures come from these values.
    x = np.round(np.cos((order - np.arange(order + 1)) / order * np.pi), 3)
    y = np.where(x < 0, 0.5 + 0.5 * np.abs(x) ** flatness, 0.5 - 0.5 * np.abs(x) ** flatness)
    return np.round(y, 3)


def cheby_coefficients(order: int, flatness: float) -> np.ndarray:
    """[K+1] coefficients c_k of h(x) = sum_k c_k T_k(x), interpolating `plateau` at Chebyshev nodes."""
    if order < 1:
        raise ConfigError(f"chebycf order must be >= 1, got {order}", hint="The authors use 8")
    j = np.arange(1, order + 2)
    nodes = np.cos((order + 1.5 - j) / (order + 1) * np.pi)  # first-kind nodes, ascending
    vander = np.polynomial.chebyshev.chebvander(nodes, order)  # [nodes, k]: T_k(node)
    coeffs = vander.T @ plateau(order, flatness) * (2.0 / (order + 1))
    coeffs[0] /= 2
    return coeffs


def transfer(coeffs: np.ndarray, eigenvalues: np.ndarray) -> np.ndarray:
    """h at the eigenvalues lambda of R~^T R~ (L~ = I - 2 R~^T R~ has eigenvalue 1 - 2 lambda)."""
    return np.polynomial.chebyshev.chebval(1.0 - 2.0 * np.asarray(eigenvalues), coeffs)


def chebyshev_filter(g: NormalizedGraph, coeffs: np.ndarray, x: torch.Tensor) -> torch.Tensor:
    """sum_k c_k T_k(L~) x for x [items, batch] (columns are users), by the three-term recurrence."""
    # h's target is odd around (0, 0.5), so c_k = 0 for even k >= 2 and c_K = 0 for even K: skip the
    # trailing zeros (one fewer pass over the graph for the default K = 8) and the zero terms.
    scale = float(np.abs(coeffs).max())
    nz = np.flatnonzero(np.abs(coeffs) > 1e-9 * scale)
    degree = int(nz[-1]) if len(nz) else 0
    out = x * float(coeffs[0])
    if degree == 0:
        return out
    prev, cur = x, g.laplacian(x)
    out.add_(cur, alpha=float(coeffs[1]))
    for k in range(2, degree + 1):
        nxt = g.gram(cur).mul_(-4.0).add_(cur, alpha=2.0).sub_(prev)  # 2 L~ T_{k-1} - T_{k-2}
        prev, cur = cur, nxt
        if abs(coeffs[k]) > 1e-9 * scale:
            out.add_(cur, alpha=float(coeffs[k]))
    return out


def split_plan(
    coeffs: np.ndarray, singular: np.ndarray | None, alpha: float, tolerance: float
) -> SplitPlan:
    """The lowest-degree q within `tolerance` of h below the computed spectrum (else the recurrence)."""
    if singular is None or len(singular) == 0:
        return SplitPlan(None, np.zeros(0), 0.0, 0.0)
    lam = np.asarray(singular, dtype=np.float64) ** 2
    exact = SplitPlan(None, np.full(len(lam), alpha), 0.0, 0.0)
    if tolerance <= 0:
        return exact
    # Every eigenvalue outside the span is <= the smallest one found (up to the SVD's accuracy:
    # 10 % margin). An inexact tail vector costs little: h - q is ~0 near the cut by construction.
    cut = min(1.0, 1.1 * float(lam.min()))
    grid = np.linspace(0.0, cut, 2001)
    target = transfer(coeffs, grid)
    for degree in range(len(coeffs) - 1):
        nodes = cut * (1 + np.cos((2 * np.arange(degree + 1) + 1) / (2 * degree + 2) * np.pi)) / 2
        fit = np.polynomial.Polynomial.fit(nodes, transfer(coeffs, nodes), degree).convert()
        q = np.pad(fit.coef, (0, degree + 1 - len(fit.coef)))
        err = float(np.abs(target - np.polynomial.polynomial.polyval(grid, q)).max())
        if err <= tolerance:
            weights = alpha + transfer(coeffs, lam) - np.polynomial.polynomial.polyval(lam, q)
            return SplitPlan(q, weights, cut, err)
    return exact


def check_size(data: Dataset, s: ChebyCFSettings) -> None:
    """Refuse up front (nothing allocated yet) data whose filter and score batches will not fit."""
    users, n = data.n_users, data.n_items
    k = min(s.ideal_k, max(1, min(users, n) - 1)) if s.ideal_k > 0 else 0
    rows = max(1, min(s.batch_size, memory.SCORE_ROWS))
    # R~ (+ r D^-beta), the SVD's working set and V^T; per batch ~5 dense [items, rows] filter
    # vectors and R~ x^T [users, rows], plus the [SCORE_ROWS, items] block handed to the evaluator.
    fixed = graph_bytes(data.train.nnz) + data.train.nnz * 8 + memory.score_block_bytes(n)
    if k:
        fixed += memory.svd_bytes(users, n, k) + n * k * memory.FLOAT
    per_row = (5 * n + users) * memory.FLOAT
    need = fixed + rows * per_row
    budget, where = memory.budget(torch.device("cpu"))
    hint = f"{memory.SPARSE_HINT}, or EASE over the most popular items ([ease] top_items = N)"
    if fixed < budget:
        hint += f", or [chebycf] batch_size = {max(1, (budget - fixed) // per_row):,} (fits)"
    what = (
        f"its item x item filter, {memory.dense_items_text(n)}, applied factored: R~, its "
        f"top-{k} SVD and {rows:,}-user blocks of dense filter vectors"
    )
    memory.require("ChebyCF", need, what, hint, budget, where)


def horner(g: NormalizedGraph, q: np.ndarray, x: torch.Tensor, rows: sp.csr_matrix) -> torch.Tensor:
    """sum_m q_m (R~^T R~)^m x for x [items, batch] (`rows` = x^T, sparse): len(q) - 1 graph passes."""
    if len(q) == 1:
        return x * float(q[0])
    out = g.gram_rows(rows).mul_(float(q[-1])).add_(x, alpha=float(q[-2]))  # the sparse first pass
    for coef in q[-3::-1]:
        out = g.gram(out).add_(x, alpha=float(coef))
    return out


@register
class ChebyCF(Recommender):
    """ChebyCF: Chebyshev graph filter + ideal pass filter + degree normalisation; nothing to train."""

    name = "chebycf"
    settings_cls = ChebyCFSettings
    # `bookrec tune` explores these on a validation part (around the authors' grids)
    search_space: ClassVar[dict[str, tuple]] = {
        "order": ("int", 2, 12),
        "flatness": ("float", 0.5, 3.0),
        "ideal_k": ("int_log", 16, 1024),
        "ideal_weight": ("float", 0.0, 1.0),
        "degree_power": ("float", 0.0, 0.7),
    }

    def __init__(self, settings: Any = None):
        super().__init__(settings)
        self.graph: NormalizedGraph | None = None
        self.singular: np.ndarray | None = None
        self.vt: np.ndarray | None = None

    def fit(
        self, data: Dataset, settings: Any = None, *, callback: Callback | None = None
    ) -> FitResult:
        """Normalise R and take the top singular vectors of R~ (ideal pass filter and split)."""
        if settings is not None:
            self.settings = settings
        s = self.settings
        check_size(data, s)
        set_threads(s.num_threads)
        t0 = time.perf_counter()
        graph = normalized_graph(data.train)
        sing = vt = None
        if s.ideal_k > 0:
            sing, vt = top_singular(graph.norm, s.ideal_k, s.svd_method, s.svd_iters, s.seed)
        self._set(graph, sing, vt)
        seconds = time.perf_counter() - t0
        if callback is not None:
            callback(0, {})
        return FitResult(
            history=[{"epoch": 0, "loss": 0.0, "seconds": seconds, **self.plan_summary()}],
            best_epoch=0,
            train_seconds=seconds,
        )

    def _set(self, graph: NormalizedGraph, sing: np.ndarray | None, vt: np.ndarray | None) -> None:
        s = self.settings
        self.graph, self.singular, self.vt = graph, sing, vt
        deg = graph.item_degree
        safe = np.where(deg > 0, deg, 1.0)
        # items never seen get 0 both ways (the authors' choice): they score 0, never NaN or inf
        self._pre = np.where(deg > 0, safe**-s.degree_power, 0.0)
        self._post = torch.from_numpy(
            np.where(deg > 0, safe**s.degree_power, 0.0).astype(np.float32)
        )
        self._coeffs = cheby_coefficients(s.order, s.flatness)
        alpha = s.ideal_weight if vt is not None else 0.0
        self.plan = split_plan(self._coeffs, sing, alpha, s.tolerance)
        self._vt = None if vt is None else torch.from_numpy(np.ascontiguousarray(vt))
        self._w = torch.from_numpy(self.plan.weights.astype(np.float32))
        self._pre_train = (graph.train @ sp.diags(self._pre)).tocsr().astype(np.float32)

    def plan_summary(self) -> dict[str, Any]:
        """How the filter is evaluated: passes over the graph per batch, and the bound on its error."""
        p = self.plan
        if p.residual is None:
            nz = np.flatnonzero(np.abs(self._coeffs) > 1e-9 * np.abs(self._coeffs).max())
            return {"graph_passes": int(nz[-1]) if len(nz) else 0, "filter_error": 0.0}
        return {"graph_passes": len(p.residual) - 1, "filter_error": p.max_error, "cut": p.cut}

    def score(self, users: torch.Tensor) -> torch.Tensor:
        """Filtered scores [len(users), n_items] for a batch of users (CPU, float32)."""
        idx = users.cpu().numpy()
        step = max(1, self.settings.batch_size)
        parts = [self._score_cpu(idx[i : i + step]) for i in range(0, len(idx), step)]
        out = parts[0] if len(parts) == 1 else torch.cat(parts)
        return out.to(users.device)

    def _score_cpu(self, idx: np.ndarray) -> torch.Tensor:
        return self._score_rows(self._pre_train[idx])  # r_u D^-beta, sparse [batch, items]

    def item_item(self, topk: int) -> sp.csr_matrix | None:
        """The filter's `topk` largest entries per row: the scores of one-book readers (the
        filter is linear in the reader's row)."""
        from engine.foldin import DENSE_MAX_ITEMS, dense_item_item

        n = self._pre_train.shape[1]
        if n > DENSE_MAX_ITEMS:
            return None
        pre = sp.diags(self._pre.astype(np.float32)).tocsr()
        return dense_item_item(lambda r0, r1: self._score_rows(pre[r0:r1]).numpy(), n, topk)

    def _score_rows(self, rows: sp.csr_matrix) -> torch.Tensor:
        """Filtered scores of readers given by their rows r D^-beta (sparse [batch, items])."""
        rows = sp.csr_matrix(rows, dtype=np.float32)
        x = sparse_rows_dense_t(rows, np.arange(rows.shape[0]))  # dense [items, batch]
        if self.plan.residual is None:
            out = chebyshev_filter(self.graph, self._coeffs, x)
        else:
            out = horner(self.graph, self.plan.residual, x, rows)
        if self._vt is not None:
            # x V^T from the sparse rows (cheap), then one [items, k] x [k, batch] product adds the
            # ideal pass filter and the exact h on the singular vectors' span together.
            low = torch.from_numpy(np.asarray(rows @ self.vt.T, dtype=np.float32))
            out.addmm_(self._vt.T, (low * self._w).T)
        out.mul_(self._post[:, None])
        return out.T.contiguous()

    def state(self) -> dict[str, Any]:
        """Settings, the training matrix as CSR tensors and the singular values/vectors."""
        return {
            "model": self.name,
            "settings": as_dict(self.settings),
            "train": pack_csr(self.graph.train),
            "singular": None if self.singular is None else torch.from_numpy(self.singular),
            "vt": None if self.vt is None else torch.from_numpy(self.vt),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ChebyCF:
        """Rebuild from `state()` (normalising R again takes well under a second on Gowalla)."""
        model = cls(settings_from_dict(cls.settings_cls, state["settings"]))
        sing, vt = state.get("singular"), state.get("vt")
        model._set(
            normalized_graph(unpack_csr(state["train"])),
            None if sing is None else sing.numpy(),
            None if vt is None else vt.numpy(),
        )
        return model
