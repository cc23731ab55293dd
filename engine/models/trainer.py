"""The training loop shared by sampled models: seed, device, epochs, evaluation, early stopping, checkpoints.

Model selection (early stopping, restoring the best epoch) only ever looks at the validation part.
Without one the loop trains the fixed number of epochs and evaluates nothing: the caller judges the
result on test once.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import functools
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from engine.config import as_dict
from engine.errors import CheckpointError, ConfigError
from engine.evaluate.metrics import full_ranking
from engine.models import checkpoint
from engine.models.base import Callback, Dataset, FitResult
from engine.models.sampling import UniformSampler

# Settings that may change between an interrupted run and its resumption without changing the result.
_RESUMABLE_CHANGES = {
    "epochs",
    "resume",
    "progress",
    "num_threads",
    "checkpoint_dir",
    "patience",
    "device",
}


# The metric names full_ranking reports (each as "<name>@<k>").
EVAL_METRICS = ("recall", "ndcg", "precision", "hit", "coverage")
SELECTED_BY_VALID, SELECTED_BY_NONE = "valid", "none: fixed epochs"


def check_eval_metric(metric: str, ks) -> None:
    """ConfigError unless `metric` is "<name>@<k>" with a metric full_ranking reports and k in ks."""
    name, _, k = str(metric).partition("@")
    ks = tuple(ks)
    if name not in EVAL_METRICS or not k.isdigit():
        raise ConfigError(
            f"unknown eval_metric {metric!r}",
            hint=f"Use <metric>@<k> with metric one of {', '.join(EVAL_METRICS)}, e.g. recall@20",
        )
    if int(k) not in {int(x) for x in ks}:
        raise ConfigError(
            f"eval_metric {metric!r} needs k={k} in eval_ks {list(ks)}",
            hint=f"Add {k} to eval_ks or pick a k from it",
        )


def resolve_device(spec: str) -> torch.device:
    """'auto' -> cuda when available, else cpu; anything else is passed to torch.device."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(spec)
    except RuntimeError:
        raise ConfigError(
            f"unknown device {spec!r}", hint="Use auto, cpu, cuda or cuda:N"
        ) from None


def set_threads(n: int) -> None:
    """Use `n` torch threads; 0 means one per available core (more only adds contention)."""
    torch.set_num_threads(n if n > 0 else max(1, len(os.sched_getaffinity(0))))
    keep_freed_memory()


@functools.cache
def keep_freed_memory() -> bool:
    """Ask glibc to keep freed tensor memory instead of unmapping it (Linux; no-op elsewhere).

    Every training step allocates and frees dense buffers of (users + items) x dim floats (18 MB on
    Gowalla). Above glibc's mmap threshold each one is a fresh mmap whose pages are faulted in and
    zeroed, then unmapped: measured 0.109 -> 0.092 s per LightGCN step on Gowalla when kept.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(libc.mallopt(m_mmap_threshold, 32 << 20)) and bool(
        libc.mallopt(m_trim_threshold, 1 << 30)
    )


def seed_everything(seed: int) -> np.random.Generator:
    """Seed torch's global RNG and return the numpy Generator the sampler uses."""
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


class SampledModel(Protocol):
    """What the loop needs from a model trained on sampled (user, positive, negatives) triples."""

    name: str
    settings: Any
    module: torch.nn.Module

    def init_module(self, data: Dataset, device: torch.device) -> None: ...
    def batch_loss(
        self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor
    ) -> torch.Tensor: ...
    def finalize(self) -> None: ...
    def score(self, users: torch.Tensor) -> torch.Tensor: ...


@dataclass
class _Progress:
    epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    best_metric: float = -math.inf
    best_weights: dict[str, torch.Tensor] | None = None
    bad_evals: int = 0
    seconds: float = 0.0
    stopped: bool = False  # early stopping fired: a resumed run does not train further


class Hooks:
    """The loop's distributed bits; these defaults are one process, as the loop always ran.

    engine/models/ddp.py overrides them for several ranks (torch.distributed): which rows of each
    global batch this rank trains on, the gradient all-reduce (DDP), the epoch loss summed over
    ranks, rank 0's early-stopping decision and resumed state shared with every rank.
    """

    rank, world_size = 0, 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the only one that evaluates, writes checkpoints and calls the callback."""
        return self.rank == 0

    def job(self, model: SampledModel, data: Dataset) -> contextlib.AbstractContextManager:
        """Around one fit: rank 0 hands the model's settings and the data to the other ranks."""
        return contextlib.nullcontext()

    def threads(self, n: int) -> int:
        """Torch threads for this rank (set_threads' meaning: 0 = one per core)."""
        return n

    def device(self, spec: str) -> torch.device:
        """This rank's device."""
        return resolve_device(spec)

    def resumed(self, run: _Progress, model: SampledModel, optimizer, rng, data) -> _Progress:
        """Rank 0's resumed state on every rank."""
        return run

    def wrap(self, model: SampledModel, device: torch.device) -> Callable[..., torch.Tensor]:
        """The batch-loss function to call (under DDP: through its forward, so grads all-reduce)."""
        return model.batch_loss

    def share(self, start: int, stop: int) -> tuple[int, int]:
        """This rank's rows [lo, hi) of the global batch [start, stop)."""
        return start, stop

    def total(self, value: float) -> float:
        """A per-rank sum over all ranks."""
        return value

    def agree(self, flag: bool) -> bool:
        """Rank 0's decision, on every rank."""
        return flag


_HOOKS: list[Hooks] = [Hooks()]


@contextlib.contextmanager
def hooks_active(hooks: Hooks) -> Iterator[Hooks]:
    """Run every `fit` inside the block with `hooks` (engine/models/ddp.py's sessions)."""
    _HOOKS.append(hooks)
    try:
        yield hooks
    finally:
        _HOOKS.remove(hooks)


def current_hooks() -> Hooks:
    """The hooks `fit` uses now: the innermost `hooks_active`, else one process."""
    return _HOOKS[-1]


def checkpoint_path(model: SampledModel, data: Dataset) -> Path | None:
    """Where this model's checkpoint for this data lives, or None when checkpoints are off."""
    directory = model.settings.checkpoint_dir
    return None if directory is None else Path(directory) / f"{model.name}-{data.fingerprint()}.pt"


def fit(model: SampledModel, data: Dataset, callback: Callback | None = None) -> FitResult:
    """Train `model` on data.train; evaluate on valid every `eval_every` epochs, keep the best.

    Without a validation part: `epochs` epochs, no evaluation, the last weights (never test).
    `callback(epoch, {"loss", <valid metrics after an evaluation>, "seconds", "eval_seconds"})` runs
    after every epoch, once its checkpoint is written (so an exception there leaves a resumable run).
    """
    check_eval_metric(model.settings.eval_metric, model.settings.eval_ks)
    hooks = current_hooks()
    with hooks.job(model, data):
        return _fit(model, data, callback, hooks)


def _fit(model: SampledModel, data: Dataset, callback: Callback | None, hooks: Hooks) -> FitResult:
    s = model.settings
    set_threads(hooks.threads(s.num_threads))
    device = hooks.device(s.device)
    rng = seed_everything(s.seed)
    model.init_module(data, device)
    optimizer = torch.optim.Adam(model.module.parameters(), lr=s.lr, fused=True)
    sampler = UniformSampler(data.train, rng)
    target = data.eval_split()  # the validation part or None, never test
    path = checkpoint_path(model, data)
    run = _Progress()
    if s.resume and path is not None and path.exists():
        run = _load(path, model, optimizer, rng, data)
    run = hooks.resumed(run, model, optimizer, rng, data)
    step = hooks.wrap(model, device)
    n_batches = math.ceil(data.train.nnz / s.batch_size)
    with _bar(s.progress) as bar:
        task = bar.add_task(model.name, total=max(0, s.epochs - run.epoch) * n_batches, info="")
        for epoch in range(run.epoch + 1, 0 if run.stopped else s.epochs + 1):
            t0 = time.perf_counter()
            loss = _epoch(model, step, optimizer, sampler, device, hooks, lambda: bar.advance(task))
            record: dict[str, Any] = {
                "epoch": epoch,
                "loss": loss,
                "seconds": time.perf_counter() - t0,
            }
            run.seconds += record["seconds"]
            due = target is not None and (epoch % s.eval_every == 0 or epoch == s.epochs)
            evaluate = due and hooks.is_main
            if evaluate:
                t1 = time.perf_counter()
                model.finalize()
                record["metrics"] = full_ranking(
                    model.score,
                    data.train,
                    target,
                    ks=s.eval_ks,
                    batch_size=s.eval_batch_size,
                    device=device,
                )
                record["eval_seconds"] = time.perf_counter() - t1
                _track_best(run, model, epoch, record["metrics"][s.eval_metric])
            run.history.append(record)
            run.epoch = epoch
            run.stopped = evaluate and s.patience > 0 and run.bad_evals >= s.patience
            if due:  # every rank stops when rank 0 says so
                run.stopped = hooks.agree(run.stopped)
            info = f"epoch {epoch} loss {loss:.4f}"
            if evaluate:
                info += f" valid {s.eval_metric} {record['metrics'][s.eval_metric]:.4f}"
            bar.update(task, info=info)
            if path is not None:
                _save(path, model, optimizer, rng, run, data)
            if callback is not None and hooks.is_main:
                timing = {k: record[k] for k in ("seconds", "eval_seconds") if k in record}
                callback(epoch, {"loss": loss, **record.get("metrics", {}), **timing})
            if run.stopped:
                break
    if run.best_weights is not None:
        model.module.load_state_dict(run.best_weights)
    model.finalize()
    return FitResult(
        history=run.history,
        best_epoch=run.best_epoch or run.epoch,
        train_seconds=run.seconds,
        selected_by=SELECTED_BY_VALID if target is not None else SELECTED_BY_NONE,
    )


def _epoch(
    model: SampledModel,
    step: Callable[..., torch.Tensor],
    optimizer,
    sampler: UniformSampler,
    device: torch.device,
    hooks: Hooks,
    tick,
) -> float:
    """One pass over a freshly sampled epoch; returns the mean batch loss.

    Every rank draws the same epoch (same seed) and trains on its rows of each global batch; its
    loss is scaled by its share x world size so DDP's gradient mean is the global batch's gradient.
    """
    s = model.settings
    model.module.train()
    users, pos, neg = (
        torch.from_numpy(a).to(device) for a in sampler.epoch(n_neg=getattr(s, "n_neg", 1))
    )
    total, n = 0.0, 0
    for start in range(0, len(users), s.batch_size):
        stop = min(start + s.batch_size, len(users))
        lo, hi = hooks.share(start, stop)
        loss = step(users[lo:hi], pos[lo:hi], neg[lo:hi])
        share = (hi - lo) / (stop - start)
        optimizer.zero_grad(set_to_none=True)
        (loss if share == 1 else loss * (share * hooks.world_size)).backward()
        optimizer.step()
        total += float(loss.detach()) * share
        n += 1
        tick()
    return hooks.total(total) / max(n, 1)


def _track_best(run: _Progress, model: SampledModel, epoch: int, value: float) -> None:
    if value > run.best_metric:
        run.best_metric, run.best_epoch, run.bad_evals = value, epoch, 0
        run.best_weights = copy.deepcopy(model.module.state_dict())
    else:
        run.bad_evals += 1


def _bar(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[info]}"),
        disable=not enabled,
        transient=False,
    )


def _comparable(settings: Any) -> dict[str, Any]:
    return {k: v for k, v in as_dict(settings).items() if k not in _RESUMABLE_CHANGES}


_CHECKPOINT_KEYS = {
    "model",
    "settings",
    "data_fingerprint",
    "module",
    "optimizer",
    "numpy_rng",
    "torch_rng",
    "progress",
}


def _save(
    path: Path,
    model: SampledModel,
    optimizer,
    rng: np.random.Generator,
    run: _Progress,
    data: Dataset,
) -> None:
    """Write the checkpoint atomically (temp file + rename): a crash leaves the previous one."""
    checkpoint.save(training_state(model, optimizer, rng, run, data), path)


def training_state(
    model: SampledModel, optimizer, rng: np.random.Generator, run: _Progress, data: Dataset
) -> dict[str, Any]:
    """Everything a checkpoint holds: module, optimizer, RNGs, loop bookkeeping, what made it."""
    return {
        "model": model.name,
        "settings": as_dict(model.settings),
        "data_fingerprint": data.fingerprint(),
        "module": model.module.state_dict(),
        "optimizer": optimizer.state_dict(),
        "numpy_rng": rng.bit_generator.state,
        "torch_rng": torch.get_rng_state(),
        "progress": run.__dict__,
    }


def _load(
    path: Path, model: SampledModel, optimizer, rng: np.random.Generator, data: Dataset
) -> _Progress:
    """Restore module, optimizer, RNGs and loop bookkeeping from a checkpoint of the same run."""
    state = checkpoint.load(path, hint="Delete it or drop --resume")
    if not set(state) >= _CHECKPOINT_KEYS or state["model"] != model.name:
        raise CheckpointError(
            f"not a {model.name} training checkpoint",
            where=str(path),
            hint="Delete it or drop --resume",
        )
    if state["data_fingerprint"] != data.fingerprint():
        raise ConfigError(
            "checkpoint was made on other data", where=str(path), hint="Delete it or drop --resume"
        )
    saved = {k: v for k, v in state["settings"].items() if k not in _RESUMABLE_CHANGES}
    if saved != _comparable(model.settings):
        raise ConfigError(
            "checkpoint was made with other settings",
            where=str(path),
            hint="Delete it or drop --resume",
        )
    try:
        return restore_state(state, model, optimizer, rng)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(
            f"damaged training checkpoint ({type(exc).__name__})",
            where=str(path),
            hint="Delete it or drop --resume",
        ) from None


def restore_state(
    state: dict[str, Any], model: SampledModel, optimizer, rng: np.random.Generator
) -> _Progress:
    """Put a `training_state` back: module, optimizer, RNGs; returns the loop bookkeeping."""
    model.module.load_state_dict(state["module"])
    optimizer.load_state_dict(state["optimizer"])
    rng.bit_generator.state = state["numpy_rng"]
    torch.set_rng_state(state["torch_rng"])
    return _Progress(**state["progress"])
