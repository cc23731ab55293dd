"""Training-free models against their closed forms on small dense data."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from engine.errors import ConfigError
from engine.models import Dataset, build
from engine.models.gfcf import top_right_singular


def inv_sqrt(d: np.ndarray) -> np.ndarray:
    out = np.zeros_like(d, dtype=np.float64)
    out[d > 0] = d[d > 0] ** -0.5
    return out


def small(seed: int = 0, n_users: int = 25, n_items: int = 15) -> Dataset:
    rng = np.random.default_rng(seed)
    dense = (rng.random((n_users, n_items)) < 0.3).astype(np.float32)
    dense[:, -1] = 0  # an item nobody rated: must score 0, not NaN (its degree is 0)
    return Dataset(n_users, n_items, sp.csr_matrix(dense))


@pytest.mark.parametrize("method", ["arpack", "randomized"])
def test_gfcf_matches_the_formula(method: str) -> None:
    data = small()
    model = build("gfcf", {"svd_k": 4, "svd_method": method, "alpha": 0.3, "num_threads": 1})
    model.fit(data)
    r = data.train.toarray().astype(np.float64)
    du, di = r.sum(1), r.sum(0)
    rt = inv_sqrt(du)[:, None] * r * inv_sqrt(di)[None, :]
    _, s, vt = np.linalg.svd(rt)
    v = vt[:4]
    expected = r @ rt.T @ rt + 0.3 * (r * inv_sqrt(di)) @ v.T @ v * np.where(di > 0, di**0.5, 0.0)
    got = model.score(torch.arange(data.n_users)).numpy()
    assert np.isfinite(got).all()
    assert np.allclose(got, expected, atol=1e-4)


def test_linear_filter_only() -> None:
    data = small(1)
    model = build("gfcf", {"alpha": 0.0, "num_threads": 1})
    model.fit(data)
    r = data.train.toarray()
    du, di = r.sum(1), r.sum(0)
    rt = inv_sqrt(du)[:, None] * r * inv_sqrt(di)[None, :]
    assert np.allclose(model.score(torch.arange(data.n_users)).numpy(), r @ rt.T @ rt, atol=1e-5)


def test_randomized_svd_finds_the_top_subspace() -> None:
    m = sp.random(200, 120, density=0.05, random_state=3, format="csr", dtype=np.float64)
    exact = np.linalg.svd(m.toarray())[2][:5]  # the true top-5 right singular vectors
    for method in ("arpack", "randomized", "torch"):
        got = top_right_singular(m, 10, method, 8, 0).astype(np.float64)
        # each true direction lies (almost) entirely in the span found
        assert np.linalg.norm(got @ exact.T) ** 2 > 4.95, method


def test_ease_closed_form() -> None:
    data = small(2)
    model = build("ease", {"reg": 5.0, "num_threads": 1})
    model.fit(data)
    x = data.train.toarray().astype(np.float64)
    p = np.linalg.inv(x.T @ x + 5.0 * np.eye(data.n_items))
    b = -p / np.diag(p)
    np.fill_diagonal(b, 0.0)
    assert np.allclose(model.weights.numpy(), b, atol=1e-5)
    assert np.allclose(model.score(torch.arange(3)).numpy(), x[:3] @ b, atol=1e-4)


def test_ease_refuses_huge_catalogues() -> None:
    with pytest.raises(ConfigError, match="max_items"):
        build("ease", {"max_items": 10}).fit(small())


@pytest.mark.slow
@pytest.mark.realdata
def test_gfcf_on_gowalla_reaches_the_published_accuracy() -> None:
    from engine.data import lightgcn_txt
    from engine.evaluate.metrics import full_ranking
    from tests.conftest import SHARED_DATA

    path = SHARED_DATA / "gowalla"
    if not (path / "train.txt").exists():
        pytest.skip(f"Gowalla not found at {path}")
    data = lightgcn_txt.load(path / "train.txt", path / "test.txt")
    model = build("gfcf", {})
    model.fit(data)
    got = full_ranking(model.score, data.train, data.test, ks=(20,))
    assert got["recall@20"] >= 0.180  # published GF-CF: 0.1849
    assert got["ndcg@20"] >= 0.148


def test_dense_blocks_and_factored_filter_agree(monkeypatch) -> None:
    import engine.models.gfcf as gfcf

    monkeypatch.setattr(gfcf, "_BLOCK_BYTES", 4 * 2100 * 16)  # 16-column blocks, 2 GEMM spans
    data = small(4, n_users=60, n_items=2100)
    dense = build("gfcf", {"svd_k": 6, "num_threads": 1})
    factored = build("gfcf", {"svd_k": 6, "num_threads": 1, "dense_max_gb": 0.0})
    dense.fit(data)
    factored.fit(data)
    widths = [b.shape[1] for b in dense.parts["blocks"]]
    assert widths == [16] * 131 + [4]
    assert "blocks" not in factored.parts
    users = torch.tensor([3, 0, 59, 3])
    assert torch.allclose(dense.score(users), factored.score(users), atol=1e-5)
