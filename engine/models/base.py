"""The one model interface: Dataset in, fit, score users against all items, embeddings, state."""

from __future__ import annotations

import functools
import hashlib
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import scipy.sparse as sp
import torch
from threadpoolctl import ThreadpoolController

T = TypeVar("T")
R = TypeVar("R")

Callback = Callable[[int, dict[str, float]], None]


@dataclass(frozen=True)
class Dataset:
    """Implicit feedback with 0-based contiguous ids; each matrix is users x items, 1.0 per positive."""

    n_users: int
    n_items: int
    train: sp.csr_matrix
    valid: sp.csr_matrix | None = None
    test: sp.csr_matrix | None = None
    # Optional side information, e.g. {"user_features": int array [n_users], "item_features": ...}.
    extras: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("train", "valid", "test"):
            m = getattr(self, name)
            if m is None:
                continue
            if m.shape != (self.n_users, self.n_items):
                raise ValueError(
                    f"{name} has shape {m.shape}, expected {(self.n_users, self.n_items)}"
                )
            object.__setattr__(self, name, binarize(m))

    def fingerprint(self) -> str:
        """Short hash of the shapes and the training/validation/test interactions."""
        h = hashlib.sha256(f"{self.n_users}x{self.n_items}".encode())
        for m in (self.train, self.valid, self.test):
            if m is None:
                h.update(b"none")
                continue
            h.update(m.indptr.astype(np.int64).tobytes())
            h.update(m.indices.astype(np.int64).tobytes())
        return h.hexdigest()[:16]

    def eval_split(self) -> sp.csr_matrix | None:
        """The matrix models are selected on (early stopping): validation, else None, never test."""
        return self.valid if self.valid is not None and self.valid.nnz else None


def usable_out(
    out: torch.Tensor | None, n_users: int, n_items: int, device: torch.device | None = None
) -> bool:
    """Whether a model's `score` may write a [n_users, n_items] block into `out`: the right shape,
    float32, contiguous, and on `device` (None: any)."""
    return (
        out is not None
        and tuple(out.shape) == (n_users, n_items)
        and out.dtype == torch.float32
        and out.is_contiguous()
        and (device is None or out.device == torch.device(device))
    )


# Rows of the user block per BLAS call below which one call on one thread does it all.
_MIN_BLOCK_ROWS = 64


@functools.cache
def _blas() -> ThreadpoolController:
    return ThreadpoolController()


@functools.cache
def _pool(threads: int, pid: int, name: str = "scores") -> ThreadPoolExecutor:
    # keyed by process: a forked child inherits the executor but none of its threads; by name,
    # so work mapped on one pool never waits for a slot of its own pool
    return ThreadPoolExecutor(threads, thread_name_prefix=f"bookrec-{name}")


def thread_map(fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """[fn(x) for x in items], run on torch.get_num_threads() threads: for work that releases the
    GIL (scipy's sparse products, numpy's sorts). Results in order."""
    threads = max(1, min(torch.get_num_threads(), len(items)))
    if threads == 1:
        return [fn(x) for x in items]
    return list(_pool(threads, os.getpid(), "map").map(fn, items))


def inner_products(
    users: torch.Tensor, items: torch.Tensor, out: torch.Tensor | None = None
) -> torch.Tensor:
    """users @ items.T as [len(users), len(items)] scores, written into `out` when usable.

    On the CPU, float32: numpy's BLAS on row blocks, one block per torch thread, each BLAS call
    single-threaded. Measured on Gowalla's full ranking (29,858 x 40,981, dim 64, 2 threads, AMD
    EPYC): torch's MKL sgemm takes 2.53 s there (MKL runs a generic path on non-Intel CPUs), two
    OpenBLAS threads 1.16 s but their spinning after each call slows the torch topk that follows
    (1.11 -> 1.69 s); blocks on single-threaded BLAS calls 1.09 s and leave topk alone.
    """
    n, m = len(users), len(items)
    fast = (
        users.device.type == "cpu"
        and items.device.type == "cpu"
        and users.dtype == torch.float32
        and items.dtype == torch.float32
        and not users.requires_grad
        and not items.requires_grad
    )
    if not fast:
        if usable_out(out, n, m, items.device):
            return torch.matmul(users, items.T, out=out)
        return users @ items.T
    if not usable_out(out, n, m, torch.device("cpu")):
        out = torch.empty((n, m), dtype=torch.float32)
    u, v, o = users.contiguous().numpy(), items.numpy().T, out.numpy()
    blocks = max(1, min(torch.get_num_threads(), n // _MIN_BLOCK_ROWS))
    cuts = np.linspace(0, n, blocks + 1).astype(np.int64)
    parts = [slice(a, b) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
    with _blas().limit(limits=1, user_api="blas"):
        if blocks == 1:
            np.matmul(u, v, out=o)
        else:
            list(
                _pool(blocks, os.getpid()).map(
                    lambda rows: np.matmul(u[rows], v, out=o[rows]), parts
                )
            )
    return out


def binarize(m: sp.spmatrix) -> sp.csr_matrix:
    """CSR float32 with sorted indices, duplicates merged and every stored value 1.0."""
    m = sp.csr_matrix(m, dtype=np.float32)
    m.sum_duplicates()
    m.eliminate_zeros()
    m.sort_indices()
    m.data[:] = 1.0
    return m


@dataclass
class FitResult:
    """What training did: one entry per epoch, the epoch kept, which part chose it, the wall time."""

    history: list[dict[str, Any]] = field(default_factory=list)  # epoch, loss, metrics, seconds
    best_epoch: int = 0
    train_seconds: float = 0.0
    # "valid": best_epoch won on the validation part; "none: fixed epochs": nothing was selected
    # (no validation part, or a training-free model). Test never selects.
    selected_by: str = "none: fixed epochs"


class Recommender(ABC):
    """A model that fits on a Dataset and scores users against every item (higher is better)."""

    name: ClassVar[str] = "base"
    settings_cls: ClassVar[type]

    def __init__(self, settings: Any = None):
        self.settings = settings if settings is not None else self.settings_cls()

    @abstractmethod
    def fit(
        self, data: Dataset, settings: Any = None, *, callback: Callback | None = None
    ) -> FitResult:
        """Train (or compute) the model on `data.train`; `callback(epoch, metrics)` after each eval."""

    @abstractmethod
    def score(self, users: torch.Tensor) -> torch.Tensor:
        """Scores [len(users), n_items], float; training items are NOT masked here.

        A model may also take `out=None`: a float32 [len(users), n_items] buffer the evaluation
        loop reuses for every batch (`metrics.ScoreBlocks`); when `usable_out(out, ...)` the
        model writes its scores there and returns `out`, else it returns a tensor of its own."""

    def user_embeddings(self) -> np.ndarray | None:
        """Final user vectors [n_users, dim], or None for models without them."""
        return None

    def item_embeddings(self) -> np.ndarray | None:
        """Final item vectors [n_items, dim], or None for models without them."""
        return None

    def tune_settings(self) -> dict[str, Any]:
        """Settings every `bookrec tune` trial adds to its own: a cheaper fidelity at which the
        tuned parameters keep their optimum (EASE: the most-read items only); `train --tuned` then
        fits with the model's own settings. {} for most models."""
        return {}

    def sparse_scores(self, users: np.ndarray) -> sp.csr_matrix | None:
        """The scores of `users` as sparse rows, for a model whose scores are zero (no evidence)
        for all but a few items per reader (item-item: x_u W), or None. The top-N write-back
        then ranks only the stored entries (`runs.top_n_sparse`) instead of dense blocks."""
        return None

    def item_item(self, topk: int) -> sp.csr_matrix | None:
        """Item x item weights W with score(x) = x W for a reader's binary row x (what fold-in
        needs to score a new reader, engine/foldin.py), or None when the score is not of that form.
        Models with a dense W keep its `topk` largest entries per row."""
        return None

    @abstractmethod
    def state(self) -> dict[str, Any]:
        """Everything needed to rebuild the fitted model (settings as `config.as_dict`).

        Tensors and plain Python values only (no numpy arrays, no objects; `checkpoint.pack_csr`
        for sparse matrices): state files are read with torch's weights_only unpickler.
        """

    @classmethod
    @abstractmethod
    def from_state(cls, state: dict[str, Any]) -> Recommender:
        """Rebuild a fitted model from `state()`."""


_REGISTRY: dict[str, type[Recommender]] = {}


def register(cls: type[Recommender]) -> type[Recommender]:
    """Class decorator: make a Recommender buildable by its `name`."""
    _REGISTRY[cls.name] = cls
    return cls


def registered() -> list[str]:
    """Names `build` accepts."""
    _load_builtin()
    return sorted(_REGISTRY)


def model_class(model_name: str) -> type[Recommender]:
    """The Recommender class registered under `model_name`."""
    from engine.errors import UnknownEntityError

    _load_builtin()
    try:
        return _REGISTRY[model_name]
    except KeyError:
        raise UnknownEntityError(
            f"unknown model {model_name!r}", hint=f"Known models: {', '.join(sorted(_REGISTRY))}"
        ) from None


def build(model_name: str, settings_overrides: dict[str, Any] | None = None) -> Recommender:
    """A fresh model with settings from bookrec.toml [<model>], BOOKREC_<MODEL>_*, then overrides."""
    from engine.config import load_settings

    cls = model_class(model_name)
    settings = load_settings(cls.settings_cls, model_name, settings_overrides or {})
    return cls(settings)


def settings_from_dict(cls: type, values: dict[str, Any]) -> Any:
    """A settings dataclass from its `config.as_dict` dump (lists back to tuples, strings to Path)."""
    from engine.config import load_settings

    return load_settings(
        cls, "__state__", values, config_file=Path("/nonexistent/bookrec.toml"), environ={}
    )


def from_state(state: dict[str, Any]) -> Recommender:
    """Rebuild any registered model from its `state()` (dispatches on state['model'])."""
    return model_class(state["model"]).from_state(state)


def _load_builtin() -> None:
    # Importing the modules registers their classes; done lazily to avoid an import cycle.
    import engine.models.als  # noqa: F401
    import engine.models.ease  # noqa: F401
    import engine.models.gfcf  # noqa: F401
    import engine.models.hybrid  # noqa: F401
    import engine.models.itemknn  # noqa: F401
    import engine.models.lightgcn  # noqa: F401
    import engine.models.ncf  # noqa: F401
    import engine.models.rp3beta  # noqa: F401
    import engine.models.spectral  # noqa: F401

    try:  # the popularity baseline lives beside the DuckDB side of the models
        import engine.models.popularity  # noqa: F401
    except ModuleNotFoundError as exc:
        if exc.name != "engine.models.popularity":
            raise
