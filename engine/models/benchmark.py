"""Benchmarks on LightGCN-format data (train.txt/test.txt): any model, full ranking, timings."""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from engine.config import as_dict
from engine.data import lightgcn_txt
from engine.evaluate.metrics import full_ranking
from engine.models.base import build
from engine.models.trainer import resolve_device, set_threads

TRAINED = {"lightgcn", "mf", "ncf"}


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far, in GB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def run(
    train: Path,
    test: Path,
    model_name: str = "lightgcn",
    overrides: dict[str, Any] | None = None,
    on_eval: Callable[[dict[str, Any]], None] | None = None,
    ks: tuple[int, ...] = (20,),
) -> dict[str, Any]:
    """Load, fit and evaluate on the test file (every eval_every epochs for trained models).

    The per-epoch test curve is the published protocol's report, computed here after each epoch:
    the data has no validation part, so the trainer selects nothing and the model kept is the
    last epoch's (`selected_by` in the result), whatever the curve says.
    """
    t0 = time.perf_counter()
    data = lightgcn_txt.load(train, test)
    load_seconds = time.perf_counter() - t0
    overrides = dict(overrides or {})
    if model_name in TRAINED:
        overrides = {"eval_every": 1, **overrides}
    model = build(model_name, overrides)
    history: list[dict[str, Any]] = []

    def record(epoch: int, metrics: dict[str, float]) -> None:
        s = model.settings
        if model_name not in TRAINED or (epoch % s.eval_every and epoch != s.epochs):
            return
        t1 = time.perf_counter()
        model.finalize()  # scoring cache only; the next epoch trains on as if nothing happened
        curve = full_ranking(
            model.score,
            data.train,
            data.test,
            ks=ks,
            batch_size=s.eval_batch_size,
            device=resolve_device(s.device),
        )
        entry = {"epoch": epoch, **curve, "loss": metrics["loss"], "seconds": metrics["seconds"]}
        entry["eval_seconds"] = time.perf_counter() - t1
        history.append(entry)
        if on_eval is not None:
            on_eval(entry)

    fit = model.fit(data, callback=record)
    if model_name not in TRAINED:  # training-free: one evaluation after fitting
        set_threads(model.settings.num_threads)
        t1 = time.perf_counter()
        metrics = full_ranking(
            model.score, data.train, data.test, ks=ks, device=resolve_device(model.settings.device)
        )
        entry = {
            "epoch": 0,
            **metrics,
            "seconds": fit.train_seconds,
            "eval_seconds": time.perf_counter() - t1,
        }
        history.append(entry)
        if on_eval is not None:
            on_eval(entry)
    return {
        "model": model_name,
        "settings": as_dict(model.settings),
        "data": {
            "train": str(train),
            "test": str(test),
            "n_users": data.n_users,
            "n_items": data.n_items,
            "n_train": int(data.train.nnz),
            "n_test": int(data.test.nnz),
        },
        "torch_threads": torch.get_num_threads(),
        "load_seconds": load_seconds,
        "fit_seconds": fit.train_seconds,
        "selected_by": fit.selected_by,
        "best_epoch": fit.best_epoch,
        "history": history,
        "final": history[-1] if history else {},
        "total_seconds": time.perf_counter() - t0,
        "peak_rss_gb": peak_rss_gb(),
    }
