"""The hybrid model: RP3beta plus same-author / same-publisher links, against its dense formula."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp
import torch

from engine import db
from engine.models import build, split
from engine.models.base import Dataset
from engine.models.data import IdMaps, item_groups
from engine.models.stage import dataset_for


def data_with_groups(seed: int = 3, n_users: int = 60, n_items: int = 24) -> Dataset:
    rng = np.random.default_rng(seed)
    x = sp.csr_matrix((rng.random((n_users, n_items)) < 0.2).astype(np.float32))
    author = rng.integers(0, 6, n_items)  # 6 authors, about 4 books each
    author[-1] = 99  # a book whose author has no other book: no group column for it
    keys = {a: j for j, a in enumerate(sorted(set(author.tolist()) - {99}))}
    g = sp.csr_matrix(
        (
            np.ones(n_items - 1, np.float32),
            (np.arange(n_items - 1), [keys[a] for a in author[:-1]]),
        ),
        shape=(n_items, len(keys)),
    )
    return Dataset(n_users, n_items, x, extras={"item_groups": {"author": g}})


def dense_hybrid(data: Dataset, author: float, gamma: float) -> np.ndarray:
    """W = W_rp3 / mean row sum + author * D^-gamma (G G^T - I) / its mean row sum, densely."""
    rp3 = build("rp3beta", {"topk": 10_000, "num_threads": 1})
    rp3.fit(data)
    w = rp3.weights.toarray().astype(np.float64)
    w /= w.sum() / w.shape[0]
    g = data.extras["item_groups"]["author"].toarray()
    a = g @ g.T
    np.fill_diagonal(a, 0)
    deg = a.sum(axis=1)
    a = a * np.where(deg > 0, deg, 1.0)[:, None] ** -gamma
    return w + author * a / (a.sum() / a.shape[0])


@pytest.mark.parametrize("author, gamma", [(1.0, 0.5), (2.5, 0.0), (0.3, 1.0)])
def test_hybrid_matches_the_dense_formula_on_unrated_items(author: float, gamma: float) -> None:
    data = data_with_groups()
    model = build("hybrid", {"topk": 10_000, "author": author, "gamma": gamma, "num_threads": 1})
    model.fit(data)
    x = data.train.toarray()
    want = x @ dense_hybrid(data, author, gamma)
    got = model.score(torch.arange(data.n_users)).numpy()
    unrated = x == 0  # a reader's own books (masked when ranking) may differ by the self-link
    assert np.allclose(got[unrated], want[unrated], atol=1e-4)
    ii = model.item_item(10_000).toarray()  # fold-in's matrix: the same W, diagonal 0
    assert np.allclose((x @ ii)[unrated], want[unrated], atol=1e-4)
    assert np.all(np.diag(ii) == 0)


def test_without_metadata_the_hybrid_ranks_as_rp3beta() -> None:
    data = data_with_groups()
    plain = Dataset(data.n_users, data.n_items, data.train)
    hybrid = build("hybrid", {"num_threads": 1})
    hybrid.fit(plain)
    rp3 = build("rp3beta", {"num_threads": 1})
    rp3.fit(plain)
    users = torch.arange(data.n_users)
    h, r = hybrid.score(users).numpy(), rp3.score(users).numpy()
    assert np.allclose(h * (r.sum() / max(h.sum(), 1e-9)), r, atol=1e-5)  # one positive scale
    # and the author weight is what moves it: same-author books of a reader's books rise
    with_authors = build("hybrid", {"num_threads": 1, "author": 4.0})
    with_authors.fit(data)
    g = data.extras["item_groups"]["author"].toarray()
    same = (data.train.toarray() @ g @ g.T > 0) & (data.train.toarray() == 0)
    lift = with_authors.score(users).numpy() / max(with_authors.score(users).numpy().max(), 1e-9)
    base = h / max(h.max(), 1e-9)
    assert (lift - base)[same].mean() > (lift - base)[~same].mean()


def test_item_groups_join_spellings_of_one_author_and_skip_singletons(tmp_path) -> None:
    con = db.connect(tmp_path / "g.duckdb")
    books = pl.DataFrame(
        {
            "isbn": ["A1", "A2", "A3", "B1", "C1"],
            "title": ["t"] * 5,
            "author": ["J.R.R. Tolkien", "J. R. R. Tolkien", "jrr tolkien", "Émile Zola", None],
            "publisher": ["Del Rey", "del rey", "Harper", "Harper", "Del Rey"],
        }
    )
    ratings = pl.DataFrame(
        {"user_id": [1, 1, 2, 2, 3], "isbn": ["A1", "A2", "A3", "B1", "C1"], "rating": [0] * 5},
        schema={"user_id": pl.Int32, "isbn": pl.Utf8, "rating": pl.Int8},
    )
    with db.transaction(con):
        db.replace_table(con, "books", books)
        db.replace_table(con, "ratings", ratings)
    maps = IdMaps(np.array([1, 2, 3]), np.array(sorted(books["isbn"]), dtype=object))
    groups = item_groups(con, maps, ("author", "publisher"))
    row = {isbn: i for i, isbn in enumerate(maps.isbns)}
    author = groups["author"].toarray()
    assert author.shape[1] == 1  # the three Tolkiens; Zola alone and no author: no group
    assert author[[row["A1"], row["A2"], row["A3"]], 0].tolist() == [1, 1, 1]
    assert author[[row["B1"], row["C1"]]].sum() == 0
    publisher = groups["publisher"].toarray()
    assert publisher.shape[1] == 2  # Del Rey (A1, A2, C1) and Harper (A3, B1)
    con.close()


def test_the_stage_loads_groups_only_when_a_weight_asks(planted_db) -> None:
    con, _ = planted_db  # every book by "Author": one group of all the books
    info = split.ensure(con)
    data, maps = dataset_for(con, build("hybrid"), info)
    assert data.extras["item_groups"]["author"].shape == (maps.n_items, 1)
    assert "item_groups" not in dataset_for(con, build("hybrid", {"author": 0.0}), info)[0].extras
    assert "item_groups" not in dataset_for(con, build("rp3beta"), info)[0].extras
