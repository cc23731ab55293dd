"""Models with an item x item matrix refuse up front, naming what they would need (fake sizes, no big allocation)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from engine.errors import ConfigError
from engine.models import ease, gfcf, memory, spectral
from engine.models.base import Dataset, build

XL_USERS, XL_ITEMS = 2_788_580, 2_713_790  # `bookrec sample --size xl`
GB = 2**30


def xl_shaped(n_users: int = XL_USERS, n_items: int = XL_ITEMS) -> Dataset:
    """A dataset with xl's shape but a handful of ratings: only its indptr is allocated."""
    rows, cols = np.array([0, 1, 2]), np.array([0, 1, n_items - 1])
    train = sp.csr_matrix((np.ones(3, np.float32), (rows, cols)), shape=(n_users, n_items))
    return Dataset(n_users, n_items, train)


def tiny(n_users: int = 40, n_items: int = 30) -> Dataset:
    dense = (np.random.default_rng(0).random((n_users, n_items)) < 0.3).astype(np.float32)
    return Dataset(n_users, n_items, sp.csr_matrix(dense))


@pytest.fixture
def memory_gb(monkeypatch: pytest.MonkeyPatch):
    """Pretend the machine has `gb` GB available (the value every model's budget starts from)."""

    def set_gb(gb: float) -> None:
        monkeypatch.setattr(memory, "available_memory_bytes", lambda: int(gb * GB))

    return set_gb


@pytest.fixture
def nothing_built(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if a model gets as far as building its graph or its dense matrix."""

    def boom(*args, **kwargs):
        raise AssertionError("allocated before refusing")

    monkeypatch.setattr(gfcf, "normalized_graph", boom)
    monkeypatch.setattr(spectral, "normalized_graph", boom)
    monkeypatch.setattr(ease, "ease_weights_cpu", boom)
    monkeypatch.setattr(ease, "ease_weights_torch", boom)


def test_require_names_the_need_the_budget_and_the_hint() -> None:
    memory.require("M", 10, "x", "do y", budget_bytes=10)  # exactly fits: no refusal
    with pytest.raises(ConfigError) as err:
        memory.require("M", 3 * GB, "a big thing", "Use z", budget_bytes=GB, where="free")
    assert str(err.value).startswith(
        "M would need a big thing: about 3.0 GB, but only 1.0 GB is free"
    )
    assert "Use z" in str(err.value)


def test_size_formulas() -> None:
    assert memory.dense_items_bytes(XL_ITEMS) == XL_ITEMS**2 * 4
    assert "2,713,790 x 2,713,790 float32 item matrix (27,435.5 GB)" in memory.dense_items_text(
        XL_ITEMS
    )
    assert memory.dense_fit(1000, 2, 2 * 1000 * 1000 * 4) == 1000
    # Embedding models at xl are small: (users + items) x 64 x 4 B x 4 copies ~ 5.2 GB.
    assert memory.embedding_bytes(XL_USERS, XL_ITEMS, 64) / GB == pytest.approx(5.25, abs=0.01)


@pytest.mark.usefixtures("nothing_built")
def test_ease_refuses_xl_from_the_machine_budget(memory_gb) -> None:
    memory_gb(20)
    with pytest.raises(ConfigError) as err:
        build("ease", {"device": "cpu"}).fit(xl_shaped())
    msg = str(err.value)
    assert "EASE would need a dense 2,713,790 x 2,713,790 float32 item matrix (27,435.5 GB)" in msg
    assert "only 20.0 GB is available" in msg
    assert "itemknn or rp3beta" in msg and "top_items = N (N <= 51,810 fits)" in msg


@pytest.mark.usefixtures("nothing_built")
def test_gfcf_refuses_xl_naming_its_item_filter(memory_gb) -> None:
    memory_gb(20)
    with pytest.raises(ConfigError) as err:
        build("gfcf", {}).fit(xl_shaped())
    msg = str(err.value)
    assert msg.startswith("GF-CF would need its item x item filter, a dense 2,713,790 x 2,713,790")
    assert "27,435.5 GB" in msg and "top-256 SVD" in msg and "only 20.0 GB is available" in msg
    assert "itemknn or rp3beta" in msg and "top_items" in msg


@pytest.mark.usefixtures("nothing_built")
def test_gfcf_dense_filter_that_does_not_fit_suggests_the_factored_one(memory_gb) -> None:
    # 40k items: the dense filter (6.0 GB) is under dense_max_gb but not under a 4 GB budget.
    memory_gb(4)
    with pytest.raises(ConfigError) as err:
        build("gfcf", {}).fit(xl_shaped(30_000, 40_000))
    assert "kept dense" in str(err.value) and "dense_max_gb = 0" in str(err.value)


@pytest.mark.usefixtures("nothing_built")
def test_chebycf_refuses_xl_and_says_which_batch_would_fit(memory_gb) -> None:
    memory_gb(20)
    with pytest.raises(ConfigError) as err:
        build("chebycf", {}).fit(xl_shaped())
    msg = str(err.value)
    assert msg.startswith("ChebyCF would need its item x item filter, a dense 2,713,790 x")
    assert "top-512 SVD" in msg and "itemknn or rp3beta" in msg
    # Its fixed part (SVD + a score block) already exceeds 20 GB: no batch size is offered.
    assert "batch_size =" not in msg
    memory_gb(60)  # the SVD and V^T fit, 1,024 users' filter vectors do not
    with pytest.raises(ConfigError, match=r"\[chebycf\] batch_size = [\d,]+ \(fits\)"):
        build("chebycf", {}).fit(xl_shaped())


@pytest.mark.parametrize("name", ["ease", "gfcf", "chebycf"])
def test_small_data_still_fits_and_trains(name: str, memory_gb) -> None:
    memory_gb(1)
    settings = {"device": "cpu", "num_threads": 1}
    settings |= {"svd_k": 4} if name == "gfcf" else {"ideal_k": 4} if name == "chebycf" else {}
    model = build(name, settings)
    model.fit(tiny())
    import torch

    assert model.score(torch.arange(3)).shape == (3, 30)


def test_ease_memory_gb_setting_overrides_the_machine(memory_gb) -> None:
    memory_gb(1000)
    with pytest.raises(ConfigError, match="allowed by ease memory_gb"):
        build("ease", {"memory_gb": 1e-6, "device": "cpu"}).fit(tiny())
