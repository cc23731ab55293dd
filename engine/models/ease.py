"""EASE^R (Steck 2019): closed-form item-item weights from one dense float32 inverse of the Gram."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch
from threadpoolctl import threadpool_limits

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
from engine.models.itemknn import SearchSpace
from engine.models.trainer import resolve_device, set_threads

_ROWS = 1024  # rows per block when symmetrising / scaling the dense matrix in place


@dataclass(frozen=True)
class EASESettings:
    """EASE^R: B = I - P / diag(P), P = (X^T X + reg I)^-1; reg chosen on Book-Crossing's validation part."""

    reg: float = 500.0
    # 0 = every item. N > 0: EASE over the N items with the most training interactions only; the
    # others are never recommended. The way to run EASE on a catalogue too big for a dense n x n.
    top_items: int = 0
    # `bookrec tune` trials run EASE over this many most-read items (0 = all): the dense inverse
    # costs n^3, and on real Book-Crossing the best reg over 4,000 or 8,000 items is the best over
    # all 18,184 (BENCHMARKS); `train --tuned` then fits every item (or `top_items`) with that reg
    tune_items: int = 6000
    max_items: int = 0  # refuse catalogues above this many items (0 = only the memory check)
    memory_gb: float = 0.0  # memory EASE may use (0 = what the machine has available at fit time)
    device: str = "auto"  # cuda: the inverse and the scoring run on the GPU (torch)
    num_threads: int = 0  # BLAS / torch threads (0 = one per core)

    def __post_init__(self) -> None:
        if self.reg <= 0 or min(self.top_items, self.max_items, self.tune_items) < 0:
            raise ValueError("ease needs reg > 0 and top_items, max_items, tune_items >= 0")


def check_size(n: int, settings: EASESettings, device: torch.device) -> None:
    """Refuse up front, with the size it would need, a catalogue whose dense n x n will not fit."""
    # cuda: gram, Cholesky factor and inverse; cpu: the in-place LAPACK matrix + as much headroom
    copies = 3 if device.type == "cuda" else 2
    budget, where = memory.budget(device, settings.memory_gb, "ease memory_gb")
    hint = (
        f"{memory.SPARSE_HINT}, or keep the most popular items with [ease] top_items = N "
        f"(N <= {memory.dense_fit(n, copies, budget):,} fits)"
    )
    if settings.max_items and n > settings.max_items:
        raise ConfigError(
            f"EASE would need {memory.dense_items_text(n)}, above ease max_items "
            f"({settings.max_items:,})",
            hint=hint,
        )
    what = f"{memory.dense_items_text(n)}, {copies} of them while solving"
    memory.require("EASE", copies * memory.dense_items_bytes(n), what, hint, budget, where)


def ease_weights_cpu(gram: np.ndarray, reg: float) -> np.ndarray:
    """B from the dense Gram, in place (Cholesky factor + inverse by LAPACK, then scaled by rows)."""
    from scipy.linalg import lapack

    n = gram.shape[0]
    gram.flat[:: n + 1] += reg
    # gram is C-ordered and symmetric: its transpose is the same matrix in Fortran order, which
    # LAPACK overwrites without a copy. lower=1 on the transpose = the upper triangle of `gram`.
    factor, info = lapack.spotrf(gram.T, lower=1, clean=0, overwrite_a=1)
    if info == 0:
        factor, info = lapack.spotri(factor, lower=1, overwrite_c=1)
    if info != 0:
        raise ConfigError(f"EASE: X^T X + {reg} I is not positive definite", hint="Raise ease reg")
    p = factor.T if np.shares_memory(factor, gram) else np.ascontiguousarray(factor.T)
    for r0 in range(0, n, _ROWS):  # mirror the upper triangle into the lower, block by block
        r1 = min(r0 + _ROWS, n)
        p[r1:, r0:r1] = p[r0:r1, r1:].T
        blk = p[r0:r1, r0:r1]
        blk[...] = np.triu(blk) + np.triu(blk, 1).T
    scale = (-1.0 / np.diag(p)).astype(np.float32)
    for r0 in range(0, n, _ROWS):  # B_ij = -P_ij / P_jj
        p[r0 : r0 + _ROWS] *= scale
    p.flat[:: n + 1] = 0.0
    return p


def ease_weights_torch(gram: np.ndarray, reg: float, device: torch.device) -> torch.Tensor:
    """B from the dense Gram with torch (Cholesky + cholesky_inverse), on `device`."""
    g = torch.from_numpy(gram).to(device)
    g.diagonal().add_(reg)
    factor, info = torch.linalg.cholesky_ex(g)
    del g
    if int(info) != 0:
        raise ConfigError(f"EASE: X^T X + {reg} I is not positive definite", hint="Raise ease reg")
    p = torch.cholesky_inverse(factor)
    del factor
    p.div_(-torch.diagonal(p))
    p.fill_diagonal_(0.0)
    return p


@register
class EASE(Recommender):
    """EASE^R: a dense item-item weight matrix in closed form; scored as sparse rows x dense B."""

    name = "ease"
    settings_cls = EASESettings
    search_space: ClassVar[SearchSpace] = {"reg": ("log", 10.0, 10000.0)}

    def __init__(self, settings: Any = None):
        super().__init__(settings)
        self.train: sp.csr_matrix | None = None
        self.weights: torch.Tensor | None = None
        self.keep: np.ndarray | None = None  # item indices EASE covers (None: all)

    def tune_settings(self) -> dict[str, Any]:
        """Trials over the `tune_items` most-read items, unless `top_items` is already smaller."""
        n, top = self.settings.tune_items, self.settings.top_items
        return {"top_items": n} if n and (top == 0 or top > n) else {}

    def fit(
        self, data: Dataset, settings: Any = None, *, callback: Callback | None = None
    ) -> FitResult:
        """B = I - P / diag(P) with P = (X^T X + reg I)^-1, diag(B) = 0 (float32 throughout)."""
        if settings is not None:
            self.settings = settings
        s = self.settings
        device = resolve_device(s.device)
        x = data.train.astype(np.float32)
        keep = None
        if 0 < s.top_items < data.n_items:
            counts = np.asarray(x.sum(axis=0)).ravel()
            keep = np.sort(np.argsort(-counts, kind="stable")[: s.top_items])
        n = data.n_items if keep is None else len(keep)
        check_size(n, s, device)
        set_threads(s.num_threads)
        t0 = time.perf_counter()
        xs = x if keep is None else x[:, keep]
        gram = (xs.T @ xs).toarray()  # float32: exact counts up to 2^24 co-raters
        if device.type == "cpu":
            with threadpool_limits(torch.get_num_threads(), user_api="blas"):
                self.weights = torch.from_numpy(ease_weights_cpu(gram, s.reg))
        else:
            self.weights = ease_weights_torch(gram, s.reg, device)
        del gram
        self.train, self.keep = x, keep
        seconds = time.perf_counter() - t0
        if callback is not None:
            callback(0, {})
        return FitResult(
            history=[{"epoch": 0, "loss": 0.0, "seconds": seconds}],
            best_epoch=0,
            train_seconds=seconds,
        )

    def score(self, users: torch.Tensor) -> torch.Tensor:
        """x_u B for a batch of users; items outside `top_items` get -inf."""
        rows = self.train[users.cpu().numpy()]
        if self.keep is not None:
            rows = rows[:, self.keep]
        w = self.weights
        if w.device.type == "cpu":
            part = torch.from_numpy(np.asarray(rows @ w.numpy(), dtype=np.float32))
        else:
            coo = rows.tocoo()
            idx = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
            sparse = torch.sparse_coo_tensor(idx, torch.from_numpy(coo.data), coo.shape)
            part = torch.sparse.mm(sparse.to(w.device), w)
        if self.keep is None:
            return part.to(users.device)
        out = torch.full((len(users), self.train.shape[1]), -torch.inf, device=part.device)
        out[:, torch.from_numpy(self.keep).to(part.device)] = part
        return out.to(users.device)

    def item_item(self, topk: int) -> sp.csr_matrix | None:
        """B's `topk` largest weights per row, over all items (items outside top_items: none)."""
        from engine.foldin import DENSE_MAX_ITEMS, dense_item_item

        if self.weights is None or self.weights.shape[0] > DENSE_MAX_ITEMS:
            return None
        b = self.weights.cpu().numpy()
        w = dense_item_item(lambda r0, r1: b[r0:r1], b.shape[0], topk)
        if self.keep is None:
            return w
        n = self.train.shape[1]
        lift = sp.csr_matrix(
            (np.ones(len(self.keep), np.float32), (self.keep, np.arange(len(self.keep)))),
            shape=(n, len(self.keep)),
        )
        return (lift @ w @ lift.T).tocsr()

    def state(self) -> dict[str, Any]:
        """Settings, the dense weights, the covered items and the training CSR, all tensors."""
        return {
            "model": self.name,
            "settings": as_dict(self.settings),
            "train": pack_csr(self.train),
            "weights": self.weights.cpu(),
            "keep": None if self.keep is None else torch.from_numpy(self.keep),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> EASE:
        """Rebuild on the CPU from `state()`."""
        model = cls(settings_from_dict(cls.settings_cls, state["settings"]))
        model.train = unpack_csr(state["train"])
        model.weights = state["weights"]
        keep = state.get("keep")
        model.keep = None if keep is None else keep.numpy()
        return model
