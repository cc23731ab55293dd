"""Training loop: resumable checkpoints, selection on valid only, state round trips, the registry."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from engine.errors import ConfigError, UnknownEntityError
from engine.evaluate.metrics import full_ranking
from engine.models import Dataset, build, from_state, registered, trainer
from engine.models.trainer import checkpoint_path
from tests.test_models_known import MODELS, planted

FAST = {"progress": False, "num_threads": 1, "batch_size": 128, "dim": 8, "lr": 0.01}


def with_valid(data: Dataset, seed: int = 0) -> Dataset:
    """The planted data with one training item per user moved to a validation part."""
    rng = np.random.default_rng(seed)
    train = data.train.tolil()
    rows, cols = [], []
    for u in range(data.n_users):
        item = int(rng.choice(data.train[u].indices))
        train[u, item] = 0
        rows.append(u)
        cols.append(item)
    valid = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=train.shape)
    return Dataset(data.n_users, data.n_items, train.tocsr(), valid, data.test)


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
    data = with_valid(planted())
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
    assert fit.best_epoch == 1 and fit.selected_by == "valid"
    assert "recall@20" in fit.history[0]["metrics"]
    # resuming a run that stopped early does not train on
    again = build("mf", {**settings, "resume": True}).fit(data)
    assert [h["epoch"] for h in again.history] == [1, 2]


@pytest.mark.parametrize("name", ["mf", "ncf"])
def test_validation_not_test_drives_early_stopping(name: str) -> None:
    """Each evaluation is the validation score of that epoch's model; the kept model is the one
    with the best of them, whatever test says."""
    data = with_valid(planted())
    per_epoch: dict[int, tuple[float, float, torch.Tensor]] = {}

    def look(epoch: int, metrics: dict) -> None:
        model.finalize()
        valid = full_ranking(model.score, data.train, data.valid, ks=(20,))["recall@20"]
        test = full_ranking(model.score, data.train, data.test, ks=(20,))["recall@20"]
        per_epoch[epoch] = (valid, test, model.score(torch.arange(data.n_users)).clone())
        assert metrics["recall@20"] == pytest.approx(valid)

    settings = {**FAST, "epochs": 8, "eval_every": 1, "patience": 2, "lr": 0.05}
    model = build(name, settings)
    fit = model.fit(data, callback=look)
    valid_curve = {e: v for e, (v, _, _) in per_epoch.items()}
    test_curve = {e: t for e, (_, t, _) in per_epoch.items()}
    assert valid_curve != test_curve  # the two parts disagree: the choice below is valid's
    assert fit.selected_by == "valid"
    assert fit.best_epoch == max(valid_curve, key=lambda e: (valid_curve[e], -e))
    assert [h["metrics"]["recall@20"] for h in fit.history] == pytest.approx(
        list(valid_curve.values())
    )
    best_scores = per_epoch[fit.best_epoch][2]
    assert torch.allclose(model.score(torch.arange(data.n_users)), best_scores, atol=1e-6)


def test_without_a_validation_part_no_epoch_is_selected_on_test(monkeypatch) -> None:
    data = planted()  # train and test only

    def never(*_args, **_kwargs):
        raise AssertionError("the trainer evaluated something: there is only test to evaluate on")

    monkeypatch.setattr(trainer, "full_ranking", never)
    settings = {**FAST, "lr": 0.0, "epochs": 4, "eval_every": 1, "patience": 1}
    seen: list[dict] = []
    fit = build("mf", settings).fit(data, callback=lambda e, m: seen.append(m))
    assert [h["epoch"] for h in fit.history] == [1, 2, 3, 4]  # the fixed number, no early stop
    assert fit.best_epoch == 4 and fit.selected_by == "none: fixed epochs"
    assert not any("metrics" in h for h in fit.history)
    assert all(set(m) == {"loss", "seconds"} for m in seen)
    assert data.valid is None and data.eval_split() is None


@pytest.mark.parametrize("name", ["lightgcn", "mf", "ncf"])
@pytest.mark.parametrize(
    "overrides",
    [
        {"eval_metric": "recal@20"},
        {"eval_metric": "recall@10"},  # k not in eval_ks (20,)
        {"eval_metric": "recall@10", "eval_ks": (20, 50)},
        {"eval_metric": "recall"},
        {"eval_metric": "loss"},
    ],
)
def test_a_wrong_eval_metric_is_a_config_error(name: str, overrides: dict) -> None:
    with pytest.raises(ConfigError, match="eval_metric") as err:
        build(name, {**FAST, **overrides})
    assert "\n" not in str(err.value)


def test_eval_metric_names_are_the_ones_full_ranking_reports(monkeypatch) -> None:
    data = planted()
    reported = full_ranking(lambda u: torch.zeros(len(u), data.n_items), data.train, data.test)
    assert {k.split("@")[0] for k in reported if "@" in k} == set(trainer.EVAL_METRICS)
    for metric in trainer.EVAL_METRICS:
        assert build("mf", {"eval_metric": f"{metric}@50", "eval_ks": (20, 50)})
    monkeypatch.setenv("BOOKREC_NCF_EVAL_METRIC", "ndcg@5")
    with pytest.raises(ConfigError, match="eval_ks"):
        build("ncf", {})
    monkeypatch.setenv("BOOKREC_NCF_EVAL_KS", "5,20")
    assert build("ncf", {}).settings.eval_metric == "ndcg@5"


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


@pytest.mark.parametrize("name", ["mf", "lightgcn"])
def test_inner_product_models_score_with_the_embeddings_they_export(name: str) -> None:
    """SQL recommend() ranks item_embeddings . user_embedding for these models: it must be the score."""
    data = planted()
    model = build(name, {**FAST, "epochs": 2, "layers": 2} if name == "lightgcn" else FAST)
    model.fit(data)
    users, items = model.user_embeddings(), model.item_embeddings()
    assert users.shape == (data.n_users, 8) and items.shape == (data.n_items, 8)
    want = model.score(torch.arange(data.n_users)).numpy()
    np.testing.assert_allclose(users @ items.T, want, rtol=1e-5, atol=1e-5)
    if name == "lightgcn":  # propagated, not the raw (ego) table
        assert not np.allclose(users, model.module.embedding.weight[: data.n_users].detach())


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
    """Scores depend on the side features when they are on, and ignore them when off."""
    data = planted()
    users = torch.arange(data.n_users)

    def with_features(user_features: np.ndarray) -> Dataset:
        feats = {"user_features": user_features, "item_features": np.arange(data.n_items) % 2}
        return Dataset(data.n_users, data.n_items, data.train, None, data.test, extras=feats)

    ages = with_features(np.arange(data.n_users) % 3)
    other_ages = with_features((np.arange(data.n_users) + 1) % 3)
    settings = {**FAST, "epochs": 2, "side_features": True}
    model = build("ncf", settings)
    model.fit(ages)
    before = model.score(users)
    # the same weights, user 0's feature swapped for another bucket: only user 0's scores move
    model.module.user_feat[0] = model.module.user_feat[1]
    after = model.score(users)
    assert not torch.allclose(after[0], before[0]) and torch.equal(after[1:], before[1:])
    # training on other feature values (same seed, same interactions) gives another model
    other = build("ncf", settings)
    other.fit(other_ages)
    assert not torch.allclose(other.score(users), before)
    off = [build("ncf", {**settings, "side_features": False}) for _ in range(2)]
    off[0].fit(ages)
    off[1].fit(other_ages)
    assert torch.equal(off[0].score(users), off[1].score(users))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt is Linux-only")
def test_freed_tensor_memory_is_kept_on_glibc() -> None:
    """A freed step-sized buffer stays in the heap: no fresh mmap per step, no trim back to the OS."""
    probe = textwrap.dedent(
        """
        import ctypes, sys, torch
        class Info(ctypes.Structure):
            _fields_ = [(n, ctypes.c_size_t) for n in
                        "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
        libc = ctypes.CDLL("libc.so.6")
        if not hasattr(libc, "mallinfo2"):
            sys.exit(3)
        libc.mallinfo2.restype = Info
        if sys.argv[1] == "keep":
            from engine.models.trainer import keep_freed_memory
            keep_freed_memory()
        size = 20 << 20  # a LightGCN step buffer on Gowalla is ~18 MB
        before = libc.mallinfo2()
        x = torch.empty(size, dtype=torch.uint8)
        x.fill_(1)
        held = libc.mallinfo2()
        del x
        after = libc.mallinfo2()
        fresh_mmap = held.hblkhd - before.hblkhd >= size
        returned = (held.hblkhd - after.hblkhd) + (held.arena - after.arena) >= size
        print(int(fresh_mmap), int(returned))
        """
    )

    def run(mode: str) -> tuple[int, int]:
        out = subprocess.run(
            [sys.executable, "-c", probe, mode], capture_output=True, text=True, check=False
        )
        if out.returncode == 3:
            pytest.skip("glibc without mallinfo2")
        assert out.returncode == 0, out.stderr
        fresh, returned = out.stdout.split()
        return int(fresh), int(returned)

    assert run("default") == (1, 1)  # the control: glibc maps such a buffer and unmaps it
    assert run("keep") == (0, 0)  # from the heap, and still there once freed
