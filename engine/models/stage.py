"""Stage "train:<model>": current split -> Dataset -> fit -> evaluate -> write back (DuckDB side)."""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import polars as pl
import scipy.sparse as sp
import torch

from engine import config, db, pipeline
from engine.evaluate.metrics import full_ranking, sample_users
from engine.evaluate.sampled import sampled_ranking
from engine.models import checkpoint, runs, split
from engine.models.base import Dataset, Recommender, build, model_class
from engine.models.data import IdMaps, item_facets, item_groups, side_features, to_dataset
from engine.models.trainer import resolve_device

# Models whose score is the inner product of the embeddings they return: recommend() ranks
# item_embeddings · user_embedding in SQL. Others get a precomputed top-N (`recommendations`).
INNER_PRODUCT_MODELS = {"mf", "lightgcn"}


@dataclass(frozen=True)
class EvalSettings:
    """How runs are evaluated and what is written back ([evaluate] in bookrec.toml)."""

    ks: tuple[int, ...] = (10, 20)
    batch_size: int = 1024
    sampled_negatives: int = 99  # the prototype's protocol: 1 held-out item among 99 unseen
    sampled_k: int = 10
    topn: int = 100  # precomputed recommendations per user for 'topn' models
    # 0 = every user with test (valid) items; N = a seeded sample of N of them (huge catalogues:
    # ranking 600k users over 1.9M books takes hours); recorded in the run's params and n_users
    max_users: int = 0
    device: str = "auto"
    models_dir: Path | None = None  # state files; default: <db dir>/models


@dataclass
class TrainResult:
    """What `train` did: the run written, and the split it used."""

    record: runs.RunRecord
    split: split.SplitInfo
    skipped: bool = False


def scoring_of(model: Recommender) -> str:
    """'embedding' when recommend() may rank by inner products in SQL, else 'topn'."""
    flag = getattr(model, "scores_are_inner_products", None)
    if flag is None:
        flag = model.name in INNER_PRODUCT_MODELS
    return "embedding" if flag and model.user_embeddings() is not None else "topn"


def known(data: Dataset, *parts: str) -> sp.csr_matrix:
    """Sum of the named parts (each may be absent) as one binary CSR."""
    m = data.train.copy()
    for p in parts:
        extra = getattr(data, p)
        if extra is not None:
            m = m + extra
    m = m.tocsr()
    m.data[:] = 1.0
    return m


def evaluate_model(
    model: Recommender, data: Dataset, settings: EvalSettings, seed: int
) -> dict[str, float]:
    """Full ranking on test (train and valid items masked) plus the sampled metric, one dict; with
    a validation part also `valid_<metric>@k` (train masked), which picks the default model."""
    if data.test is None:
        return {}
    device = resolve_device(settings.device)
    mask = known(data, "valid")
    test_users = sample_users(data.test, settings.max_users, seed)
    metrics = full_ranking(
        model.score,
        mask,
        data.test,
        ks=settings.ks,
        batch_size=settings.batch_size,
        device=device,
        users=test_users,
    )
    if data.valid is not None and data.valid.nnz:
        on_valid = full_ranking(
            model.score,
            data.train,
            data.valid,
            ks=settings.ks,
            batch_size=settings.batch_size,
            device=device,
            users=sample_users(data.valid, settings.max_users, seed),
        )
        metrics.update({f"valid_{k}": v for k, v in on_valid.items() if "@" in k})
    metrics.update(
        sampled_ranking(
            model.score,
            data.test,
            known(data, "valid", "test"),
            n_neg=settings.sampled_negatives,
            k=settings.sampled_k,
            seed=seed,
            batch_size=settings.batch_size,
            device=device,
            users=test_users,
        )
    )
    return metrics


def _model_overrides(
    model_name: str, overrides: dict[str, Any], db_path: Path | None
) -> dict[str, Any]:
    """Drop unset flags; give checkpointing models a checkpoint dir next to the DB (so --resume works)."""
    out = {k: v for k, v in overrides.items() if v is not None}
    fields = {f.name for f in dataclasses.fields(model_class(model_name).settings_cls)}
    if "checkpoint_dir" in fields and "checkpoint_dir" not in out and db_path is not None:
        probe = config.load_settings(model_class(model_name).settings_cls, model_name, {})
        if getattr(probe, "checkpoint_dir", None) is None:
            out["checkpoint_dir"] = str(Path(db_path).parent / "checkpoints")
    return out


# Settings that change how a run is executed, not what it computes: left out of the stage fingerprint.
_NOT_FINGERPRINTED = {"progress", "resume", "num_threads", "checkpoint_dir"}


def train(
    con: duckdb.DuckDBPyConnection,
    model_name: str,
    overrides: dict[str, Any] | None = None,
    *,
    split_overrides: dict[str, Any] | None = None,
    eval_overrides: dict[str, Any] | None = None,
    db_path: Path | None = None,
    force: bool = False,
    tuned: bool = False,
    callback=None,
) -> TrainResult:
    """Train `model_name` on the current split (made if missing), evaluate it, write it back as current.

    `tuned`: start from the best settings of the model's latest `bookrec tune` study on the split
    (explicit overrides still win). A no-op (`skipped`) when the model's current run has the same
    settings on the same split.
    """
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    settings = config.load_settings(EvalSettings, "evaluate", eval_overrides or {})
    info = split.ensure(con, split_overrides)
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    tuned_by = None
    if tuned:
        from engine.models import tune

        tuned_by, best = tune.best_params(con, model_name, info.split_id)
        overrides = {**best, **overrides}
    model = build(model_name, _model_overrides(model_name, overrides, db_path))
    stage_name = f"train:{model_name}"
    fingerprinted = {
        k: v for k, v in config.as_dict(model.settings).items() if k not in _NOT_FINGERPRINTED
    }
    side, facet_fields = _side_information(model)
    inputs = {"split": info.fingerprint}
    if side:  # NCF's side features read users.age and the genre facets
        inputs |= {
            "facets": pipeline.upstream(con, "facets"),
            "ingest": pipeline.upstream(con, "ingest"),
        }
    if facet_fields:  # LightGCN's facet nodes read book_facets
        inputs |= {"facets": pipeline.upstream(con, "facets")}
    fp = pipeline.fingerprint(
        {"model": fingerprinted, "evaluate": config.as_dict(settings)}, inputs
    )
    current = runs.current_run(con, model_name)
    if not force and current is not None and pipeline.is_current(con, stage_name, fp):
        return TrainResult(current, info, skipped=True)
    data, maps = dataset_for(con, model, info)
    t_load = time.perf_counter() - t0
    fit = model.fit(data, callback=callback)
    t_fit = time.perf_counter() - t0 - t_load
    seed = int(info.settings.get("seed", 2020))
    metrics = evaluate_model(model, data, settings, seed)
    t_eval = time.perf_counter() - t0 - t_load - t_fit
    params = {
        "model": config.as_dict(model.settings),
        "split": info.settings,
        "evaluate": config.as_dict(settings),
        "best_epoch": fit.best_epoch,
        "tuned_by": tuned_by,  # the tuning study whose best settings this run used
        "selected_by": fit.selected_by,  # "valid" or "none: fixed epochs"; test never selects
    }
    if facet_fields:
        params["facet_nodes"] = len(data.extras["facet_names"])
    if side:
        params["side_features"] = sorted(
            k for k in ("user_features", "item_features") if k in data.extras
        )
    record = runs.RunRecord(
        run_id=runs.new_run_id(model_name),
        model=model_name,
        params=params,
        split_id=info.split_id,
        data_fingerprint=info.fingerprint,
        scoring=scoring_of(model),
        started_at=started,
        finished_at=started,
        metrics=metrics,
        history=fit.history,
    )
    payload = _payload(model, record, data, maps, settings)
    weights = item_weights(model, record, maps)
    record.state_path = _save_state(model, record.run_id, settings, db_path)
    record.finished_at = datetime.now(UTC)
    record.timings = {
        "load_s": t_load,
        "fit_s": t_fit,
        "evaluate_s": t_eval,
        "epochs": len(fit.history),
        "train_s": fit.train_seconds,
        "per_epoch_s": fit.train_seconds / max(len(fit.history), 1),
        "write_prepare_s": time.perf_counter() - t0 - t_load - t_fit - t_eval,
    }
    summary = {"run_id": record.run_id, **{k: v for k, v in metrics.items() if "@20" in k}}

    def bookkeeping(c: duckdb.DuckDBPyConnection) -> None:
        pipeline.record(c, stage_name, fp, params, inputs, summary)
        write_item_weights(c, weights)

    say = getattr(model.settings, "progress", False)
    runs.write_run(
        con,
        record,
        also=bookkeeping,
        progress=(lambda msg: print(f"{model_name}: item {msg}", file=sys.stderr)) if say else None,
        **payload,
    )
    if current is not None and current.state_path and current.state_path != record.state_path:
        Path(current.state_path).unlink(missing_ok=True)  # only current runs are re-evaluated
    return TrainResult(record, info)


@dataclass
class ItemWeights:
    """A run's W for fold-in (engine/foldin.py) as it will be stored: `cut` entries per row
    when the whole W was over foldin.MAX_WEIGHTS (also in the run's params), else None."""

    run_id: str
    w: Any  # scipy CSR
    isbns: Any
    cut: int | None


def item_weights(model: Recommender, record: runs.RunRecord, maps: IdMaps) -> ItemWeights | None:
    """The run's `item_weights` for fold-in, or None for models whose score is not x W
    (embedding models fold in from their item vectors). A W over foldin.MAX_WEIGHTS entries
    keeps each row's largest, and the run's params say how many (`item_weights_per_row`)."""
    from engine import foldin

    w = model.item_item(foldin.TOPK)
    if w is None:
        return None
    w, cut = foldin.capped(w)
    record.params.pop("item_weights_per_row", None)  # a refresh copies its source's params
    if cut is not None:
        record.params["item_weights_per_row"] = cut
    return ItemWeights(record.run_id, w, maps.isbns, cut)


def write_item_weights(con: duckdb.DuckDBPyConnection, weights: ItemWeights | None) -> None:
    """Inside the run's transaction: drop the weights of runs no longer current, add the new
    (in blocks of rows: memory stays bounded at any size)."""
    from engine import foldin

    db.execute(con, "foldin_prune_item_weights")
    if weights is not None:
        for frame in foldin.weight_frames(weights.run_id, weights.w, weights.isbns):
            if frame.height:
                db.append_table(con, "item_weights", frame)


def _side_information(model: Recommender) -> tuple[bool, tuple[str, ...]]:
    """Whether the model reads NCF's side features, and the facet fields of LightGCN's facet nodes."""
    side = bool(getattr(model.settings, "side_features", False))
    facet_fields = (  # LightGCN's facet nodes; MF (no layers) has no graph to put them in
        tuple(getattr(model.settings, "facet_nodes", ()) or ())
        if getattr(model.settings, "layers", 0) > 0
        else ()
    )
    return side, facet_fields


def dataset_for(
    con: duckdb.DuckDBPyConnection,
    model: Recommender,
    info: split.SplitInfo,
    merge: tuple[str, ...] = (),
) -> tuple[Dataset, IdMaps]:
    """The split as a Dataset, with the side information the model's settings ask for; the parts
    in `merge` ('valid', 'test') count as training data (refits; the id maps stay the same)."""
    rows = split.rows(con, info.split_id)
    if merge:
        rows = rows.with_columns(
            part=pl.when(pl.col("part").is_in(list(merge)))
            .then(pl.lit("train"))
            .otherwise(pl.col("part"))
        )
    return dataset_from_rows(con, model, rows)


def dataset_from_rows(
    con: duckdb.DuckDBPyConnection, model: Recommender, rows: pl.DataFrame
) -> tuple[Dataset, IdMaps]:
    """Interactions (user_id, isbn, rating, part) as a Dataset with the model's side information."""
    side, facet_fields = _side_information(model)
    data, maps = to_dataset(rows)
    if side:
        data.extras.update(side_features(con, maps))
    if facet_fields:
        data.extras["item_facets"], data.extras["facet_names"] = item_facets(
            con, maps, facet_fields
        )
    groups = tuple(getattr(model, "group_fields", lambda: ())())
    if groups:
        data.extras["item_groups"] = item_groups(con, maps, groups)
    return data, maps


def _payload(
    model: Recommender, record: runs.RunRecord, data: Dataset, maps: IdMaps, settings: EvalSettings
) -> dict:
    """Embeddings and/or top-N lists to write back, by scoring kind."""
    out: dict[str, Any] = {}
    items = model.item_embeddings()
    if items is not None:
        out["item_embeddings"] = runs.embedding_frame(record.run_id, "isbn", maps.isbns, items)
        record.dim = int(items.shape[1])
    if record.scoring == "embedding":
        out["user_embeddings"] = runs.embedding_frame(
            record.run_id, "user_id", maps.user_ids, model.user_embeddings()
        )
    elif model.name == "popularity":
        scores = model.score(torch.zeros(1, dtype=torch.long))[0].double().numpy()
        out["recommendations"] = runs.global_ranking(scores, maps)
    elif maps.n_users and model.sparse_scores(np.zeros(1, dtype=np.int64)) is not None:
        out["recommendations"] = runs.top_n_sparse(
            model.sparse_scores,
            np.arange(maps.n_users, dtype=np.int64),
            known(data, "valid", "test"),
            maps,
            settings.topn,
        )
    else:
        users = np.arange(maps.n_users, dtype=np.int64)
        out["recommendations"] = runs.top_n(
            model.score,
            users,
            known(data, "valid", "test"),
            maps,
            settings.topn,
            settings.batch_size,
            resolve_device(settings.device),
        )
    return out


def _save_state(
    model: Recommender, run_id: str, settings: EvalSettings, db_path: Path | None
) -> str | None:
    """model.state() beside the DB (engine.models.checkpoint), so `evaluate` can rebuild it later."""
    directory = settings.models_dir or (
        Path(db_path).parent / "models" if db_path is not None else None
    )
    if directory is None:
        return None
    return str(checkpoint.save(model.state(), Path(directory) / f"{run_id}.pt"))
