"""Stage "tune": Optuna over a model's declared search space, on the split's validation part.

Each trial builds the model with the trial's settings, fits it on the split's train part and is
judged by full ranking on its valid part (train items masked); the test part is not even loaded
into the data the trials see, so nothing is ever selected on test. Epoch-based models report
their validation metric after each evaluation, so the median pruner stops poor trials early.

Trials are written to DuckDB as they finish (`tuning_runs`, `tuning_trials`): a killed run keeps
what it did, and the next `bookrec tune` of the same model, split, metric and search space
continues the study (seeded TPE restarted with the stored trials). `bookrec train --tuned` reads
the best settings back with `best_params`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import duckdb
import optuna

from engine import config, db
from engine.errors import ConfigError, StageNotReadyError
from engine.evaluate.metrics import full_ranking, sample_users
from engine.models import split
from engine.models.base import Dataset, build, model_class
from engine.models.trainer import resolve_device

METRIC = re.compile(r"(recall|ndcg|precision|hit)@([1-9]\d*)")
# Settings a trial never varies: where and how loudly a run happens, not what it computes.
_QUIET = {"progress": False, "resume": False, "checkpoint_dir": None}


@dataclass(frozen=True)
class TuneSettings:
    """[tune] in bookrec.toml, BOOKREC_TUNE_<FIELD>, or the flags of `bookrec tune`."""

    trials: int = 20  # trials to run now (a continued study adds these to the stored ones)
    timeout: float | None = None  # seconds: no new trial starts after this (a running one ends)
    metric: str = "recall@20"  # on the valid part; recall|ndcg|precision|hit @ k
    seed: int = 2020
    prune: bool = True  # median pruning of epoch-based models on their validation curve
    # finished trials before pruning starts: with 2, a 20-minute LightGCN budget prunes from its
    # third trial (with the old 4, the first four ran every epoch and used up the budget)
    prune_after: int = 2

    def __post_init__(self) -> None:
        if self.trials < 1:
            raise ValueError("trials must be >= 1")
        if self.prune_after < 1:
            raise ValueError("prune_after must be >= 1 finished trial")
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError("timeout must be > 0 seconds")
        if not METRIC.fullmatch(self.metric):
            raise ValueError(
                f"metric {self.metric!r} is not one of recall@K, ndcg@K, precision@K, hit@K"
            )


@dataclass
class TuneResult:
    """What a `tune` call did: the study, its trials so far and the best of them."""

    tune_id: str
    model: str
    metric: str
    split_id: str
    continued: int  # trials already stored before this call
    trials: list[dict[str, Any]]
    best_trial: int | None
    best_value: float | None
    best_params: dict[str, Any]
    importance: dict[str, float]
    seconds: float


# ---------------------------------------------------------------------- search spaces


def search_space(model_name: str) -> dict[str, tuple]:
    """The model's declared space: name -> ("int"|"int_log"|"float"|"log", lo, hi) or
    ("cat", [choices]); ConfigError when the model declares none."""
    space = dict(getattr(model_class(model_name), "search_space", None) or {})
    if not space:
        raise ConfigError(
            f"model {model_name!r} declares no search space, so there is nothing to tune",
            hint="Set its settings in bookrec.toml instead",
        )
    return space


def distributions(space: Mapping[str, tuple]) -> dict[str, optuna.distributions.BaseDistribution]:
    """Optuna distributions of a declared space."""
    out: dict[str, optuna.distributions.BaseDistribution] = {}
    for name, spec in space.items():
        kind, *args = spec
        if kind == "int":
            out[name] = optuna.distributions.IntDistribution(int(args[0]), int(args[1]))
        elif kind == "int_log":
            out[name] = optuna.distributions.IntDistribution(int(args[0]), int(args[1]), log=True)
        elif kind == "float":
            out[name] = optuna.distributions.FloatDistribution(float(args[0]), float(args[1]))
        elif kind == "log":
            out[name] = optuna.distributions.FloatDistribution(
                float(args[0]), float(args[1]), log=True
            )
        elif kind in ("cat", "categorical"):
            out[name] = optuna.distributions.CategoricalDistribution(list(args[0]))
        else:
            raise ValueError(f"search space of {name!r}: unknown kind {kind!r}")
    return out


def space_hash(space: Mapping[str, tuple]) -> str:
    """Short hash of a declared space: a changed space starts a new study."""
    text = json.dumps({k: list(v) for k, v in sorted(space.items())}, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


# ---------------------------------------------------------------------- storage


def latest(
    con: duckdb.DuckDBPyConnection,
    model_name: str,
    split_id: str,
    metric: str | None = None,
    space_key: str | None = None,
) -> dict[str, Any] | None:
    """The latest stored study of a model on a split (optionally for one metric and space)."""
    frame = db.query(
        con,
        "tune_latest",
        {"model": model_name, "split_id": split_id, "metric": metric, "space_hash": space_key},
    )
    return frame.row(0, named=True) if frame.height else None


def stored_trials(con: duckdb.DuckDBPyConnection, tune_id: str) -> list[dict[str, Any]]:
    """A study's trials, oldest first, with params and intermediate values decoded."""
    rows = db.query(con, "tune_trials", {"tune_id": tune_id}).to_dicts()
    for r in rows:
        r["params"] = json.loads(r["params"])
        r["intermediate"] = json.loads(r["intermediate"]) if r["intermediate"] else {}
    return rows


def best_params(
    con: duckdb.DuckDBPyConnection, model_name: str, split_id: str | None = None
) -> tuple[str, dict[str, Any]]:
    """(tune_id, best settings) of the model's latest study on a split (default: the current one),
    for `train --tuned`; StageNotReadyError when there is none."""
    if split_id is None:
        info = split.current(con)
        split_id = info.split_id if info is not None else None
    study = latest(con, model_name, split_id) if split_id is not None else None
    if study is None or not study["best_params"]:
        raise StageNotReadyError(
            f"no tuning of {model_name} on the current split",
            hint=f"Run `bookrec tune --model {model_name}` first",
        )
    return study["tune_id"], json.loads(study["best_params"])


def _record_trial(
    con: duckdb.DuckDBPyConnection, tune_id: str, trial: optuna.trial.FrozenTrial, seconds: float
) -> dict[str, Any]:
    row = {
        "tune_id": tune_id,
        "number": trial.number,
        "state": trial.state.name.lower(),
        "value": trial.value if trial.state == optuna.trial.TrialState.COMPLETE else None,
        "params": json.dumps(trial.params),
        "best_epoch": trial.user_attrs.get("best_epoch"),
        "intermediate": json.dumps({str(k): v for k, v in trial.intermediate_values.items()}),
        "seconds": seconds,
        "finished_at": datetime.now(UTC).replace(tzinfo=None),
    }
    import polars as pl

    with db.transaction(con):
        db.append_table(con, "tuning_trials", pl.DataFrame([row]))
    return {**row, "params": trial.params, "intermediate": trial.intermediate_values}


def _update_study(
    con: duckdb.DuckDBPyConnection,
    tune_id: str,
    trials: list[dict[str, Any]],
    importance: dict[str, float],
) -> tuple[int | None, float | None, dict[str, Any]]:
    done = [t for t in trials if t["state"] == "complete" and t["value"] is not None]
    best = max(done, key=lambda t: (t["value"], -t["number"])) if done else None
    params = best["params"] if best else {}
    with db.transaction(con):
        db.execute(
            con,
            "tune_update",
            {
                "tune_id": tune_id,
                "n_trials": len(trials),
                "best_trial": best["number"] if best else None,
                "best_value": best["value"] if best else None,
                "best_params": json.dumps(params) if best else None,
                "importance": json.dumps(importance) if importance else None,
                "seconds": float(sum(t["seconds"] for t in trials)),
            },
        )
    return (best["number"] if best else None), (best["value"] if best else None), params


# ---------------------------------------------------------------------- the search


def _fixed(model_name: str, metric: str) -> dict[str, Any]:
    """Overrides every trial shares: quiet, no checkpoints, early stopping on the tuned metric."""
    fields = {f.name: f for f in dataclasses.fields(model_class(model_name).settings_cls)}
    out = {k: v for k, v in _QUIET.items() if k in fields}
    if "eval_metric" in fields:
        out["eval_metric"] = metric
        if "eval_ks" in fields:
            k = int(METRIC.fullmatch(metric).group(2))
            out["eval_ks"] = tuple(sorted({k, *fields["eval_ks"].default}))
    return out


def _defaults(
    settings: Any, dists: dict[str, optuna.distributions.BaseDistribution]
) -> dict[str, Any]:
    """The model's current settings as a trial, where every one lies inside its distribution."""
    out = {}
    for p, d in dists.items():
        value = getattr(settings, p, None)
        if value is None or not d._contains(d.to_internal_repr(value)):
            return {}
        out[p] = value
    return out


def _prior_trials(
    rows: list[dict[str, Any]], dists: dict[str, optuna.distributions.BaseDistribution]
) -> list[optuna.trial.FrozenTrial]:
    out = []
    states = {
        "complete": optuna.trial.TrialState.COMPLETE,
        "pruned": optuna.trial.TrialState.PRUNED,
    }
    for r in rows:
        if r["state"] not in states or set(r["params"]) != set(dists):
            continue
        out.append(
            optuna.trial.create_trial(
                params=r["params"],
                distributions=dists,
                value=r["value"] if r["state"] == "complete" else None,
                state=states[r["state"]],
                intermediate_values={int(k): v for k, v in r["intermediate"].items()},
            )
        )
    return out


def _importance(study: optuna.Study) -> dict[str, float]:
    """fANOVA importance of each parameter over the complete trials ({} with too few)."""
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(done) < 4 or len(study.best_trial.params) < 2:
        return {}
    try:
        imp = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0)
        )
    except (RuntimeError, ValueError):  # e.g. every trial scored the same
        return {}
    return {k: float(v) for k, v in imp.items()}


def run(
    con: duckdb.DuckDBPyConnection,
    model_name: str,
    settings: TuneSettings,
    *,
    new: bool = False,
    progress: Callable[[str], None] | None = None,
) -> TuneResult:
    """Run `settings.trials` trials of `model_name` on the current split (made if missing)."""
    from engine.models.stage import EvalSettings, dataset_for

    space = search_space(model_name)
    dists = distributions(space)
    info = split.ensure(con)
    eval_settings = config.load_settings(EvalSettings, "evaluate", {})
    device = resolve_device(eval_settings.device)
    name, k = METRIC.fullmatch(settings.metric).groups()
    fixed = _fixed(model_name, settings.metric)
    probe = build(model_name, fixed)  # bad [model] settings fail here, before any trial
    fidelity = probe.tune_settings()  # e.g. EASE over its most-read items
    if fidelity and progress is not None:
        shown = ", ".join(f"{k_} = {v}" for k_, v in fidelity.items())
        progress(f"every trial runs with {shown} (its [{model_name}] tune settings)")
    fixed = {**fixed, **fidelity}
    # a study continues only at the same fidelity: its values are comparable with each other
    key = space_hash({**space, **{f"fixed {k_}": ("fixed", v) for k_, v in fidelity.items()}})
    data, _ = dataset_for(con, probe, info)
    if data.valid is None or not data.valid.nnz:
        raise ConfigError(
            "the current split has no validation part, and tuning never selects on test",
            hint="Re-split with a validation share: `bookrec split --valid-fraction 0.1 --force`",
        )
    seen = Dataset(data.n_users, data.n_items, data.train, data.valid, None, extras=data.extras)
    valid_users = sample_users(
        data.valid, eval_settings.max_users, int(info.settings.get("seed", 2020))
    )

    study_row = None if new else latest(con, model_name, info.split_id, settings.metric, key)
    if study_row is None:
        tune_id = f"tune-{model_name}-{uuid.uuid4().hex[:8]}"
        with db.transaction(con):
            db.execute(
                con,
                "tune_insert",
                {
                    "tune_id": tune_id,
                    "model": model_name,
                    "split_id": info.split_id,
                    "metric": settings.metric,
                    "space": json.dumps({k_: list(v) for k_, v in space.items()}, default=str),
                    "space_hash": key,
                    "sampler": "tpe",
                    "seed": settings.seed,
                },
            )
        trials: list[dict[str, Any]] = []
    else:
        tune_id = study_row["tune_id"]
        trials = stored_trials(con, tune_id)
    continued = len(trials)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize",
        # a continued study reseeds, or its random start-up trials would repeat the first ones
        sampler=optuna.samplers.TPESampler(seed=settings.seed + continued, multivariate=True),
        pruner=(
            optuna.pruners.MedianPruner(n_startup_trials=settings.prune_after, n_warmup_steps=2)
            if settings.prune
            else optuna.pruners.NopPruner()
        ),
    )
    study.add_trials(_prior_trials(trials, dists))
    if not trials:  # a new study measures the defaults first: tuning never ends below them
        defaults = _defaults(probe.settings, dists)
        if defaults:
            study.enqueue_trial(defaults)
    started: dict[int, float] = {}

    def objective(trial: optuna.Trial) -> float:
        started[trial.number] = time.perf_counter()
        params = {p: _suggest(trial, p, d) for p, d in dists.items()}
        model = build(model_name, {**fixed, **params})

        def report(epoch: int, metrics: dict[str, float]) -> None:
            value = metrics.get(settings.metric)
            if value is None or epoch <= 0:
                return
            trial.report(float(value), epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"{settings.metric} {value:.4f} at epoch {epoch}")

        fit = model.fit(seen, callback=report)
        trial.set_user_attr("best_epoch", fit.best_epoch)
        got = full_ranking(
            model.score,
            seen.train,
            seen.valid,
            ks=(int(k),),
            batch_size=eval_settings.batch_size,
            device=device,
            users=valid_users,
        )
        value = float(got[f"{name}@{k}"])
        if not math.isfinite(value):
            raise ConfigError(f"trial {trial.number} scored {value} on valid")
        return value

    def stored(study_: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        seconds = time.perf_counter() - started.get(trial.number, time.perf_counter())
        trials.append(_record_trial(con, tune_id, trial, seconds))
        best, value, _ = _update_study(con, tune_id, trials, {})
        if progress is not None:
            if trial.state == optuna.trial.TrialState.PRUNED and trial.intermediate_values:
                step = max(trial.intermediate_values)
                shown = f"pruned at epoch {step} ({trial.intermediate_values[step]:.4f})"
            else:
                shown = (
                    f"{trial.value:.4f}" if trial.value is not None else trial.state.name.lower()
                )
            params = ", ".join(f"{p}={_short(v)}" for p, v in trial.params.items())
            progress(
                f"trial {trial.number}: {settings.metric} {shown} ({seconds:.1f} s; {params}); "
                f"best {value:.4f} (trial {best})"
                if value is not None
                else f"trial {trial.number}: {shown}"
            )

    study.optimize(
        objective,
        n_trials=settings.trials,
        timeout=settings.timeout,
        callbacks=[stored],
        gc_after_trial=True,
    )
    importance = _importance(study)
    best, value, params = _update_study(con, tune_id, trials, importance)
    return TuneResult(
        tune_id=tune_id,
        model=model_name,
        metric=settings.metric,
        split_id=info.split_id,
        continued=continued,
        trials=trials,
        best_trial=best,
        best_value=value,
        best_params=params,
        importance=importance,
        seconds=float(sum(t["seconds"] for t in trials)),
    )


def _suggest(trial: optuna.Trial, name: str, d: optuna.distributions.BaseDistribution) -> Any:
    if isinstance(d, optuna.distributions.IntDistribution):
        return trial.suggest_int(name, d.low, d.high, log=d.log)
    if isinstance(d, optuna.distributions.FloatDistribution):
        return trial.suggest_float(name, d.low, d.high, log=d.log)
    return trial.suggest_categorical(name, d.choices)


def _short(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
