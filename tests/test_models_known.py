"""Known answers: every model must find the one unseen item of the user's planted block."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from engine.evaluate.metrics import full_ranking
from engine.models import Dataset, build


def planted(
    blocks: int = 4, users_per: int = 30, items_per: int = 10, popular: int = 5, seed: int = 0
) -> Dataset:
    """Users of block b rate every item of block b but one (held out) plus 2 of a few popular items."""
    rng = np.random.default_rng(seed)
    rows, cols, trows, tcols = [], [], [], []
    for b in range(blocks):
        for j in range(users_per):
            u = b * users_per + j
            held = b * items_per + j % items_per
            block = [b * items_per + i for i in range(items_per) if b * items_per + i != held]
            pops = list(blocks * items_per + rng.choice(popular, 2, replace=False))
            rows += [u] * (len(block) + 2)
            cols += block + pops
            trows.append(u)
            tcols.append(held)
    n_users, n_items = blocks * users_per, blocks * items_per + popular

    def m(r, c):
        return sp.csr_matrix((np.ones(len(r)), (r, c)), shape=(n_users, n_items))

    return Dataset(n_users, n_items, m(rows, cols), None, m(trows, tcols))


FAST = {"progress": False, "num_threads": 1, "eval_every": 100, "patience": 0}
MODELS = {
    "mf": {**FAST, "epochs": 60, "lr": 0.01, "batch_size": 128, "dim": 16},
    "lightgcn": {**FAST, "epochs": 60, "lr": 0.01, "batch_size": 128, "dim": 16, "layers": 2},
    "ncf": {**FAST, "epochs": 30, "lr": 0.01, "batch_size": 128, "dim": 16, "mlp_layers": (32, 16)},
    "gfcf": {"num_threads": 1, "svd_k": 8},
    "ease": {"num_threads": 1, "reg": 10.0},
}


@pytest.fixture(scope="module")
def data() -> Dataset:
    return planted()


def popularity_hits(data: Dataset) -> dict[str, float]:
    pop = torch.from_numpy(np.asarray(data.train.sum(axis=0)).ravel()).float()
    return full_ranking(lambda u: pop.expand(len(u), -1), data.train, data.test, ks=(3,))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_finds_planted_item(name: str, data: Dataset) -> None:
    model = build(name, MODELS[name])
    model.fit(data)
    got = full_ranking(model.score, data.train, data.test, ks=(1, 3))
    pop = popularity_hits(data)
    assert got["n_users"] == data.n_users
    assert got["hit@3"] >= 0.9, got
    assert got["hit@3"] >= pop["hit@3"] + 0.5, (got, pop)


def test_popularity_cannot_find_it(data: Dataset) -> None:
    # The planted item is never among the most popular ones: the known answer needs the blocks.
    assert popularity_hits(data)["hit@3"] < 0.2


def test_lightgcn_facet_nodes_place_a_book_nobody_rated() -> None:
    """A book with no training interaction is reached through its facet node: with facet nodes
    LightGCN ranks each block's cold book above the other blocks' cold books for that block's
    readers; without them it has nothing to go on."""
    blocks, users_per, items_per = 4, 30, 10
    base = planted(blocks=blocks, users_per=users_per, items_per=items_per)
    cold = [b * items_per for b in range(blocks)]  # item 0 of each block: never seen in training
    train = base.train.tolil()
    train[:, cold] = 0
    train = sp.csr_matrix(train)
    train.eliminate_zeros()
    n_items = base.n_items
    block_of = [i // items_per if i < blocks * items_per else blocks for i in range(n_items)]
    facets = sp.csr_matrix(
        (np.ones(n_items), (np.arange(n_items), block_of)), shape=(n_items, blocks + 1)
    )
    users = torch.arange(base.n_users)

    def cold_hits(extras: dict) -> float:
        data = Dataset(base.n_users, n_items, train, None, base.test, extras=extras)
        model = build("lightgcn", MODELS["lightgcn"])
        model.fit(data)
        scores = model.score(users)[:, cold]  # each reader's scores of the four cold books
        return float((scores.argmax(1) == users // users_per).float().mean())

    with_facets = cold_hits({"item_facets": facets})
    assert with_facets >= 0.9
    assert cold_hits({}) < with_facets - 0.4
