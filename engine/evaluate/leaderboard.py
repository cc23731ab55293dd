"""`bookrec evaluate`: every current run judged on the current split, metrics written back to model_runs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import polars as pl
import torch

from engine import config
from engine.errors import StageNotReadyError, UnknownEntityError
from engine.models import checkpoint, runs, split
from engine.models.base import from_state, inner_products
from engine.models.data import IdMaps, to_dataset
from engine.models.stage import EvalSettings, evaluate_model


@dataclass
class Entry:
    """One leaderboard row: the run, its metrics and how they were obtained."""

    model: str
    run_id: str
    split_id: str | None
    metrics: dict[str, float]
    status: str  # 'evaluated' | 'stored (...)' | 'other split (...)'
    fit_s: float | None


class _EmbeddingScorer:
    """Scores from the embeddings stored in DuckDB (runs whose state file is gone)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, run_id: str, maps: IdMaps):
        users, u = runs.read_embeddings(con, run_id, "user")
        isbns, v = runs.read_embeddings(con, run_id, "item")
        self.users = torch.zeros((maps.n_users, u.shape[1]))
        self.items = torch.zeros((maps.n_items, v.shape[1]))
        ui, ii = maps.user_index(users), maps.item_index(isbns)
        self.users[torch.from_numpy(ui[ui >= 0])] = torch.from_numpy(u[ui >= 0])
        self.items[torch.from_numpy(ii[ii >= 0])] = torch.from_numpy(v[ii >= 0])

    def score(self, users: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        return inner_products(self.users[users.cpu()], self.items, out)


def _scorer(con: duckdb.DuckDBPyConnection, run: dict[str, Any], maps: IdMaps):
    path = run.get("state_path")
    if path and Path(path).exists():
        retrain = f"Retrain it: bookrec train --model {run.get('model', 'M')} --force"
        return from_state(checkpoint.load(path, hint=retrain))
    if run["scoring"] == "embedding":
        return _EmbeddingScorer(con, run["run_id"], maps)
    return None


def evaluate(
    con: duckdb.DuckDBPyConnection,
    models: list[str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> list[Entry]:
    """Re-evaluate the current run of each model (all when `models` is None) on the current split."""
    info = split.current(con)
    if info is None:
        raise StageNotReadyError(
            "no split yet", hint="Run `bookrec split` and `bookrec train --model M` first"
        )
    current = runs.current_runs(con)
    if models:
        missing = sorted(set(models) - set(current["model"].to_list()))
        if missing:
            raise UnknownEntityError(
                f"no current run for model {', '.join(missing)}",
                hint=f"Train it first: bookrec train --model {missing[0]}",
            )
        current = current.filter(pl.col("model").is_in(models))
    if current.is_empty():
        raise StageNotReadyError(
            "no trained models yet",
            hint="Run `bookrec train --model lightgcn` (or popularity, mf, ...)",
        )
    settings = config.load_settings(EvalSettings, "evaluate", overrides or {})
    data, maps = to_dataset(split.rows(con, info.split_id))
    seed = int(info.settings.get("seed", 2020))
    entries = []
    for run in current.iter_rows(named=True):
        stored = json.loads(run["metrics"]) if run["metrics"] else {}
        fit_s = (json.loads(run["timings"]) if run["timings"] else {}).get("fit_s")
        if run["split_id"] != info.split_id:
            entries.append(
                Entry(
                    run["model"],
                    run["run_id"],
                    run["split_id"],
                    stored,
                    "other split: retrain to compare",
                    fit_s,
                )
            )
            continue
        params = json.loads(run["params"]) if run.get("params") else {}
        protocol = params.get("protocol")
        if protocol in ("final", "refresh"):  # trained on test too: its figures are its
            what = {  # split-trained run's, never a re-evaluation on seen data
                "final": "final: refit on all data",
                "refresh": f"refresh of run {params.get('refreshed_from')}",
            }[protocol]
            entries.append(
                Entry(
                    run["model"],
                    run["run_id"],
                    run["split_id"],
                    stored,
                    f"{what}; metrics of run {params.get('metrics_from')}",
                    fit_s,
                )
            )
            continue
        scorer = _scorer(con, run, maps)
        if scorer is None:
            entries.append(
                Entry(
                    run["model"],
                    run["run_id"],
                    run["split_id"],
                    stored,
                    "stored (state file missing)",
                    fit_s,
                )
            )
            continue
        metrics = evaluate_model(scorer, data, settings, seed)
        runs.set_metrics(con, run["run_id"], metrics)
        entries.append(
            Entry(run["model"], run["run_id"], run["split_id"], metrics, "evaluated", fit_s)
        )
    return sorted(
        entries,
        key=lambda e: (
            e.status != "evaluated" and not e.status.startswith("final"),
            -e.metrics.get("recall@20", -1.0),
        ),
    )


def as_frame(entries: list[Entry]) -> pl.DataFrame:
    """The leaderboard as a flat frame (one row per run, metrics as columns)."""
    keys = sorted({k for e in entries for k in e.metrics if isinstance(e.metrics[k], int | float)})
    return pl.DataFrame(
        [
            {
                "model": e.model,
                "run_id": e.run_id,
                "status": e.status,
                "fit_s": e.fit_s,
                **{k: float(e.metrics.get(k, np.nan)) for k in keys},
            }
            for e in entries
        ]
    )
