"""Hybrid: RP3beta's collaborative walk plus "same author" and "same publisher" item links.

On Book-Crossing a reader's next book is often by an author (or from an imprint) already on
their shelf, a signal the rating graph alone sees only for books with many readers. The hybrid
adds that to RP3beta as one more sparse item x item term, so it stays a linear item-item model
(score_u = x_u @ W, fold-in of a new reader is exact):

    W = W_rp3 / mean_row_sum(W_rp3)
        + author    * D_a^-gamma (G_a G_a^T) / mean_row_sum(.)
        + publisher * D_p^-gamma (G_p G_p^T) / mean_row_sum(.)

G is the item x group incidence (engine.models.data.item_groups, keys normalised in SQL), D the
number of other books in an item's group: gamma = 1 spreads an item's vote over its group,
gamma = 0 gives every same-author book a full vote. Each term is scaled to a mean row sum of 1,
so the weights are comparable across catalogues. The group term is applied as (x_u D^-gamma G)
G^T and never materialised, so a publisher with 100k books costs O(books), not O(books^2).

Data without book metadata (LightGCN-format benchmarks) has no groups: the hybrid is then RP3beta.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch

from engine.models.base import Callback, Dataset, FitResult, register, usable_out
from engine.models.checkpoint import pack_csr, unpack_csr
from engine.models.itemknn import SearchSpace, topk_rows
from engine.models.rp3beta import RP3beta, RP3betaSettings

GROUPS = ("author", "publisher")


@dataclass(frozen=True)
class HybridSettings(RP3betaSettings):
    """RP3beta's settings plus the weight of each metadata link; the defaults were chosen on the
    validation part of real Book-Crossing (docs/BENCHMARKS.md)."""

    author: float = 1.0  # weight of "same author" against the walk's (both scaled to row sum 1)
    publisher: float = 0.0  # weight of "same publisher"
    gamma: float = 0.5  # each link divided by (other books in the group)^gamma

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.author < 0 or self.publisher < 0 or not 0 <= self.gamma <= 1:
            raise ValueError("hybrid needs author >= 0, publisher >= 0 and 0 <= gamma <= 1")


def _group_term(g: sp.csr_matrix, gamma: float) -> tuple[sp.csr_matrix, float]:
    """(D^-gamma G as CSR, mean row sum of D^-gamma (G G^T - I)) for one group incidence G."""
    size = np.asarray(g.sum(axis=0)).ravel()  # books per group
    others = np.asarray(g @ size).ravel() - np.asarray(g.sum(axis=1)).ravel()  # per item
    scale = np.zeros_like(others)
    has = others > 0
    scale[has] = others[has] ** -gamma
    mean_row = float((scale * others).sum()) / max(g.shape[0], 1)
    return (sp.diags(scale.astype(np.float32)) @ g).tocsr(), mean_row


@register
class Hybrid(RP3beta):
    """RP3beta + same-author + same-publisher links (one sparse linear item-item model)."""

    name = "hybrid"
    settings_cls = HybridSettings
    search_space: ClassVar[SearchSpace] = {
        **RP3beta.search_space,
        "author": ("float", 0.0, 4.0),
        "publisher": ("float", 0.0, 1.0),
        "gamma": ("float", 0.0, 1.0),
    }

    def __init__(self, settings: Any = None):
        super().__init__(settings)
        self.groups: dict[str, tuple[sp.csr_matrix, sp.csr_matrix]] = {}  # field -> (D^-g G, G)

    def group_fields(self) -> tuple[str, ...]:
        """The book metadata this model reads (engine.models.stage.dataset_for loads it)."""
        s = self.settings
        return tuple(f for f in GROUPS if getattr(s, f) > 0)

    def fit(
        self, data: Dataset, settings: Any = None, *, callback: Callback | None = None
    ) -> FitResult:
        """RP3beta's W on the training part, scaled, and the group terms of the item metadata."""
        result = super().fit(data, settings, callback=callback)
        w_mean = float(self.weights.sum()) / max(self.weights.shape[0], 1)
        if w_mean > 0:
            self.weights = (self.weights * (1.0 / w_mean)).astype(np.float32).tocsr()
        self.groups = {}
        for f, g in (data.extras.get("item_groups") or {}).items():
            weight = getattr(self.settings, f, 0.0)
            if weight <= 0 or g.shape[0] != data.n_items or not g.nnz:
                continue
            src, mean_row = _group_term(g.astype(np.float32), self.settings.gamma)
            if mean_row > 0:
                self.groups[f] = ((src * (weight / mean_row)).astype(np.float32).tocsr(), g.tocsr())
        return result

    def _scores(self, x: sp.csr_matrix, into: np.ndarray | None = None) -> np.ndarray:
        product = x @ self.weights
        out = product.toarray(
            out=into if into is not None and product.dtype == into.dtype else None
        )
        for src, g in self.groups.values():
            out += ((x @ src) @ g.T).toarray()
        return out

    def score(self, users: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """x_u @ W_rp3 + sum over groups of (x_u D^-gamma G) G^T (into `out` when usable)."""
        into = None
        if usable_out(out, len(users), self.train.shape[1], torch.device("cpu")):
            into = out.numpy()
        dense = self._scores(self.train[users.cpu().numpy()], into)
        if into is not None and dense is into:
            return out
        return torch.from_numpy(dense.astype(np.float32, copy=False)).to(users.device)

    def sparse_scores(self, users: np.ndarray) -> sp.csr_matrix | None:
        """None: the group terms give every book of a reader's imprints a score (100k-book
        publishers), so the top-N write-back scores dense blocks."""
        return None

    def item_item(self, topk: int) -> sp.csr_matrix | None:
        """W with the group links added, each row pruned to its `topk` largest entries (the walk's
        own top-k plus the strongest links): exact for rows within topk, approximate beyond."""
        if self.weights is None:
            return None
        work = np.diff(self.weights.indptr).astype(np.float64)
        for _, g in self.groups.values():
            work += np.asarray(g @ np.asarray(g.sum(axis=0)).ravel()).ravel()

        def block(r0: int, r1: int) -> sp.csr_matrix:
            out = self.weights[r0:r1]
            for src, g in self.groups.values():
                out = out + src[r0:r1] @ g.T
            return out.tocsr()

        return topk_rows(
            block, lambda r, c, v: v, self.weights.shape[0], topk, work, self.settings.block_mb
        )

    def state(self) -> dict[str, Any]:
        """RP3beta's state plus each group term (CSR tensors; loads with weights_only=True)."""
        groups = {f: [pack_csr(src), pack_csr(g)] for f, (src, g) in self.groups.items()}
        return {**super().state(), "groups": groups}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Hybrid:
        """Rebuild from `state()` (no recomputation)."""
        model = super().from_state(state)
        model.groups = {
            f: (unpack_csr(src), unpack_csr(g)) for f, (src, g) in state.get("groups", {}).items()
        }
        return model
