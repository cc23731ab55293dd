"""Training loop: resumable checkpoints, early stopping, state round trips, the registry."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from engine.errors import ConfigError, UnknownEntityError
from engine.evaluate.metrics import full_ranking
from engine.models import build, from_state, registered
from engine.models.trainer import checkpoint_path
from tests.test_models_known import MODELS, planted

FAST = {"progress": False, "num_threads": 1, "batch_size": 128, "dim": 8, "lr": 0.01}


class Stop(Exception):
    pass


@pytest.mark.parametrize("name", ["lightgcn", "ncf"])
def test_resume_reaches_the_uninterrupted_result(name: str, tmp_path) -> None:
    data = planted()
    settings = {**FAST, "epochs": 4, "eval_every": 1, "patience": 0}
    whole = build(name, {**settings, "checkpoint_dir": str(tmp_path / "a")})
    whole_fit = whole.fit(data)

    def crash(epoch: int, _metrics: dict) -> None:
        if epoch == 2:
            raise Stop

    first = build(name, {**settings, "checkpoint_dir": str(tmp_path / "b")})
    with pytest.raises(Stop):
        first.fit(data, callback=crash)
    assert checkpoint_path(first, data).exists()
    resumed = build(name, {**settings, "checkpoint_dir": str(tmp_path / "b"), "resume": True})
    seen = []
    resumed_fit = resumed.fit(data, callback=lambda e, m: seen.append(e))

    assert seen == [3, 4]  # continued, did not start over
    assert [h["epoch"] for h in resumed_fit.history] == [1, 2, 3, 4]
    assert [h["loss"] for h in resumed_fit.history] == pytest.approx(
        [h["loss"] for h in whole_fit.history], abs=1e-6
    )
    users = torch.arange(data.n_users)
    assert torch.allclose(resumed.score(users), whole.score(users), atol=1e-5)


def test_resume_refuses_a_checkpoint_of_other_data(tmp_path) -> None:
    settings = {**FAST, "epochs": 1, "checkpoint_dir": str(tmp_path)}
    model = build("mf", settings)
    model.fit(planted(seed=0))
    path = checkpoint_path(model, planted(seed=0))
    other = planted(seed=1)
    path.rename(checkpoint_path(model, other))  # same file name, but made on other data
    with pytest.raises(ConfigError, match="other data"):
        build("mf", {**settings, "resume": True}).fit(other)


def test_early_stopping_keeps_the_best_epoch(tmp_path) -> None:
    data = planted()
    # lr 0: nothing changes after the first evaluation, so patience 1 stops at the second.
    settings = {
        **FAST,
        "lr": 0.0,
        "epochs": 10,
        "eval_every": 1,
        "patience": 1,
        "checkpoint_dir": str(tmp_path),
    }
    fit = build("mf", settings).fit(data)
    assert [h["epoch"] for h in fit.history] == [1, 2]
    assert fit.best_epoch == 1
    assert "recall@20" in fit.history[0]["metrics"]
    # resuming a run that stopped early does not train on
    again = build("mf", {**settings, "resume": True}).fit(data)
    assert [h["epoch"] for h in again.history] == [1, 2]


def test_training_is_seeded() -> None:
    data = planted()
    a, b = (build("lightgcn", {**FAST, "epochs": 2}) for _ in range(2))
    a.fit(data)
    b.fit(data)
    assert np.array_equal(a.user_embeddings(), b.user_embeddings())
    c = build("lightgcn", {**FAST, "epochs": 2, "seed": 7})
    c.fit(data)
    assert not np.array_equal(a.user_embeddings(), c.user_embeddings())


@pytest.mark.parametrize("name", ["mf", "lightgcn", "ncf", "gfcf", "ease"])
def test_state_round_trip(name: str) -> None:
    data = planted()
    model = build(name, {**MODELS[name], "epochs": 2} if "epochs" in MODELS[name] else MODELS[name])
    model.fit(data)
    state = model.state()
    assert state["model"] == name
    again = from_state(state)
    users = torch.arange(data.n_users)
    assert torch.allclose(again.score(users), model.score(users), atol=1e-5)
    assert full_ranking(again.score, data.train, data.test) == full_ranking(
        model.score, data.train, data.test
    )


def test_embeddings_shapes() -> None:
    data = planted()
    model = build("lightgcn", {**FAST, "epochs": 1})
    model.fit(data)
    assert model.user_embeddings().shape == (data.n_users, 8)
    assert model.item_embeddings().shape == (data.n_items, 8)


def test_registry_and_settings_sources(monkeypatch) -> None:
    assert {"mf", "lightgcn", "ncf", "gfcf", "ease"} <= set(registered())
    with pytest.raises(UnknownEntityError):
        build("nope", {})
    monkeypatch.setenv("BOOKREC_LIGHTGCN_LAYERS", "2")
    assert build("lightgcn", {}).settings.layers == 2
    assert build("lightgcn", {"layers": 4}).settings.layers == 4
    assert build("mf", {}).settings.layers == 0
    with pytest.raises(ConfigError):
        build("lightgcn", {"no_such_setting": 1})


def test_ncf_side_features_are_used() -> None:
    data = planted()
    feats = {
        "user_features": np.arange(data.n_users) % 3,
        "item_features": -np.ones(data.n_items, dtype=int),
    }
    rich = type(data)(data.n_users, data.n_items, data.train, None, data.test, extras=feats)
    model = build("ncf", {**FAST, "epochs": 1, "side_features": True})
    model.fit(rich)
    assert model.module.user_side.num_embeddings == 4 and model.module.item_side.num_embeddings == 1
    off = build("ncf", {**FAST, "epochs": 1, "side_features": False})
    off.fit(rich)
    assert off.module.user_side is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt is Linux-only")
def test_freed_tensor_memory_is_kept_on_glibc() -> None:
    from engine.models.trainer import keep_freed_memory

    assert keep_freed_memory() is True  # mallopt accepted both thresholds
