"""NCF / NeuMF (He et al. 2017): GMF and MLP towers fused, trained on sampled negatives."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engine.config import as_dict
from engine.errors import ConfigError
from engine.models import trainer
from engine.models.base import (
    Callback,
    Dataset,
    FitResult,
    Recommender,
    register,
    settings_from_dict,
)


@dataclass(frozen=True)
class NCFSettings:
    """NeuMF hyper-parameters and training-loop options."""

    dim: int = 32  # GMF and MLP embedding size
    mlp_layers: tuple[int, ...] = (64, 32, 16)
    loss: str = (
        "bce"  # bce: 1 positive + n_neg negatives as labels; bpr: pairwise on the first negative
    )
    n_neg: int = 4
    lr: float = 1e-3
    reg: float = 0.0  # L2 on the batch's embeddings, divided by the batch size
    init_std: float = 0.01
    # Reader age bucket and book genre facet (filled by the train stage). Off by default: on the
    # real Book-Crossing subset they cost 10 % recall@20 (bench/ncf_side_features.py).
    side_features: bool = False
    batch_size: int = 2048
    epochs: int = 20
    eval_every: int = 2
    patience: int = 3
    eval_metric: str = "recall@20"  # selects on valid; "<metric>@k", k in eval_ks
    eval_ks: tuple[int, ...] = (20,)
    eval_batch_size: int = 1024
    score_chunk: int = 2**24  # max users x items x hidden elements materialised while scoring
    seed: int = 2020
    device: str = "auto"
    num_threads: int = 0
    checkpoint_dir: Path | None = None
    resume: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        trainer.check_eval_metric(self.eval_metric, self.eval_ks)


def _feature_ids(values: Any, n: int) -> tuple[torch.Tensor, int] | None:
    """Integer feature per row (negative = unknown) as ids 0..k, 0 reserved for unknown."""
    if values is None:
        return None
    arr = np.asarray(values, dtype=np.int64)
    if arr.shape != (n,):
        raise ConfigError(f"side feature has shape {arr.shape}, expected ({n},)")
    ids = np.where(arr < 0, 0, arr + 1)
    return torch.from_numpy(ids), int(ids.max()) + 1


class NeuMF(nn.Module):
    """GMF (elementwise product) and MLP (concatenation) towers joined by one linear output."""

    def __init__(
        self, n_users: int, n_items: int, s: NCFSettings, user_vocab: int = 0, item_vocab: int = 0
    ):
        super().__init__()
        d = s.dim
        self.gmf_user, self.gmf_item = nn.Embedding(n_users, d), nn.Embedding(n_items, d)
        self.mlp_user, self.mlp_item = nn.Embedding(n_users, d), nn.Embedding(n_items, d)
        self.user_side = nn.Embedding(user_vocab, d) if user_vocab else None
        self.item_side = nn.Embedding(item_vocab, d) if item_vocab else None
        for emb in (
            self.gmf_user,
            self.gmf_item,
            self.mlp_user,
            self.mlp_item,
            self.user_side,
            self.item_side,
        ):
            if emb is not None:
                nn.init.normal_(emb.weight, std=s.init_std)
        sizes = [2 * d, *s.mlp_layers]
        self.first_user = nn.Linear(d, sizes[1])  # the first MLP layer split per side, so scoring
        self.first_item = nn.Linear(d, sizes[1], bias=False)  # all items costs one matmul per side
        self.mlp = nn.ModuleList(
            nn.Linear(a, b) for a, b in zip(sizes[1:-1], sizes[2:], strict=True)
        )
        self.out = nn.Linear(d + sizes[-1], 1)
        self.register_buffer("user_feat", torch.zeros(n_users, dtype=torch.long), persistent=True)
        self.register_buffer("item_feat", torch.zeros(n_items, dtype=torch.long), persistent=True)

    def user_parts(self, users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(GMF vector, first-layer MLP pre-activation share) of users."""
        m = self.mlp_user(users)
        if self.user_side is not None:
            m = m + self.user_side(self.user_feat[users])
        return self.gmf_user(users), self.first_user(m)

    def item_parts(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(GMF vector, first-layer MLP pre-activation share) of items."""
        m = self.mlp_item(items)
        if self.item_side is not None:
            m = m + self.item_side(self.item_feat[items])
        return self.gmf_item(items), self.first_item(m)

    def head(self, gmf: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """Logits from the GMF product and the first MLP pre-activation."""
        h = F.relu(hidden)
        for layer in self.mlp:
            h = F.relu(layer(h))
        w_gmf, w_mlp = self.out.weight[0, : gmf.shape[-1]], self.out.weight[0, gmf.shape[-1] :]
        return gmf @ w_gmf + h @ w_mlp + self.out.bias[0]

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Logits of (user, item) pairs; users broadcast against items of shape [B, n]."""
        gu, hu = self.user_parts(users)
        gi, hi = self.item_parts(items)
        if items.dim() == 2:
            gu, hu = gu[:, None], hu[:, None]
        return self.head(gu * gi, hu + hi)


@register
class NCF(Recommender):
    """NeuMF with BCE (or BPR) on uniformly sampled negatives; optional user/item side features."""

    name = "ncf"
    settings_cls = NCFSettings
    search_space: ClassVar[dict[str, tuple]] = {
        "dim": ("int_log", 8, 128),
        "lr": ("log", 1e-4, 1e-2),
        "reg": ("log", 1e-7, 1e-2),
        "n_neg": ("int", 1, 8),
    }

    def __init__(self, settings: Any = None):
        super().__init__(settings)
        self.module: NeuMF | None = None

    def init_module(self, data: Dataset, device: torch.device) -> None:
        """A fresh NeuMF; side features from data.extras['user_features'/'item_features'] if enabled."""
        s = self.settings
        if s.loss not in ("bce", "bpr"):
            raise ConfigError(f"unknown ncf loss {s.loss!r}", hint="Use bce or bpr")
        uf = (
            _feature_ids(data.extras.get("user_features"), data.n_users)
            if s.side_features
            else None
        )
        itf = (
            _feature_ids(data.extras.get("item_features"), data.n_items)
            if s.side_features
            else None
        )
        self.module = NeuMF(data.n_users, data.n_items, s, uf[1] if uf else 0, itf[1] if itf else 0)
        if uf:
            self.module.user_feat.copy_(uf[0])
        if itf:
            self.module.item_feat.copy_(itf[0])
        self.module.to(device)

    def batch_loss(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        """BCE over [positive, negatives] or BPR against the first negative, plus optional L2."""
        m = self.module
        neg = neg if neg.dim() == 2 else neg[:, None]
        items = torch.cat([pos[:, None], neg], dim=1)
        logits = m(users, items)
        if self.settings.loss == "bce":
            labels = torch.zeros_like(logits)
            labels[:, 0] = 1.0
            loss = F.binary_cross_entropy_with_logits(logits, labels)
        else:
            loss = F.softplus(logits[:, 1] - logits[:, 0]).mean()
        if self.settings.reg > 0:
            embs = (m.gmf_user(users), m.mlp_user(users), m.gmf_item(items), m.mlp_item(items))
            loss = loss + self.settings.reg * sum(e.pow(2).sum() for e in embs) / len(users)
        return loss

    def finalize(self) -> None:
        """Switch to eval mode; scoring needs no cache."""
        self.module.eval()

    def fit(
        self, data: Dataset, settings: Any = None, *, callback: Callback | None = None
    ) -> FitResult:
        """Train with the shared loop (early stopping, checkpoints)."""
        if settings is not None:
            self.settings = settings
        return trainer.fit(self, data, callback)

    def score(self, users: torch.Tensor) -> torch.Tensor:
        """Logits of every item for each user, in chunks that bound users x items x hidden memory."""
        m = self.module
        device = next(m.parameters()).device
        users = users.to(device)
        n_items = m.gmf_item.num_embeddings
        with torch.no_grad():
            gi, hi = m.item_parts(torch.arange(n_items, device=device))
            gu, hu = m.user_parts(users)
            step = max(1, self.settings.score_chunk // (n_items * hi.shape[1]))
            out = [
                m.head(gu[a : a + step, None] * gi, hu[a : a + step, None] + hi)
                for a in range(0, len(users), step)
            ]
        return torch.cat(out) if out else torch.empty(0, n_items, device=device)

    def user_embeddings(self) -> np.ndarray | None:
        """The GMF user vectors (the part of NeuMF that is a plain inner product)."""
        return self.module.gmf_user.weight.detach().cpu().numpy()

    def item_embeddings(self) -> np.ndarray | None:
        """The GMF item vectors."""
        return self.module.gmf_item.weight.detach().cpu().numpy()

    def state(self) -> dict[str, Any]:
        """Settings, sizes and the module's weights (side-feature vocabularies included)."""
        m = self.module
        return {
            "model": self.name,
            "settings": as_dict(self.settings),
            "n_users": m.gmf_user.num_embeddings,
            "n_items": m.gmf_item.num_embeddings,
            "user_vocab": m.user_side.num_embeddings if m.user_side is not None else 0,
            "item_vocab": m.item_side.num_embeddings if m.item_side is not None else 0,
            "weights": {k: v.detach().cpu() for k, v in m.state_dict().items()},
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> NCF:
        """Rebuild on the CPU from `state()`."""
        model = cls(settings_from_dict(cls.settings_cls, state["settings"]))
        model.module = NeuMF(
            state["n_users"],
            state["n_items"],
            model.settings,
            state["user_vocab"],
            state["item_vocab"],
        )
        model.module.load_state_dict(state["weights"])
        model.module.eval()
        return model
