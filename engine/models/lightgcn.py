"""LightGCN (He et al. 2020) on torch sparse CSR, and MF-BPR as its 0-layer special case."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from engine.config import as_dict
from engine.models import trainer
from engine.models.base import (
    Callback,
    Dataset,
    FitResult,
    Recommender,
    inner_products,
    register,
    settings_from_dict,
)
from engine.models.graph import (
    node_order,
    normalized_adjacency,
    propagate,
    propagate_rows,
    reorder,
    to_torch_csr,
)


@dataclass(frozen=True)
class LightGCNSettings:
    """LightGCN hyper-parameters (the paper's Gowalla settings) and training-loop options."""

    layers: int = 3
    dim: int = 64
    lr: float = 1e-3
    reg: float = 1e-4  # weight of the L2 term on the batch's layer-0 embeddings
    batch_size: int = 2048
    init_std: float = 0.1  # normal(0, 0.1) init, as the official code
    epochs: int = 50
    eval_every: int = 5
    patience: int = 3  # evaluations without improvement before stopping; 0 = never stop early
    eval_metric: str = "recall@20"  # selects on valid; "<metric>@k", k in eval_ks
    eval_ks: tuple[int, ...] = (20,)
    eval_batch_size: int = 2048
    seed: int = 2020
    device: str = "auto"
    num_threads: int = 0  # 0 = one per available core
    checkpoint_dir: Path | None = None
    resume: bool = False
    progress: bool = True
    # facet fields whose labels become graph nodes linked to their books, e.g. ("genre",);
    # empty: the plain user-item graph. Needs `bookrec facets` (engine.models.data.item_facets).
    facet_nodes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        trainer.check_eval_metric(self.eval_metric, self.eval_ks)


@dataclass(frozen=True)
class MFSettings(LightGCNSettings):
    """MF-BPR: LightGCN with no propagation layers."""

    layers: int = 0
    item_bias: bool = False  # Rendle's BPR-MF: score = u . i + b_i (b_i starts at 0, under reg)


class LightGCNModule(nn.Module):
    """Ego embeddings of users then items; the graph is attached, not a parameter.

    With a graph attached the embedding table is stored in the graph's locality order (rows
    permuted, see `graph.node_order`) and `pos[node]` says where each node's row is: a buffer,
    so checkpoints and best weights carry it. Callers always speak of node ids; `ego()` and
    `propagate_all()` answer in node order.
    """

    def __init__(
        self,
        n_users: int,
        n_items: int,
        dim: int,
        layers: int,
        init_std: float,
        n_extra: int = 0,
        item_bias: bool = False,
    ):
        super().__init__()
        self.n_users, self.n_items, self.layers = n_users, n_items, layers
        self.n_extra = n_extra  # facet nodes after the items (never scored)
        self.embedding = nn.Embedding(n_users + n_items + n_extra, dim)
        nn.init.normal_(self.embedding.weight, std=init_std)
        self.item_bias = nn.Embedding(n_items, 1) if item_bias else None  # MF's b_i
        if self.item_bias is not None:
            nn.init.zeros_(self.item_bias.weight)
        self.adj: torch.Tensor | None = None
        self.register_buffer("pos", None)

    def attach_graph(self, adj: sp.csr_matrix, device: torch.device) -> None:
        """Propagate over `adj` (nodes in id order), storing nodes in locality order."""
        order = node_order(adj)
        self.adj = to_torch_csr(reorder(adj, order), device)
        pos = np.empty_like(order)
        pos[order] = np.arange(len(order))
        self.pos = torch.from_numpy(pos).to(device)
        with torch.no_grad():  # the same initial vector per node as without the reordering
            w = self.embedding.weight
            w.copy_(w[torch.from_numpy(order).to(w.device)])

    def ego(self) -> torch.Tensor:
        """The ego (layer-0) embeddings in node id order."""
        w = self.embedding.weight
        return w if self.pos is None else w[self.pos]

    def propagate_all(self) -> torch.Tensor:
        """Final embeddings of every node (mean of layers 0..L), in node id order."""
        final = propagate(self.adj, self.embedding.weight, self.layers)
        return final if self.pos is None else final[self.pos]

    def bpr_loss(
        self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, reg: float
    ) -> torch.Tensor:
        """BPR + reg * 1/2 (|u0|^2 + |p0|^2 + |n0|^2) / batch, exactly the official LightGCN loss."""
        nodes = torch.cat([users, pos + self.n_users, neg + self.n_users])
        if self.pos is not None:
            nodes = self.pos[nodes]
        uniq, inverse = torch.unique(nodes, return_inverse=True)
        final, ego = propagate_rows(self.adj, self.embedding.weight, uniq, self.layers)
        u, p, n = final[inverse].split(len(users))
        reg_loss = 0.5 * ego[inverse].pow(2).sum() / len(users)
        diff = (u * n).sum(1) - (u * p).sum(1)
        if self.item_bias is not None:  # b_neg - b_pos, the biases under the same L2 term
            b_pos, b_neg = self.item_bias(pos).squeeze(1), self.item_bias(neg).squeeze(1)
            diff = diff + b_neg - b_pos
            reg_loss = reg_loss + 0.5 * (b_pos.pow(2).sum() + b_neg.pow(2).sum()) / len(users)
        return F.softplus(diff).mean() + reg * reg_loss


@register
class LightGCN(Recommender):
    """LightGCN: mean of L hops of D^-1/2 A D^-1/2 over the user-item graph, BPR, Adam."""

    name = "lightgcn"
    settings_cls = LightGCNSettings
    # for `bookrec tune`; epochs stay a budget, early stopping on valid picks the epoch. lr starts
    # at the default 1e-3: slower rates never converge within the epoch budget (1e-3 is still
    # improving at epoch 50 on Book-Crossing), and dim stops at 128 (a trial at 256 costs 2-4x
    # per epoch): a random start in the wider space spent a 20-minute budget on two trials.
    search_space: ClassVar[dict[str, tuple]] = {
        "layers": ("int", 1, 4),
        "dim": ("int_log", 32, 128),
        "lr": ("log", 1e-3, 3e-2),
        "reg": ("log", 1e-6, 1e-1),
    }

    def __init__(self, settings: Any = None):
        super().__init__(settings)
        self.module: LightGCNModule | None = None
        self._users: torch.Tensor | None = None
        self._items: torch.Tensor | None = None

    def init_module(self, data: Dataset, device: torch.device) -> None:
        """Build the graph from the training interactions only and a freshly initialised module."""
        s = self.settings
        facets = data.extras.get("item_facets") if s.layers > 0 else None
        n_extra = facets.shape[1] if facets is not None else 0
        self.module = LightGCNModule(
            data.n_users,
            data.n_items,
            s.dim,
            s.layers,
            s.init_std,
            n_extra,
            item_bias=getattr(s, "item_bias", False),
        ).to(device)
        if s.layers > 0:
            self.module.attach_graph(normalized_adjacency(data.train, facets), device)

    def batch_loss(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        """Loss of one batch of (user, positive, negative) triples."""
        return self.module.bpr_loss(
            users, pos, neg[:, 0] if neg.dim() == 2 else neg, self.settings.reg
        )

    def finalize(self) -> None:
        """Propagate once and cache the final user/item embeddings for scoring."""
        self.module.eval()
        with torch.no_grad():
            final = self.module.propagate_all().detach()  # layers = 0 returns the parameter itself
        n_users, n_items = self.module.n_users, self.module.n_items
        self._users, self._items = final[:n_users], final[n_users : n_users + n_items]
        if self.module.item_bias is not None:  # [u, 1] . [i, b_i]: still one inner product
            ones = torch.ones(n_users, 1, device=final.device)
            self._users = torch.cat([self._users, ones], 1)
            self._items = torch.cat([self._items, self.module.item_bias.weight.detach()], 1)

    def fit(
        self, data: Dataset, settings: Any = None, *, callback: Callback | None = None
    ) -> FitResult:
        """Train with the shared loop (early stopping, checkpoints); keeps the best evaluated weights."""
        if settings is not None:
            self.settings = settings
        return trainer.fit(self, data, callback)

    def score(self, users: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """Inner products of the final embeddings: [len(users), n_items] (into `out` when usable)."""
        users = users.to(self._users.device)
        return inner_products(self._users[users], self._items, out)

    def user_embeddings(self) -> np.ndarray | None:
        """Final (propagated) user vectors."""
        return self._users.cpu().numpy()

    def item_embeddings(self) -> np.ndarray | None:
        """Final (propagated) item vectors."""
        return self._items.cpu().numpy()

    def state(self) -> dict[str, Any]:
        """Settings, ego weights and final embeddings (enough to score without the graph)."""
        return {
            "model": self.name,
            "settings": as_dict(self.settings),
            "n_users": self.module.n_users,
            "n_items": self.module.n_items,
            "n_extra": self.module.n_extra,
            "ego": self.module.ego().detach().cpu(),
            "users": self._users.cpu(),
            "items": self._items.cpu(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> LightGCN:
        """Rebuild a fitted model from `state()`, on the CPU."""
        model = cls(settings_from_dict(cls.settings_cls, state["settings"]))
        s = model.settings
        bias = getattr(s, "item_bias", False)
        model.module = LightGCNModule(
            state["n_users"],
            state["n_items"],
            s.dim,
            s.layers,
            s.init_std,
            state.get("n_extra", 0),
            item_bias=bias,
        )
        with torch.no_grad():
            model.module.embedding.weight.copy_(state["ego"])
            if bias:  # the bias is the last column of the stored item vectors
                model.module.item_bias.weight.copy_(state["items"][:, -1:])
        model._users, model._items = state["users"], state["items"]
        return model


@register
class MF(LightGCN):
    """Matrix factorisation with BPR: the same code as LightGCN with zero layers."""

    name = "mf"
    settings_cls = MFSettings
    search_space: ClassVar[dict[str, tuple]] = {
        "dim": ("int_log", 16, 256),
        "lr": ("log", 1e-4, 3e-2),
        "reg": ("log", 1e-6, 1e-1),
        "item_bias": ("cat", (True, False)),
    }
