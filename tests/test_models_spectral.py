"""ChebyCF against a dense spectral reference, a planted known answer and its state round trip."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from engine.errors import ConfigError
from engine.evaluate.metrics import full_ranking
from engine.models import Dataset, build, from_state
from engine.models.checkpoint import check_safe, load, save
from engine.models.spectral import cheby_coefficients, plateau, transfer
from tests.test_models_known import planted


def small(seed: int = 0, n_users: int = 30, n_items: int = 18) -> Dataset:
    rng = np.random.default_rng(seed)
    dense = (rng.random((n_users, n_items)) < 0.3).astype(np.float32)
    dense[:, -1] = 0  # an item nobody rated: degree 0 must give 0, not NaN or inf
    return Dataset(n_users, n_items, sp.csr_matrix(dense))


def inv_pow(d: np.ndarray, p: float) -> np.ndarray:
    out = np.zeros_like(d, dtype=np.float64)
    out[d > 0] = d[d > 0] ** -p
    return out


def dense_reference(r: np.ndarray, order: int, phi: float, k: int, alpha: float, beta: float):
    """The filter by eigendecomposition: h(R~^T R~) = Q h(Lambda) Q^T, and an exact SVD."""
    du, di = r.sum(1), r.sum(0)
    rt = inv_pow(du, 0.5)[:, None] * r * inv_pow(di, 0.5)[None, :]
    lam, q = np.linalg.eigh(rt.T @ rt)
    h = q @ np.diag(transfer(cheby_coefficients(order, phi), lam)) @ q.T
    v = np.linalg.svd(rt)[2][:k]
    x = r * inv_pow(di, beta)
    post = np.where(di > 0, di**beta, 0.0)
    return (x @ h + alpha * x @ v.T @ v) * post


def test_coefficients_interpolate_the_plateau() -> None:
    for order, phi in [(8, 1.5), (5, 1.0), (12, 3.0)]:
        c = cheby_coefficients(order, phi)
        nodes = np.cos((order + 1.5 - np.arange(1, order + 2)) / (order + 1) * np.pi)
        assert np.allclose(np.polynomial.chebyshev.chebval(nodes, c), plateau(order, phi))
    # low frequencies (lambda = 1, the top of R~^T R~'s spectrum) pass, high ones are cut
    h = transfer(cheby_coefficients(8, 1.5), np.array([0.0, 0.5, 1.0]))
    assert h[0] == pytest.approx(0.0, abs=0.01) and h[1] == pytest.approx(0.5)
    assert h[2] == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize("tolerance", [0.0, 1e-6])  # the recurrence; the spectral split
@pytest.mark.parametrize("order", [1, 2, 5, 8])
def test_filter_equals_the_dense_spectral_reference(order: int, tolerance: float) -> None:
    data = small()
    settings = {"order": order, "flatness": 1.5, "ideal_k": 12, "ideal_weight": 0.2}
    model = build(
        "chebycf", {**settings, "tolerance": tolerance, "svd_method": "arpack", "num_threads": 1}
    )
    model.fit(data)
    got = model.score(torch.arange(data.n_users)).numpy()
    expected = dense_reference(data.train.toarray().astype(np.float64), order, 1.5, 12, 0.2, 0.4)
    assert np.isfinite(got).all()
    assert np.abs(got[:, -1]).max() == 0.0
    assert np.allclose(got, expected, atol=1e-5), np.abs(got - expected).max()
    if tolerance and order == 8:  # 4 passes over the graph instead of the recurrence's 7
        assert model.plan_summary()["graph_passes"] == 4, model.plan_summary()


def test_batches_inside_score_change_nothing() -> None:
    data = small(1)
    whole = build("chebycf", {"ideal_k": 3, "num_threads": 1, "batch_size": 1000})
    split = build("chebycf", {"ideal_k": 3, "num_threads": 1, "batch_size": 7})
    whole.fit(data)
    split.fit(data)
    users = torch.tensor([5, 0, 29, 5, 11])
    assert torch.allclose(whole.score(users), split.score(users), atol=1e-6)


def test_chebycf_finds_the_planted_item() -> None:
    data = planted()
    model = build("chebycf", {"ideal_k": 8, "num_threads": 1})
    model.fit(data)
    got = full_ranking(model.score, data.train, data.test, ks=(1, 3))
    assert got["n_users"] == data.n_users
    assert got["hit@1"] >= 0.9, got


def test_state_round_trip(tmp_path) -> None:
    data = small(2)
    model = build("chebycf", {"ideal_k": 4, "num_threads": 1})
    model.fit(data)
    state = model.state()
    check_safe(state)  # tensors and plain values only: loadable with weights_only=True
    again = from_state(load(save(state, tmp_path / "chebycf.pt")))
    users = torch.arange(data.n_users)
    assert type(again) is type(model) and again.settings == model.settings
    assert torch.equal(again.score(users), model.score(users))


def test_order_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="order"):
        build("chebycf", {"order": 0}).fit(small())
