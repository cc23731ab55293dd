"""The LightGCN graph: normalisation, custom autograd vs torch's, no test edge, sampler."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from engine.models import Dataset, build
from engine.models.graph import (
    has_edges,
    node_order,
    normalized_adjacency,
    propagate,
    propagate_rows,
    reorder,
    spmm,
    to_torch_csr,
)
from engine.models.sampling import UniformSampler


def random_train(
    n_users: int = 30, n_items: int = 40, density: float = 0.1, seed: int = 1
) -> sp.csr_matrix:
    m = sp.random(n_users, n_items, density=density, random_state=seed, format="csr")
    m.data[:] = 1.0
    return m


def as_double(a: sp.csr_matrix) -> torch.Tensor:
    t = to_torch_csr(a)
    return torch.sparse_csr_tensor(
        t.crow_indices(), t.col_indices(), t.values().double(), size=t.shape, check_invariants=True
    )


def test_normalized_adjacency_values() -> None:
    r = sp.csr_matrix(np.array([[1.0, 1.0], [0.0, 1.0]]))
    a = normalized_adjacency(r).toarray()
    # degrees: users 2, 1; items 1, 2 -> A[u0, i0] = 1/sqrt(2*1), A[u0, i1] = 1/sqrt(2*2)
    assert a.shape == (4, 4)
    assert a[0, 2] == pytest.approx(1 / np.sqrt(2))
    assert a[0, 3] == pytest.approx(0.5)
    assert a[1, 3] == pytest.approx(1 / np.sqrt(2))
    assert np.allclose(a, a.T)
    assert a[:2, :2].sum() == 0 and a[2:, 2:].sum() == 0


def reference(a_coo: torch.Tensor, ego: torch.Tensor, layers: int) -> torch.Tensor:
    """Mean of layer embeddings with torch's generic sparse autograd."""
    hs, h = [ego], ego
    for _ in range(layers):
        h = torch.sparse.mm(a_coo, h)
        hs.append(h)
    return torch.stack(hs).mean(0)


@pytest.mark.parametrize("layers", [0, 1, 2, 3])
def test_custom_autograd_equals_generic(layers: int) -> None:
    a = as_double(normalized_adjacency(random_train()))
    a_coo = a.to_sparse_coo()
    torch.manual_seed(0)
    ego = torch.randn(70, 8, dtype=torch.float64, requires_grad=True)
    rows = torch.tensor([0, 3, 5, 29, 31, 45, 69])
    w, w_ego = (
        torch.randn(len(rows), 8, dtype=torch.float64),
        torch.randn(len(rows), 8, dtype=torch.float64),
    )

    ref_final = reference(a_coo, ego, layers)
    (g_ref,) = torch.autograd.grad((ref_final[rows] * w).sum() + (ego[rows] * w_ego).sum(), ego)

    final, ego_rows = propagate_rows(a, ego, rows, layers)
    assert torch.allclose(final, ref_final[rows]) and torch.equal(ego_rows, ego[rows])
    (g_rows,) = torch.autograd.grad((final * w).sum() + (ego_rows * w_ego).sum(), ego)
    assert torch.allclose(g_rows, g_ref, atol=1e-12)

    with torch.no_grad():  # the scoring path: every node at once, no backward
        assert torch.allclose(propagate(a, ego, layers), ref_final)


def test_graph_has_no_test_edge() -> None:
    rng = np.random.default_rng(0)
    full = random_train(40, 50, 0.2, seed=3).tocoo()
    is_test = rng.random(full.nnz) < 0.2
    shape = full.shape

    def part(mask):
        return sp.csr_matrix((np.ones(mask.sum()), (full.row[mask], full.col[mask])), shape=shape)

    data = Dataset(shape[0], shape[1], part(~is_test), None, part(is_test))
    model = build("lightgcn", {"progress": False, "num_threads": 1})
    model.init_module(data, torch.device("cpu"))
    t = model.module.adj
    stored = sp.csr_matrix(
        (t.values().numpy(), t.col_indices().numpy(), t.crow_indices().numpy()), shape=t.shape
    )
    pos = model.module.pos.numpy()  # the nodes are stored in locality order
    adj = stored[pos][:, pos]
    assert has_edges(adj, data.n_users, data.test) == 0
    assert has_edges(adj, data.n_users, data.train) == data.train.nnz
    assert adj.nnz == 2 * data.train.nnz


def test_sampler_never_returns_a_positive() -> None:
    train = random_train(50, 20, 0.6, seed=5)  # dense rows: many first draws hit a positive
    sampler = UniformSampler(train, np.random.default_rng(0))
    users, pos, neg = sampler.epoch(n_samples=20000, n_neg=3)
    dense = train.toarray() > 0
    assert neg.shape == (20000, 3)
    assert not dense[users[:, None], neg].any()
    assert dense[users, pos].all()
    # the official sampler: users uniform (not proportional to their degree)
    counts = np.bincount(users, minlength=50)[sampler.users]
    assert counts.min() > 0.6 * counts.mean()


def test_sampler_skips_users_without_negatives() -> None:
    train = sp.csr_matrix(np.array([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]))
    sampler = UniformSampler(train, np.random.default_rng(0))
    users, _, neg = sampler.epoch(n_samples=500)
    assert set(users.tolist()) == {1}
    assert set(neg[:, 0].tolist()) <= {1, 2}


def test_normalized_adjacency_with_facet_nodes() -> None:
    """Facet nodes come after the items, linked to their books only, and count in the degrees."""
    r = sp.csr_matrix(np.array([[1.0, 1.0], [0.0, 1.0]]))
    facets = sp.csr_matrix(np.array([[1.0], [1.0]]))  # both books carry facet 0
    a = normalized_adjacency(r, facets).toarray()
    # degrees: users 2, 1; items 1 + 1 facet = 2, 2 + 1 = 3; the facet 2
    assert a.shape == (5, 5) and np.allclose(a, a.T)
    assert a[0, 2] == pytest.approx(1 / np.sqrt(2 * 2))
    assert a[1, 3] == pytest.approx(1 / np.sqrt(1 * 3))
    assert a[2, 4] == pytest.approx(1 / np.sqrt(2 * 2))
    assert a[3, 4] == pytest.approx(1 / np.sqrt(3 * 2))
    assert a[:2, 4].sum() == 0  # no user-facet edge
    plain = normalized_adjacency(r).toarray()
    assert np.array_equal(normalized_adjacency(r, sp.csr_matrix((2, 0))).toarray(), plain)


def test_spmm_equals_matmul_and_never_reads_its_output() -> None:
    a = to_torch_csr(normalized_adjacency(random_train()))
    assert a.crow_indices().dtype == torch.int32  # MKL's index width: no conversion per product
    x = torch.randn(70, 8)
    torch.manual_seed(0)
    for _ in range(3):  # fresh, uninitialised outputs (often recycled memory) every time
        assert torch.allclose(spmm(a, x), a @ x, atol=1e-6)
    ego = torch.randn(70, 8, requires_grad=True)
    (g,) = torch.autograd.grad(spmm(a, ego).sum(), ego)  # with autograd it stays a @ x
    assert torch.allclose(g, (a @ torch.ones(70, 8)).float(), atol=1e-5)


def bandwidth(m: sp.csr_matrix) -> int:
    coo = m.tocoo()
    return int(np.abs(coo.row - coo.col).max())


def test_node_order_keeps_neighbours_close() -> None:
    rng = np.random.default_rng(0)
    n = 200  # a banded graph whose ids were shuffled: the order finds the band again
    rows = np.repeat(np.arange(n), 3)
    cols = np.clip(rows + rng.integers(-3, 4, len(rows)), 0, n - 1)
    band = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    band = ((band + band.T) > 0).astype(np.float64).tocsr()
    shuffle = rng.permutation(n)
    shuffled = reorder(band, shuffle)
    order = node_order(shuffled)
    assert sorted(order.tolist()) == list(range(n))
    assert bandwidth(reorder(shuffled, order)) < bandwidth(shuffled) / 5
    back = reorder(reorder(shuffled, order), np.argsort(order))  # reorder is a permutation
    assert (back != shuffled).nnz == 0


@pytest.mark.parametrize("layers", [1, 3])
def test_the_locality_order_changes_nothing_a_caller_sees(layers: int) -> None:
    """Embeddings, loss and gradients in node id order equal the plain (unordered) propagation."""
    train = random_train(40, 60, 0.15, seed=7)
    model = build("lightgcn", {"progress": False, "num_threads": 1, "layers": layers, "dim": 8})
    data = Dataset(40, 60, train, None, None)
    torch.manual_seed(3)
    model.init_module(data, torch.device("cpu"))
    torch.manual_seed(3)
    plain_init = torch.nn.Embedding(100, 8)
    torch.nn.init.normal_(plain_init.weight, std=0.1)
    module = model.module
    assert not torch.equal(module.pos, torch.arange(100))  # the order is not the identity here
    assert torch.equal(module.ego(), plain_init.weight)  # each node keeps its initial vector
    plain = to_torch_csr(normalized_adjacency(train))
    ego = module.ego().detach().clone().requires_grad_(True)
    with torch.no_grad():
        assert torch.allclose(module.propagate_all(), propagate(plain, ego, layers), atol=1e-6)
    users, pos, neg = (
        torch.tensor([0, 5, 5, 39]),
        torch.tensor([1, 2, 3, 59]),
        torch.tensor([4, 0, 7, 8]),
    )
    loss = module.bpr_loss(users, pos, neg, reg=0.1)
    nodes = torch.cat([users, pos + 40, neg + 40])
    final = reference(plain.to_sparse_coo(), ego, layers)[nodes]
    u, p, n = final.split(len(users))
    ref = torch.nn.functional.softplus((u * n).sum(1) - (u * p).sum(1)).mean()
    ref = ref + 0.1 * 0.5 * ego[nodes].pow(2).sum() / len(users)
    assert torch.allclose(loss, ref, atol=1e-6)
    (g_stored,) = torch.autograd.grad(loss, module.embedding.weight)
    (g_ref,) = torch.autograd.grad(ref, ego)
    assert torch.allclose(g_stored[module.pos], g_ref, atol=1e-6)
