"""Popularity: every user gets the same ranking by training interactions (the baseline to beat)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from engine.config import as_dict
from engine.models.base import (
    Callback,
    Dataset,
    FitResult,
    Recommender,
    register,
    settings_from_dict,
    usable_out,
)


@dataclass(frozen=True)
class PopularitySettings:
    """How items are ranked: count of training interactions, or a Bayesian mean (popular_books' formula)."""

    by: Literal["count", "bayes"] = "count"
    m: float = 50.0  # bayes: prior weight (popular_books uses 50)
    seed: int = 2020  # unused (deterministic); kept so every model records a seed


@register
class Popularity(Recommender):
    """Rank items by how often they were interacted with in train (ties: lower index first)."""

    name = "popularity"
    settings_cls = PopularitySettings

    def __init__(self, settings: Any = None):
        super().__init__(settings)
        self.item_scores: torch.Tensor | None = None

    def fit(
        self, data: Dataset, settings: Any = None, *, callback: Callback | None = None
    ) -> FitResult:
        """Count training interactions per item (bayes: shrink the mean rating in extras toward the global mean)."""
        if settings is not None:
            self.settings = settings
        t0 = time.perf_counter()
        counts = np.asarray(data.train.sum(axis=0), dtype=np.float64).ravel()
        scores = counts
        ratings = data.extras.get("train_ratings") if data.extras else None
        if self.settings.by == "bayes" and ratings is not None:
            scores = bayes_scores(ratings, self.settings.m)
        self.item_scores = torch.from_numpy(scores.astype(np.float64))
        seconds = time.perf_counter() - t0
        if callback is not None:
            callback(0, {})
        return FitResult(
            history=[{"epoch": 0, "loss": 0.0, "seconds": seconds}],
            best_epoch=0,
            train_seconds=seconds,
        )

    def score(self, users: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """The same item scores for every user: [len(users), n_items] (written into `out` when
        that is a usable buffer)."""
        row = self.item_scores.float().unsqueeze(0).expand(len(users), -1)
        if usable_out(out, len(users), len(self.item_scores)):
            return out.copy_(row)
        return row.clone()

    def state(self) -> dict[str, Any]:
        """Settings and the item scores."""
        return {
            "model": self.name,
            "settings": as_dict(self.settings),
            "item_scores": self.item_scores,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Popularity:
        """Rebuild from `state()`."""
        model = cls(settings_from_dict(cls.settings_cls, state["settings"]))
        model.item_scores = state["item_scores"]
        return model


def bayes_scores(train_ratings, m: float) -> np.ndarray:
    """popular_books' weighted rating per item from a users x items CSR of training ratings (0 = implicit)."""
    r = train_ratings.tocsc()
    explicit = r.copy()
    explicit.data = (explicit.data > 0).astype(np.float64)
    v = np.asarray(explicit.sum(axis=0)).ravel()
    total = np.asarray(r.sum(axis=0), dtype=np.float64).ravel()
    c = total.sum() / max(v.sum(), 1.0)
    mean = np.divide(total, v, out=np.full_like(total, c), where=v > 0)
    return v / (v + m) * mean + m / (v + m) * c
