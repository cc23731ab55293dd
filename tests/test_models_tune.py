"""`bookrec tune`: trials judged on valid only, stored in DuckDB, resumable, pruned, then used."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pytest
import torch

from engine import db
from engine.errors import ConfigError, StageNotReadyError
from engine.evaluate.metrics import full_ranking
from engine.models import base, split, tune
from engine.models.base import Dataset, FitResult, Recommender
from engine.models.data import to_dataset


@dataclass(frozen=True)
class SpySettings:
    """`weight` mixes a planted-block signal with noise: 1.0 is perfect, 0.0 is noise."""

    weight: float = 0.5
    epochs: int = 1
    decline: bool = False  # epoch-based: the reported curve falls after epoch 1
    seed: int = 0


SEEN: list[Dataset] = []


class Spy(Recommender):
    """A test model: remembers every Dataset it was fitted on, scores = weight * co-read + noise."""

    name = "spy"
    settings_cls = SpySettings
    search_space: ClassVar[dict[str, tuple]] = {"weight": ("float", 0.0, 1.0)}

    def fit(self, data: Dataset, settings: Any = None, *, callback=None) -> FitResult:
        SEEN.append(data)
        x = data.train.astype(np.float32)
        self.scores = (x @ (x.T @ x)).toarray() * self.settings.weight
        rng = np.random.default_rng(self.settings.seed)
        self.scores += (
            (1 - self.settings.weight) * rng.random(self.scores.shape) * self.scores.max()
        )
        for epoch in range(1, self.settings.epochs + 1):
            if callback is not None:
                value = (
                    self.settings.weight / epoch if self.settings.decline else self.settings.weight
                )
                callback(epoch, {"recall@20": value})
        return FitResult(best_epoch=self.settings.epochs)

    def score(self, users: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.scores[users.numpy()])

    def state(self) -> dict[str, Any]:
        return {"model": self.name}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Spy:
        return cls()


@pytest.fixture()
def spy(monkeypatch):
    monkeypatch.setitem(base._REGISTRY, "spy", Spy)
    SEEN.clear()
    yield Spy
    SEEN.clear()


def test_trials_see_no_test_part_and_score_on_valid(planted_db, spy):
    con, _ = planted_db
    result = tune.run(con, "spy", tune.TuneSettings(trials=5, seed=1))
    assert len(SEEN) == 5  # one fit per trial
    assert all(d.test is None and d.valid is not None and d.valid.nnz for d in SEEN)
    info = split.current(con)
    data, _ = to_dataset(split.rows(con, info.split_id))
    best = max((t for t in result.trials if t["value"] is not None), key=lambda t: t["value"])
    model = Spy(SpySettings(weight=best["params"]["weight"]))
    model.fit(data)
    want = full_ranking(model.score, data.train, data.valid, ks=(20,))["recall@20"]
    assert result.best_value == pytest.approx(want)  # the value is recall@20 on valid
    on_test = full_ranking(model.score, data.train + data.valid, data.test, ks=(20,))["recall@20"]
    assert result.best_value != pytest.approx(on_test)
    assert result.best_params == best["params"]


def test_trials_are_stored_and_a_second_run_continues_the_study(planted_db, spy):
    con, _ = planted_db
    first = tune.run(con, "spy", tune.TuneSettings(trials=3))
    again = tune.run(con, "spy", tune.TuneSettings(trials=2))
    assert again.tune_id == first.tune_id and again.continued == 3
    stored = tune.stored_trials(con, first.tune_id)
    assert [t["number"] for t in stored] == [0, 1, 2, 3, 4]
    assert len({t["params"]["weight"] for t in stored}) == 5  # the restart did not repeat trials
    row = db.fetch(
        con,
        "SELECT n_trials, best_value, best_params::VARCHAR FROM tuning_runs WHERE tune_id = $t",
        {"t": first.tune_id},
    ).row(0)
    assert row[0] == 5 and row[1] == max(t["value"] for t in stored)
    assert (first.tune_id, json.loads(row[2])) == tune.best_params(con, "spy")
    fresh = tune.run(con, "spy", tune.TuneSettings(trials=1), new=True)
    assert fresh.tune_id != first.tune_id and fresh.continued == 0


def test_a_new_study_measures_the_defaults_first(planted_db, spy):
    """Trial 0 is the model's own settings, so the tuned best is never below the defaults."""
    con, _ = planted_db
    result = tune.run(con, "spy", tune.TuneSettings(trials=3, seed=4))
    assert result.trials[0]["params"] == {"weight": SpySettings().weight}
    assert result.best_value >= result.trials[0]["value"]
    again = tune.run(con, "spy", tune.TuneSettings(trials=1))  # a continued study: no repeat
    assert again.trials[-1]["params"] != {"weight": SpySettings().weight}


def test_epoch_models_are_pruned_on_their_validation_curve(planted_db, spy, monkeypatch):
    con, _ = planted_db
    monkeypatch.setenv("BOOKREC_SPY_EPOCHS", "6")
    monkeypatch.setenv("BOOKREC_SPY_DECLINE", "true")
    result = tune.run(con, "spy", tune.TuneSettings(trials=12, seed=3))
    states = [t["state"] for t in result.trials]
    assert "pruned" in states and "complete" in states
    pruned = [t for t in result.trials if t["state"] == "pruned"]
    assert all(t["value"] is None and t["intermediate"] for t in pruned)


def test_pruning_starts_after_prune_after_finished_trials(planted_db, spy, monkeypatch):
    """A short budget prunes from the third trial on (prune_after = 2), never before it."""
    con, _ = planted_db
    monkeypatch.setenv("BOOKREC_SPY_EPOCHS", "6")  # flat curves: a trial's value at every epoch
    lines: list[str] = []
    early = tune.run(
        con,
        "spy",
        tune.TuneSettings(trials=6, seed=3, prune_after=2),
        new=True,
        progress=lines.append,
    )
    states = [t["state"] for t in early.trials]
    assert states[:2] == ["complete", "complete"] and "pruned" in states[2:4]
    cut = states.index("pruned")
    assert f"trial {cut}: recall@20 pruned at epoch " in lines[cut]  # said so, not a value
    late = tune.run(con, "spy", tune.TuneSettings(trials=6, seed=3, prune_after=4), new=True)
    assert [t["state"] for t in late.trials][:4] == ["complete"] * 4
    with pytest.raises(ValueError, match="prune_after"):
        tune.TuneSettings(prune_after=0)


def test_refusals_are_clear(planted_db, spy):
    con, _ = planted_db
    with pytest.raises(StageNotReadyError, match="no tuning of spy"):
        tune.best_params(con, "spy")
    split.run(con, split.SplitSettings(valid_fraction=0.0), force=True)
    with pytest.raises(ConfigError, match="no validation part"):
        tune.run(con, "spy", tune.TuneSettings(trials=1))
    with pytest.raises(ConfigError, match="no search space"):
        tune.run(con, "popularity", tune.TuneSettings(trials=1))
    with pytest.raises(ValueError, match="not one of"):
        tune.TuneSettings(metric="recal@20")


def test_declared_spaces_become_optuna_distributions():
    import optuna

    dists = tune.distributions(
        {
            "a": ("int", 1, 9),
            "b": ("log", 0.1, 10.0),
            "c": ("cat", [True, False]),
            "d": ("int_log", 1, 512),
            "e": ("float", 0.0, 1.0),
        }  # fmt: skip
    )
    assert dists["a"] == optuna.distributions.IntDistribution(1, 9)
    assert dists["b"].log and dists["d"].log and not dists["e"].log
    assert dists["c"].choices == (True, False)
    with pytest.raises(ValueError, match="unknown kind"):
        tune.distributions({"x": ("gauss", 0, 1)})


def test_train_tuned_uses_the_best_settings_and_says_so(planted_db, spy, capsys):
    """The CLI round trip on a real model: tune, then `train --tuned` trains with the best trial's
    settings (explicit flags still win) and the run records which study it came from."""
    from engine.cli import main

    con, path = planted_db
    result = tune.run(con, "spy", tune.TuneSettings(trials=4))
    from engine.models import stage

    run = stage.train(con, "spy", {}, db_path=path, tuned=True).record
    assert run.params["tuned_by"] == result.tune_id
    assert run.params["model"]["weight"] == result.best_params["weight"]
    run = stage.train(con, "spy", {"weight": 0.25}, db_path=path, tuned=True).record
    assert run.params["model"]["weight"] == 0.25
    con.close()
    assert main(["train", "--model", "popularity", "--tuned", "--db", str(path)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no tuning of popularity" in err[0]


def test_ease_trials_run_over_its_most_read_items_and_train_over_all(planted_db, monkeypatch):
    """EASE's tuning fidelity: every trial fits over `tune_items` most-read items (its dense
    inverse is n^3), `train --tuned` then fits every item with the chosen reg, and a study at
    another fidelity is a new study."""
    from engine.models import ease, stage

    con, path = planted_db
    seen: list[int] = []
    fit = ease.EASE.fit

    def spy_fit(self, data, settings=None, **kw):
        out = fit(self, data, settings, **kw)
        seen.append(self.settings.top_items)
        return out

    monkeypatch.setattr(ease.EASE, "fit", spy_fit)
    monkeypatch.setenv("BOOKREC_EASE_TUNE_ITEMS", "10")
    lines: list[str] = []
    result = tune.run(con, "ease", tune.TuneSettings(trials=3), progress=lines.append)
    assert seen == [10, 10, 10] and set(result.best_params) == {"reg"}
    assert "every trial runs with top_items = 10" in lines[0]
    seen.clear()
    run = stage.train(con, "ease", {}, db_path=path, tuned=True).record
    assert seen == [0] and run.params["model"]["reg"] == result.best_params["reg"]
    monkeypatch.setenv("BOOKREC_EASE_TUNE_ITEMS", "0")  # every item: not the same study
    again = tune.run(con, "ease", tune.TuneSettings(trials=1))
    assert again.continued == 0 and again.tune_id != result.tune_id and seen[-1] == 0
    assert ease.EASE(ease.EASESettings(top_items=5, tune_items=10)).tune_settings() == {}
