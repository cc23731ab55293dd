"""Matrix factorisation through the `implicit` library: ALS (Hu et al. 2008) and BPR, CPU or its GPU path."""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from engine.config import as_dict
from engine.models.base import (
    Callback,
    Dataset,
    FitResult,
    Recommender,
    inner_products,
    register,
    settings_from_dict,
)
from engine.models.itemknn import SearchSpace
from engine.models.trainer import resolve_device


@dataclass(frozen=True)
class ALSSettings:
    """Implicit-feedback ALS; the defaults were chosen on the validation part of real Book-Crossing."""

    dim: int = 256  # latent factors
    reg: float = 10.0  # L2 weight on the factors
    alpha: float = 40.0  # confidence of an observed interaction: 1 + alpha
    epochs: int = 15  # ALS sweeps (users then items), conjugate-gradient solver
    seed: int = 2020
    device: str = "auto"  # cuda: implicit's GPU ALS when implicit was built with CUDA, else CPU
    num_threads: int = 0  # implicit's OpenMP threads (0 = one per core)
    progress: bool = False  # implicit's progress bar


@dataclass(frozen=True)
class BPRSettings:
    """implicit's BPR-MF (item bias included); the defaults were chosen on Book-Crossing's validation part."""

    dim: int = 128
    lr: float = 0.01
    reg: float = 1e-4
    epochs: int = 400
    seed: int = 2020
    device: str = "auto"
    num_threads: int = 0
    progress: bool = False


def implicit_gpu() -> bool:
    """Whether this implicit build can fit on a CUDA GPU."""
    import implicit.gpu

    return bool(implicit.gpu.HAS_CUDA)


class ImplicitMF(Recommender):
    """An `implicit` factorisation; score = user factors . item factors, so SQL can rank them."""

    name = "implicit"
    scores_are_inner_products = True  # stage.scoring_of: recommend() ranks the embeddings in SQL
    search_space: ClassVar[SearchSpace] = {}

    def __init__(self, settings: Any = None):
        super().__init__(settings)
        self._users: torch.Tensor | None = None
        self._items: torch.Tensor | None = None
        self.used_gpu = False

    def make(self, gpu: bool) -> Any:
        """The implicit model object for these settings."""
        raise NotImplementedError

    def fit(
        self, data: Dataset, settings: Any = None, *, callback: Callback | None = None
    ) -> FitResult:
        """Fit on data.train with implicit (BLAS pinned to one thread, as implicit asks)."""
        if settings is not None:
            self.settings = settings
        s = self.settings
        device = resolve_device(s.device)
        self.used_gpu = device.type == "cuda" and implicit_gpu()
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # implicit's BLAS-threads advice
            model = self.make(self.used_gpu)
        # implicit's solvers call BLAS inside their OpenMP loops: a threaded BLAS there
        # oversubscribes the cores (and OpenBLAS prints a warning per call). The limit is set only
        # now because threadpoolctl can only limit libraries already loaded (importing implicit
        # loads scipy's OpenBLAS).
        with threadpool_limits(1, user_api="blas"):
            model.fit(data.train.astype(np.float32), show_progress=s.progress)
        if self.used_gpu:
            model = model.to_cpu()
        self._users = torch.from_numpy(np.ascontiguousarray(model.user_factors, dtype=np.float32))
        self._items = torch.from_numpy(np.ascontiguousarray(model.item_factors, dtype=np.float32))
        if device.type == "cuda":
            self._users, self._items = self._users.to(device), self._items.to(device)
        seconds = time.perf_counter() - t0
        if callback is not None:
            callback(s.epochs, {})
        return FitResult(
            history=[{"epoch": s.epochs, "loss": 0.0, "seconds": seconds}],
            best_epoch=s.epochs,
            train_seconds=seconds,
        )

    def score(self, users: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """Inner products of the factors: [len(users), n_items] (into `out` when usable)."""
        u = self._users[users.to(self._users.device)]
        return inner_products(u, self._items, out).to(users.device)

    def user_embeddings(self) -> np.ndarray | None:
        """User factors [n_users, dim] (BPR: a trailing 1 that meets the item bias)."""
        return self._users.cpu().numpy()

    def item_embeddings(self) -> np.ndarray | None:
        """Item factors [n_items, dim] (BPR: the item bias last)."""
        return self._items.cpu().numpy()

    def state(self) -> dict[str, Any]:
        """Settings and the two factor matrices (CPU tensors)."""
        return {
            "model": self.name,
            "settings": as_dict(self.settings),
            "users": self._users.cpu(),
            "items": self._items.cpu(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ImplicitMF:
        """Rebuild on the CPU from `state()`."""
        model = cls(settings_from_dict(cls.settings_cls, state["settings"]))
        model._users, model._items = state["users"], state["items"]
        return model


@register
class ALS(ImplicitMF):
    """Weighted ALS for implicit feedback (implicit.als.AlternatingLeastSquares, CG solver)."""

    name = "als"
    settings_cls = ALSSettings
    search_space: ClassVar[SearchSpace] = {
        "dim": ("int_log", 32, 512),
        "reg": ("log", 0.01, 100.0),
        "alpha": ("log", 1.0, 100.0),
        "epochs": ("int", 5, 30),
    }

    def make(self, gpu: bool) -> Any:
        """implicit's ALS (its GPU class when `gpu`)."""
        from implicit.als import AlternatingLeastSquares

        s = self.settings
        return AlternatingLeastSquares(
            factors=s.dim,
            regularization=s.reg,
            alpha=s.alpha,
            iterations=s.epochs,
            use_gpu=gpu,
            num_threads=s.num_threads,
            random_state=s.seed,
        )


@register
class BPR(ImplicitMF):
    """BPR-MF by SGD (implicit.bpr.BayesianPersonalizedRanking; negatives verified unseen)."""

    name = "bpr"
    settings_cls = BPRSettings
    search_space: ClassVar[SearchSpace] = {
        "dim": ("int_log", 16, 512),
        "lr": ("log", 1e-3, 0.1),
        "reg": ("log", 1e-6, 0.1),
        "epochs": ("int_log", 20, 1000),
    }

    def make(self, gpu: bool) -> Any:
        """implicit's BPR (its GPU class when `gpu`)."""
        from implicit.bpr import BayesianPersonalizedRanking

        s = self.settings
        return BayesianPersonalizedRanking(
            factors=s.dim,
            learning_rate=s.lr,
            regularization=s.reg,
            iterations=s.epochs,
            use_gpu=gpu,
            num_threads=s.num_threads,
            random_state=s.seed,
        )
