"""`bookrec train --final`: select and judge on the split, then serve from all the data.

1. The model is trained on the split's train part as `bookrec train` does (settings and, for
   epoch-based models, the epoch chosen on the valid part); that run's test metrics are the
   model's figures.
2. The standard second protocol: the same settings refitted on train + valid, judged once on
   test (`refit_<metric>@k`): what the chosen settings reach with the validation data back.
3. The same settings refitted on every interaction of the split (train + valid + test), with the
   epoch count fixed to the one chosen on valid. That run becomes the model's current run and
   serves the dashboard, the SQL macros and recommendations; it carries the metrics of step 1
   and 2 (a model judged on data it was trained on would say nothing) and says so in its params
   (`protocol = "final"`, `metrics_from` = the split-trained run).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from engine import config, db, pipeline
from engine.errors import StageNotReadyError
from engine.evaluate.metrics import full_ranking, sample_users
from engine.models import runs, stage
from engine.models.base import build
from engine.models.trainer import resolve_device

PROTOCOL = "final"
BEST = "best"  # `train --model best --final`: the current default model, as it was trained


@dataclass
class FinalResult:
    """The split-trained run that judged the settings, and the all-data run now serving."""

    selection: stage.TrainResult
    record: runs.RunRecord
    refit_metrics: dict[str, float]
    skipped: bool = False


def _fixed_settings(model_name: str, selection: runs.RunRecord) -> dict[str, Any]:
    """The selection run's settings, with its chosen epoch as a fixed epoch count."""
    fields = {f.name for f in dataclasses.fields(build(model_name).settings_cls)}
    out = {k: v for k, v in selection.params["model"].items() if k in fields}
    best = int(selection.params.get("best_epoch") or 0)
    if "epochs" in fields and best > 0:
        out["epochs"] = best
    for key, quiet in (("resume", False), ("checkpoint_dir", None)):
        if key in fields:
            out[key] = quiet
    return out


def train_final(
    con: duckdb.DuckDBPyConnection,
    model_name: str,
    overrides: dict[str, Any] | None = None,
    *,
    split_overrides: dict[str, Any] | None = None,
    eval_overrides: dict[str, Any] | None = None,
    db_path: Path | None = None,
    force: bool = False,
    tuned: bool = False,
) -> FinalResult:
    """Train on the split (or reuse that run), refit on train+valid (judged on test) and on all
    data; the all-data run becomes the model's current run. `model_name = "best"`: the current
    default model (best on validation) with the settings its current run was trained with."""
    if model_name == BEST:
        model_name, settings_used = best_model(con)
        overrides = {
            **settings_used,
            **{k: v for k, v in (overrides or {}).items() if v is not None},
        }
        tuned = False  # the run's own settings already include any tuning
    selection = stage.train(
        con,
        model_name,
        overrides,
        split_overrides=split_overrides,
        eval_overrides=eval_overrides,
        db_path=db_path,
        force=force,
        tuned=tuned,
    )
    chosen = selection.record
    if chosen.params.get("protocol") == PROTOCOL:  # `train` found the final run up to date
        return FinalResult(selection, chosen, _refit_part(chosen.metrics), skipped=True)
    settings = config.load_settings(stage.EvalSettings, "evaluate", eval_overrides or {})
    fixed = _fixed_settings(model_name, chosen)
    stage_name = f"final:{model_name}"
    fp = pipeline.fingerprint({"model": fixed}, {"selection": chosen.run_id})
    info = selection.split
    started = datetime.now(UTC)
    t0 = time.perf_counter()

    refit = build(model_name, fixed)
    with_valid, _ = stage.dataset_for(con, refit, info, merge=("valid",))
    refit.fit(with_valid)
    refit_metrics = {
        f"refit_{k}": v
        for k, v in full_ranking(
            refit.score,
            with_valid.train,
            with_valid.test,
            ks=settings.ks,
            batch_size=settings.batch_size,
            device=resolve_device(settings.device),
            users=sample_users(
                with_valid.test, settings.max_users, int(info.settings.get("seed", 2020))
            ),
        ).items()
        if "@" in k
    }
    t_refit = time.perf_counter() - t0
    del refit, with_valid

    model = build(model_name, fixed)
    everything, maps = stage.dataset_for(con, model, info, merge=("valid", "test"))
    fit = model.fit(everything)
    t_fit = time.perf_counter() - t0 - t_refit
    metrics = {**chosen.metrics, **refit_metrics}
    record = runs.RunRecord(
        run_id=runs.new_run_id(model_name),
        model=model_name,
        params={
            **chosen.params,
            "model": config.as_dict(model.settings),
            "selection_model": chosen.params["model"],  # the settings the split run used
            "protocol": PROTOCOL,
            "metrics_from": chosen.run_id,  # test metrics of the split-trained run
            "trained_on": "train+valid+test",
            "best_epoch": fit.best_epoch,
            "selected_by": f"run {chosen.run_id} ({chosen.params.get('selected_by')})",
        },
        split_id=chosen.split_id,
        data_fingerprint=chosen.data_fingerprint,
        scoring=stage.scoring_of(model),
        started_at=started,
        finished_at=started,
        metrics=metrics,
        history=fit.history,
    )
    payload = stage._payload(model, record, everything, maps, settings)
    record.state_path = stage._save_state(model, record.run_id, settings, db_path)
    record.finished_at = datetime.now(UTC)
    record.timings = {
        "refit_valid_s": t_refit,
        "fit_s": t_fit,
        "epochs": len(fit.history),
        "selection_fit_s": chosen.timings.get("fit_s"),
    }
    runs.set_metrics(con, chosen.run_id, metrics)  # the split run also shows the refit figures

    def bookkeeping(c: duckdb.DuckDBPyConnection) -> None:
        pipeline.record(c, stage_name, fp, record.params, {"selection": chosen.run_id}, {})

    say = getattr(model.settings, "progress", False)
    runs.write_run(
        con,
        record,
        also=bookkeeping,
        progress=(lambda msg: print(f"{model_name}: item {msg}", file=sys.stderr)) if say else None,
        **payload,
    )
    if chosen.state_path:  # only current runs are re-evaluated
        Path(chosen.state_path).unlink(missing_ok=True)
    return FinalResult(selection, record, refit_metrics)


def best_model(con: duckdb.DuckDBPyConnection) -> tuple[str, dict[str, Any]]:
    """The default model (default_model_run: best on validation) and its run's split settings."""
    row = db.query(con, "default_run")
    if row.is_empty():
        raise StageNotReadyError(
            "no trained models yet", hint="Run `bookrec train --model itemknn` (or any model) first"
        )
    run = runs.current_run(con, row["model"][0])
    return run.model, dict(run.params.get("selection_model") or run.params["model"])


def _refit_part(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if k.startswith("refit_")}
