"""RP3beta (Paudel et al. 2017): a 3-step random walk item -> user -> item, popularity-discounted, sparse."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import scipy.sparse as sp

from engine.models.base import register
from engine.models.itemknn import ItemItemModel, SearchSpace, cooccurrence_work, topk_rows


@dataclass(frozen=True)
class RP3betaSettings:
    """RP3beta; the defaults were chosen on the validation part of real Book-Crossing (BENCHMARKS)."""

    alpha: float = 0.3  # exponent on both transition probabilities (1 = the plain random walk P3)
    beta: float = 0.06  # popularity discount n_j^-beta of the item walked to (0 = none)
    topk: int = 40  # items kept per source item (per row of W)
    block_mb: int = 256  # memory bound of one block of W's rows (the result is the same)
    device: str = "auto"  # where scores are returned; W itself is built with scipy
    num_threads: int = 0

    def __post_init__(self) -> None:
        if self.topk < 1 or self.alpha < 0 or self.beta < 0:
            raise ValueError("rp3beta needs topk >= 1, alpha >= 0 and beta >= 0")


@register
class RP3beta(ItemItemModel):
    """W[i, j] = n_i^-alpha * sum_u (x_ui x_uj deg_u^-alpha) * n_j^-beta, top-k j per row, diagonal 0."""

    name = "rp3beta"
    settings_cls = RP3betaSettings
    search_space: ClassVar[SearchSpace] = {
        "alpha": ("float", 0.0, 2.0),
        "beta": ("float", 0.0, 1.0),
        "topk": ("int_log", 10, 2000),
    }

    def similarity(self, x: sp.csr_matrix) -> sp.csr_matrix:
        """P_iu^alpha @ P_ui^alpha (row-stochastic walk steps raised elementwise), then the discount."""
        s = self.settings
        deg_u = np.diff(x.indptr).astype(np.float64)
        n_i = np.asarray(x.sum(axis=0), dtype=np.float64).ravel()
        inv_u = np.zeros_like(deg_u)
        inv_u[deg_u > 0] = deg_u[deg_u > 0] ** -s.alpha
        x_walk = (sp.diags(inv_u.astype(np.float32)) @ x).tocsr()  # P_ui^alpha: 1/deg_u per step
        xt = x.T.tocsr()
        with np.errstate(divide="ignore"):  # n_i = 0 rows and columns never get an entry
            src = n_i**-s.alpha
            dst = n_i**-s.beta

        def weight(i: np.ndarray, j: np.ndarray, v: np.ndarray) -> np.ndarray:
            return v * src[i] * dst[j]

        return topk_rows(
            lambda r0, r1: xt[r0:r1] @ x_walk,
            weight,
            x.shape[1],
            s.topk,
            cooccurrence_work(x),
            s.block_mb,
        )
