"""Classic models (item-kNN, RP3beta, EASE, implicit's ALS/BPR, MF item bias): known answers,
equivalence with naive dense formulas, state round trips and EASE's refusal."""

from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp
import torch

from engine.errors import ConfigError
from engine.evaluate.metrics import full_ranking
from engine.models import Dataset, build, checkpoint, from_state
from engine.models.base import model_class, registered

CLASSIC = ["itemknn", "rp3beta", "hybrid", "ease", "als", "bpr"]
FAST = {
    "itemknn": {"num_threads": 1},
    "rp3beta": {"num_threads": 1},
    "hybrid": {"num_threads": 1},
    "ease": {"num_threads": 1, "reg": 10.0, "device": "cpu"},
    "als": {"num_threads": 1, "dim": 16, "reg": 0.1, "alpha": 10.0, "device": "cpu"},
    "bpr": {"num_threads": 1, "dim": 16, "lr": 0.05, "epochs": 200, "device": "cpu"},
    "mf": {
        "progress": False,
        "num_threads": 1,
        "eval_every": 100,
        "patience": 0,
        "epochs": 60,
        "lr": 0.01,
        "batch_size": 128,
        "dim": 16,
        "item_bias": True,
        "device": "cpu",
    },
}


def planted(blocks: int = 4, users_per: int = 24, items_per: int = 8, popular: int = 6) -> Dataset:
    """Block b's users rate all of block b but one item (held out, in test) plus 2 popular items."""
    rng = np.random.default_rng(0)
    rows, cols, trows, tcols = [], [], [], []
    for b in range(blocks):
        for j in range(users_per):
            u = b * users_per + j
            held = b * items_per + j % items_per
            items = [b * items_per + i for i in range(items_per) if b * items_per + i != held]
            items += list(blocks * items_per + rng.choice(popular, 2, replace=False))
            rows += [u] * len(items)
            cols += items
            trows.append(u)
            tcols.append(held)
    n_users, n_items = blocks * users_per, blocks * items_per + popular

    def m(r: list[int], c: list[int]) -> sp.csr_matrix:
        return sp.csr_matrix((np.ones(len(r)), (r, c)), shape=(n_users, n_items))

    return Dataset(n_users, n_items, m(rows, cols), None, m(trows, tcols))


def random_data(seed: int = 0, n_users: int = 50, n_items: int = 30) -> Dataset:
    dense = (np.random.default_rng(seed).random((n_users, n_items)) < 0.2).astype(np.float32)
    dense[:, -1] = 0  # an item nobody rated: no similarity, no NaN
    return Dataset(n_users, n_items, sp.csr_matrix(dense))


@pytest.fixture(scope="module")
def data() -> Dataset:
    return planted()


@pytest.mark.parametrize("name", [*CLASSIC, "mf"])
def test_model_ranks_the_held_out_item_first(name: str, data: Dataset) -> None:
    model = build(name, FAST[name])
    model.fit(data)
    got = full_ranking(model.score, data.train, data.test, ks=(1,))
    pop = np.asarray(data.train.sum(axis=0)).ravel()
    popular = full_ranking(
        lambda u: torch.from_numpy(pop).float().expand(len(u), -1), data.train, data.test, ks=(1,)
    )
    assert got["n_users"] == data.n_users
    assert got["hit@1"] >= 0.9, got
    assert popular["hit@1"] < 0.1


# --- naive dense references -------------------------------------------------------------------


def dense_itemknn(x: np.ndarray, alpha: float, shrink: float) -> np.ndarray:
    n = x.sum(0)
    s = (x.T @ x) / (np.outer(n ** (1 - alpha), n**alpha) + shrink + 1e-9)  # s[i, j], j scored
    np.fill_diagonal(s, 0.0)
    return s


def dense_rp3beta(x: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    du, n = x.sum(1), x.sum(0)
    p_ui = np.divide(x, du[:, None], out=np.zeros_like(x), where=du[:, None] > 0) ** alpha
    p_iu = np.divide(x.T, n[:, None], out=np.zeros_like(x.T), where=n[:, None] > 0) ** alpha
    w = (p_iu @ p_ui) * np.where(n > 0, n, 1.0) ** -beta
    np.fill_diagonal(w, 0.0)
    return w


def top_values(w: np.ndarray, k: int, axis: int) -> np.ndarray:
    """The k largest values along `axis`, sorted (tie-proof: which of equal entries is kept may vary)."""
    return -np.sort(-w, axis=axis).take(range(k), axis=axis)


@pytest.mark.parametrize(
    "settings",
    [
        {"similarity": "cosine", "shrink": 0.0},
        {"similarity": "cosine", "shrink": 10.0},
        {"similarity": "asymmetric", "alpha": 0.8, "shrink": 3.0},
    ],
)
def test_itemknn_matches_the_dense_formula(settings: dict) -> None:
    data = random_data(1)
    x = data.train.toarray().astype(np.float64)
    alpha = settings.get("alpha", 0.5)
    ref = dense_itemknn(x, alpha, settings["shrink"])
    full = build("itemknn", {**settings, "topk": 1000, "num_threads": 1})
    full.fit(data)
    assert np.allclose(full.weights.toarray(), ref, atol=1e-6)
    users = torch.arange(data.n_users)
    assert np.allclose(full.score(users).numpy(), x @ ref, atol=1e-5)
    # top-k pruning keeps the k largest similarities of each scored item (a column of W);
    # one-row blocks (block_mb 0) give the same matrix as one big block
    pruned = build("itemknn", {**settings, "topk": 5, "block_mb": 0, "num_threads": 1})
    pruned.fit(data)
    w = pruned.weights.toarray()
    assert ((w > 0).sum(axis=0) <= 5).all()
    assert np.allclose(top_values(w, 5, 0), top_values(ref, 5, 0), atol=1e-6)
    again = build("itemknn", {**settings, "topk": 5, "num_threads": 1})
    again.fit(data)
    assert (again.weights != pruned.weights).nnz == 0


def test_top_per_row_keeps_the_k_largest_with_ties_by_lower_column() -> None:
    """The partition-based row top-k equals a full sort by (row, -value, column), ties included."""
    from engine.models.itemknn import top_per_row

    rng = np.random.default_rng(7)
    n, k = 40, 6
    r = np.sort(rng.integers(0, n, 3000))
    c = rng.permutation(3000) % 97  # columns out of order inside a row, as a sparse product gives
    v = rng.integers(1, 5, 3000).astype(np.float32)  # few distinct values: many ties at the k-th
    order = np.lexsort((c, -v, r))
    rank = np.arange(len(r)) - np.searchsorted(r[order], r[order], side="left")
    expected = np.sort(order[rank < k])
    assert np.array_equal(np.sort(top_per_row(r, c, v, n, k)), expected)


def test_top_k_rows_are_built_in_csr_parts_not_int64_triplets() -> None:
    """xl (288 M kept entries): int64 COO triplets, concatenated while their parts were alive,
    took ~40 bytes an entry and ran out of memory; CSR parts take 12 at the peak."""
    import tracemalloc

    from engine.models.itemknn import topk_rows

    rng = np.random.default_rng(0)
    x = sp.random(400, 3000, density=0.05, format="csr", random_state=rng, dtype=np.float32)
    x.data[:] = 1.0
    xt = x.T.tocsr()
    work = np.asarray(x.T @ np.diff(x.indptr).astype(np.float64)).ravel()
    tracemalloc.start()
    w = topk_rows(lambda r0, r1: xt[r0:r1] @ x, lambda i, j, v: v, 3000, 150, work, 1)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert w.nnz > 400_000 and w.has_sorted_indices
    assert w.indices.dtype == np.int32 and w.data.dtype == np.float32
    assert peak < 24 * w.nnz, peak / w.nnz
    dense = (xt @ x).toarray()
    np.fill_diagonal(dense, 0)
    row = dense[7]
    assert np.sort(w[7].data)[::-1][:20].tolist() == np.sort(row[row > 0])[::-1][:20].tolist()


@pytest.mark.parametrize("alpha, beta", [(1.0, 0.0), (0.4, 0.0), (0.7, 0.3)])
def test_rp3beta_matches_the_dense_formula(alpha: float, beta: float) -> None:
    data = random_data(2)
    x = data.train.toarray().astype(np.float64)
    ref = dense_rp3beta(x, alpha, beta)
    full = build("rp3beta", {"alpha": alpha, "beta": beta, "topk": 1000, "num_threads": 1})
    full.fit(data)
    assert np.allclose(full.weights.toarray(), ref, atol=1e-6)
    pruned = build("rp3beta", {"alpha": alpha, "beta": beta, "topk": 4, "block_mb": 0})
    pruned.fit(data)
    w = pruned.weights.toarray()
    assert ((w > 0).sum(axis=1) <= 4).all()  # RP3beta prunes per source item (a row of W)
    assert np.allclose(top_values(w, 4, 1), top_values(ref, 4, 1), atol=1e-6)


def test_ease_matches_the_closed_form() -> None:
    data = random_data(3)
    x = data.train.toarray().astype(np.float64)
    p = np.linalg.inv(x.T @ x + 7.0 * np.eye(data.n_items))
    b = -p / np.diag(p)
    np.fill_diagonal(b, 0.0)
    model = build("ease", {"reg": 7.0, "num_threads": 1, "device": "cpu"})
    model.fit(data)
    assert model.weights.dtype == torch.float32
    assert np.allclose(model.weights.numpy(), b, atol=1e-5)
    assert np.allclose(model.score(torch.arange(data.n_users)).numpy(), x @ b, atol=1e-5)


def test_ease_top_items_is_ease_on_the_most_popular_items() -> None:
    data = random_data(4)
    x = data.train.toarray().astype(np.float64)
    keep = np.sort(np.argsort(-x.sum(0), kind="stable")[:12])
    p = np.linalg.inv(x[:, keep].T @ x[:, keep] + 7.0 * np.eye(12))
    b = -p / np.diag(p)
    np.fill_diagonal(b, 0.0)
    model = build("ease", {"reg": 7.0, "top_items": 12, "num_threads": 1, "device": "cpu"})
    model.fit(data)
    got = model.score(torch.arange(data.n_users)).numpy()
    assert np.allclose(got[:, keep], x[:, keep] @ b, atol=1e-5)
    others = np.setdiff1d(np.arange(data.n_items), keep)
    assert np.isneginf(got[:, others]).all()


def test_ease_refuses_a_catalogue_too_big_for_memory() -> None:
    data = random_data(5, n_items=30)
    with pytest.raises(ConfigError) as err:
        build("ease", {"memory_gb": 1e-6, "device": "cpu"}).fit(data)
    msg = str(err.value)
    assert "dense 30 x 30 float32 item matrix" in msg and "GB" in msg
    assert "itemknn" in msg and "top_items" in msg
    with pytest.raises(ConfigError, match="max_items"):
        build("ease", {"max_items": 10, "device": "cpu"}).fit(data)


# --- state, registry, search spaces ---------------------------------------------------------


@pytest.mark.parametrize("name", [*CLASSIC, "mf"])
def test_state_round_trip_through_a_weights_only_file(name: str, data: Dataset, tmp_path) -> None:
    overrides = {**FAST[name], "epochs": 2} if name in ("mf", "bpr") else FAST[name]
    model = build(name, overrides)
    model.fit(data)
    path = checkpoint.save(model.state(), tmp_path / f"{name}.pt")  # checks weights_only safety
    again = from_state(checkpoint.load(path))
    users = torch.arange(data.n_users)
    assert torch.equal(again.score(users), model.score(users))
    if model.user_embeddings() is not None:
        assert np.array_equal(again.item_embeddings(), model.item_embeddings())


def test_factor_models_score_by_inner_products(data: Dataset) -> None:
    from engine.models.stage import scoring_of

    for name in ("als", "bpr", "mf"):
        model = build(name, {**FAST[name], "epochs": 2})
        model.fit(data)
        u, v = model.user_embeddings(), model.item_embeddings()
        assert np.allclose(model.score(torch.arange(3)).numpy(), u[:3] @ v.T, atol=1e-5)
        assert scoring_of(model) == "embedding", name
    for name in ("itemknn", "rp3beta", "ease"):
        model = build(name, FAST[name])
        model.fit(data)
        assert scoring_of(model) == "topn", name


def test_mf_item_bias_is_the_last_embedding_column(data: Dataset) -> None:
    plain = build("mf", {**FAST["mf"], "item_bias": False, "epochs": 2})
    plain.fit(data)
    biased = build("mf", {**FAST["mf"], "epochs": 10})
    biased.fit(data)
    assert biased.user_embeddings().shape[1] == plain.user_embeddings().shape[1] + 1
    assert np.all(biased.user_embeddings()[:, -1] == 1.0)
    bias = biased.item_embeddings()[:, -1]
    counts = np.asarray(data.train.sum(axis=0)).ravel()
    # the popular items (rated by many users of every block) get the largest biases
    assert bias[counts.argsort()[-6:]].mean() > bias[counts.argsort()[:-6]].mean()


@pytest.mark.parametrize("name", CLASSIC)
def test_search_space_is_declarative_and_holds_the_defaults(name: str) -> None:
    assert name in registered()
    cls = model_class(name)
    fields = {f.name for f in dataclasses.fields(cls.settings_cls)}
    defaults = cls.settings_cls()
    assert cls.search_space
    for key, (kind, *args) in cls.search_space.items():
        assert key in fields, key
        value = getattr(defaults, key)
        if kind in ("cat", "categorical"):
            assert value in args[0]
        else:
            assert kind in ("int", "int_log", "float", "log"), kind
            low, high = args
            assert low <= value <= high, (key, value)


def test_bench_command_accepts_the_new_models(tmp_path) -> None:
    from click.testing import CliRunner

    from engine.commands.bench import bench

    d = planted()
    for part, m in (("train", d.train), ("test", d.test)):
        lines = [" ".join(map(str, [u, *m[u].indices])) for u in range(d.n_users)]
        (tmp_path / f"{part}.txt").write_text("\n".join(lines) + "\n")
    args = [
        "lightgcn",
        "--train",
        str(tmp_path / "train.txt"),
        "--test",
        str(tmp_path / "test.txt"),
    ]
    for name in ("itemknn", "rp3beta", "ease", "als"):
        result = CliRunner().invoke(bench, [*args, "--model", name, "--threads", "1"])
        assert result.exit_code == 0, result.output
        assert "recall@20" in result.output


def _itemknn_case(seed: int, n_users: int, n_items: int, density: float, topk: int, first_id: int):
    """(item-kNN fitted on a random matrix, the matrix, its IdMaps, every user row)."""
    from engine.models.data import IdMaps

    rng = np.random.default_rng(seed)
    x = sp.csr_matrix((rng.random((n_users, n_items)) < density).astype(np.float32))
    model = build("itemknn", {"topk": topk})
    model.fit(Dataset(n_users, n_items, x))
    maps = IdMaps(
        user_ids=np.arange(first_id, first_id + n_users),
        isbns=np.array([f"isbn{i:03d}" for i in range(n_items)], dtype=object),
    )
    return model, x, maps, np.arange(n_users, dtype=np.int64)


def test_sparse_top_n_lists_what_the_dense_top_n_lists_without_zero_filler() -> None:
    """Item-item write-back from sparse rows (xl: no dense [batch, 1.9 M] blocks): the same
    ranked items and scores as the dense top-N wherever a reader has n positive scores, known
    items never listed, and no zero-score filler for readers with fewer."""
    from engine.models.runs import top_n, top_n_sparse

    model, x, maps, users = _itemknn_case(5, 60, 80, 0.05, 6, first_id=100)
    dense = top_n(model.score, users, x, maps, 12, batch_size=7)
    sparse = top_n_sparse(model.sparse_scores, users, x, maps, 12, batch_size=7)
    assert (sparse["score"] > 0).all() and sparse.height < dense.height
    full = sparse.group_by("user_id").len().filter(pl.col("len") == 12)["user_id"]
    assert len(full) > 10
    key = ["user_id", "rank"]
    a = dense.filter(pl.col("user_id").is_in(full.implode())).sort(key)
    b = sparse.filter(pl.col("user_id").is_in(full.implode())).sort(key)
    assert np.allclose(a["score"].to_numpy(), b["score"].to_numpy())  # rank by rank

    def above_last(f: pl.DataFrame) -> set:  # items tied at a list's last score may differ
        last = pl.col("score").min().over("user_id")
        return set(f.filter(pl.col("score") > last + 1e-6).select("user_id", "isbn").rows())

    assert above_last(a) == above_last(b) and len(above_last(b)) > 5 * len(full)
    known = {(100 + u, f"isbn{i:03d}") for u, i in zip(*x.nonzero(), strict=True)}
    assert not known & set(zip(sparse["user_id"], sparse["isbn"], strict=True))
    # the dense top-N fills short lists with zero scores: what the sparse one leaves out
    assert (dense.filter(~pl.col("user_id").is_in(full.implode()))["score"] <= 0).any()


def test_sparse_top_n_runs_its_batches_on_torch_threads() -> None:
    """scipy's sparse product releases the GIL: the write-back's batches run on torch's threads
    (xl's item-kNN write-back was ~36 min on one) and give the one-thread frame, in order."""
    import threading

    from engine.models.runs import top_n_sparse

    model, x, maps, users = _itemknn_case(6, 90, 70, 0.06, 8, first_id=500)
    seen: set[str] = set()
    gate = threading.Barrier(2, timeout=10)  # two batches at once, or the barrier breaks

    def scores(batch: np.ndarray) -> sp.csr_matrix:
        seen.add(threading.current_thread().name)
        if batch[0] < 20:  # the first two batches meet here: they run at the same time
            gate.wait()
        return model.sparse_scores(batch)

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = top_n_sparse(model.sparse_scores, users, x, maps, 5, batch_size=10)
        torch.set_num_threads(2)
        two = top_n_sparse(scores, users, x, maps, 5, batch_size=10)
    finally:
        torch.set_num_threads(before)
    assert two.equals(one) and len(seen) == 2 and one.height > 100
