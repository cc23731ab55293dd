"""Training-free models: GF-CF (Shen et al. 2021) linear + ideal low-pass filters, and EASE^R."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

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
)
from engine.models.trainer import resolve_device, set_threads


@dataclass(frozen=True)
class GFCFSettings:
    """GF-CF: score = r R~^T R~ + alpha * r D^-1/2 V^T V D^1/2, V the top singular vectors of R~."""

    alpha: float = (
        0.3  # weight of the ideal low-pass term (the paper's value); 0 = linear filter only
    )
    svd_k: int = 256
    svd_method: str = "randomized"  # randomized (fast) or arpack (scipy svds, exact, slower)
    svd_iters: int = 8  # power iterations of the randomized SVD
    seed: int = 2020
    device: str = "auto"  # where scores are returned; the filter itself runs on the CPU (scipy)
    num_threads: int = 0


@dataclass(frozen=True)
class EASESettings:
    """EASE^R (Steck 2019): closed-form item-item weights B = I - P/diag(P), P = (X^T X + lambda I)^-1."""

    reg: float = 250.0
    max_items: int = (
        20000  # a dense items x items inverse: refuse sizes that would not fit in memory
    )
    device: str = "auto"
    num_threads: int = 0


def _degree_inv_sqrt(counts: np.ndarray) -> np.ndarray:
    out = np.zeros_like(counts, dtype=np.float64)
    nz = counts > 0
    out[nz] = counts[nz] ** -0.5
    return out


def top_right_singular(m: sp.csr_matrix, k: int, method: str, iters: int, seed: int) -> np.ndarray:
    """[k, n_cols] top right singular vectors of `m`."""
    k = min(k, min(m.shape) - 1)
    if method == "arpack":
        from scipy.sparse.linalg import svds

        _, _, vt = svds(m.astype(np.float64), k=k, random_state=seed)
        return vt.astype(np.float32)
    if method == "randomized":
        from sklearn.utils.extmath import randomized_svd

        _, _, vt = randomized_svd(m.astype(np.float32), k, n_iter=iters, random_state=seed)
        return vt.astype(np.float32)
    raise ConfigError(f"unknown svd_method {method!r}", hint="Use randomized or arpack")


def _gfcf_parts(r: sp.csr_matrix, vt: np.ndarray | None) -> dict[str, Any]:
    """Item-item filter P = R~^T R~ (sparse) and the low-pass factors from the singular vectors."""
    d_u = _degree_inv_sqrt(np.asarray(r.sum(axis=1)).ravel())
    d_i = _degree_inv_sqrt(np.asarray(r.sum(axis=0)).ravel())
    norm = (sp.diags(d_u) @ r @ sp.diags(d_i)).tocsr().astype(np.float32)
    parts: dict[str, Any] = {
        "train": r,
        "norm": norm,
        "gram": (norm.T @ norm).tocsr().astype(np.float32),
    }
    if vt is not None:
        sqrt_deg = np.zeros_like(d_i)
        sqrt_deg[d_i > 0] = 1.0 / d_i[d_i > 0]  # D^1/2; items never seen get 0, not inf
        parts["vt"] = vt
        # r_u D^-1/2 V^T for every user at once (sparse x dense), and V D^1/2: the ideal term is then
        # one [b, k] x [k, items] matmul per batch.
        parts["user_low"] = torch.from_numpy(
            np.ascontiguousarray((r @ sp.diags(d_i)) @ vt.T, dtype=np.float32)
        )
        parts["item_low"] = torch.from_numpy(np.ascontiguousarray(vt * sqrt_deg, dtype=np.float32))
    return parts


@register
class GFCF(Recommender):
    """GF-CF: normalized item-item linear filter plus the ideal low-pass filter; nothing to train."""

    name = "gfcf"
    settings_cls = GFCFSettings

    def __init__(self, settings: Any = None):
        super().__init__(settings)
        self.parts: dict[str, Any] = {}

    def fit(
        self, data: Dataset, settings: Any = None, *, callback: Callback | None = None
    ) -> FitResult:
        """Normalise R, form the sparse item-item filter, take the top singular vectors."""
        if settings is not None:
            self.settings = settings
        s = self.settings
        set_threads(s.num_threads)
        t0 = time.perf_counter()
        r = data.train.astype(np.float32)
        vt = None
        if s.alpha > 0:
            d_u = _degree_inv_sqrt(np.asarray(r.sum(axis=1)).ravel())
            d_i = _degree_inv_sqrt(np.asarray(r.sum(axis=0)).ravel())
            norm = (sp.diags(d_u) @ r @ sp.diags(d_i)).tocsr().astype(np.float32)
            vt = top_right_singular(norm, s.svd_k, s.svd_method, s.svd_iters, s.seed)
        self.parts = _gfcf_parts(r, vt)
        seconds = time.perf_counter() - t0
        if callback is not None:
            callback(0, {})
        return FitResult(
            history=[{"epoch": 0, "loss": 0.0, "seconds": seconds}],
            best_epoch=0,
            train_seconds=seconds,
        )

    def score(self, users: torch.Tensor) -> torch.Tensor:
        """r_u R~^T R~ (+ alpha * ideal low-pass) for a batch of users; runs on the CPU."""
        p = self.parts
        idx = users.cpu().numpy()
        # sparse rows x sparse item-item filter: ~|r_u| rows of P per user, far cheaper than dense
        scores = torch.from_numpy((p["train"][idx] @ p["gram"]).toarray())
        if self.settings.alpha > 0:
            scores += self.settings.alpha * (p["user_low"][torch.from_numpy(idx)] @ p["item_low"])
        return scores.to(users.device)

    def state(self) -> dict[str, Any]:
        """Settings, the training matrix as CSR arrays and the singular vectors (P is re-derived)."""
        r = self.parts["train"]
        return {
            "model": self.name,
            "settings": as_dict(self.settings),
            "shape": r.shape,
            "indptr": r.indptr,
            "indices": r.indices,
            "vt": self.parts.get("vt"),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> GFCF:
        """Rebuild from `state()`; re-derives the item-item filter from the training CSR (seconds)."""
        model = cls(settings_from_dict(cls.settings_cls, state["settings"]))
        r = sp.csr_matrix(
            (np.ones(len(state["indices"]), np.float32), state["indices"], state["indptr"]),
            shape=state["shape"],
        )
        model.parts = _gfcf_parts(r, state.get("vt"))
        return model


@register
class EASE(Recommender):
    """EASE^R: a dense item-item weight matrix in closed form (small catalogues only)."""

    name = "ease"
    settings_cls = EASESettings

    def __init__(self, settings: Any = None):
        super().__init__(settings)
        self.train: sp.csr_matrix | None = None
        self.weights: torch.Tensor | None = None

    def fit(
        self, data: Dataset, settings: Any = None, *, callback: Callback | None = None
    ) -> FitResult:
        """B = I - P / diag(P) with P = (X^T X + reg I)^-1, diag(B) = 0."""
        if settings is not None:
            self.settings = settings
        s = self.settings
        if data.n_items > s.max_items:
            raise ConfigError(
                f"EASE needs a dense {data.n_items} x {data.n_items} matrix",
                hint=f"Raise ease max_items (now {s.max_items}) if memory allows, or use gfcf",
            )
        set_threads(s.num_threads)
        t0 = time.perf_counter()
        device = resolve_device(s.device)
        gram = torch.from_numpy((data.train.T @ data.train).toarray().astype(np.float64)).to(device)
        gram += s.reg * torch.eye(data.n_items, dtype=gram.dtype, device=device)
        p = torch.linalg.inv(gram)
        b = -p / torch.diagonal(p)
        b.fill_diagonal_(0.0)
        self.train, self.weights = data.train, b.float()
        seconds = time.perf_counter() - t0
        if callback is not None:
            callback(0, {})
        return FitResult(
            history=[{"epoch": 0, "loss": 0.0, "seconds": seconds}],
            best_epoch=0,
            train_seconds=seconds,
        )

    def score(self, users: torch.Tensor) -> torch.Tensor:
        """r_u B for a batch of users."""
        x = torch.from_numpy(self.train[users.cpu().numpy()].toarray()).to(self.weights.device)
        return x @ self.weights

    def item_embeddings(self) -> np.ndarray | None:
        """No embeddings: EASE is an item-item model."""
        return None

    def state(self) -> dict[str, Any]:
        """Settings, weights and the training matrix as CSR arrays."""
        r = self.train
        return {
            "model": self.name,
            "settings": as_dict(self.settings),
            "shape": r.shape,
            "indptr": r.indptr,
            "indices": r.indices,
            "weights": self.weights.cpu(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> EASE:
        """Rebuild on the CPU from `state()`."""
        model = cls(settings_from_dict(cls.settings_cls, state["settings"]))
        model.train = sp.csr_matrix(
            (np.ones(len(state["indices"]), np.float32), state["indices"], state["indptr"]),
            shape=state["shape"],
        )
        model.weights = state["weights"]
        return model
