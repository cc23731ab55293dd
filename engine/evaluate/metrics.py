"""Full-ranking top-K metrics: score every item, mask training items, topk, compare with held-out items."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import scipy.sparse as sp
import torch

ScoreFn = Callable[[torch.Tensor], torch.Tensor]


def pair_keys(m: sp.csr_matrix) -> np.ndarray:
    """Sorted int64 keys user * n_items + item of every stored entry (CSR with sorted indices)."""
    m = m.tocsr()
    m.sort_indices()
    rows = np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr))
    return rows * m.shape[1] + m.indices.astype(np.int64)


def contains(keys: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Vectorised membership of `query` keys in the sorted array `keys` (binary search)."""
    if len(keys) == 0:
        return np.zeros(query.shape, dtype=bool)
    pos = np.searchsorted(keys, query)
    pos[pos == len(keys)] = len(keys) - 1
    return keys[pos] == query


def mask_rows(scores: torch.Tensor, m: sp.csr_matrix, users: np.ndarray) -> None:
    """Set scores[i, j] = -inf in place wherever m[users[i], j] is stored (the user's training items)."""
    sub = m[users]
    if sub.nnz == 0:
        return
    rows = np.repeat(np.arange(len(users), dtype=np.int64), np.diff(sub.indptr))
    cols = sub.indices.astype(np.int64)
    scores[
        torch.from_numpy(rows).to(scores.device), torch.from_numpy(cols).to(scores.device)
    ] = -math.inf


def sample_users(part: sp.csr_matrix | None, max_users: int, seed: int) -> np.ndarray | None:
    """A seeded sample of at most `max_users` users with items in `part`, sorted; None (all of
    them) when `max_users` is 0 or not fewer than those users. For catalogues where ranking every
    user over every item takes hours (`[evaluate] max_users`)."""
    if part is None or max_users <= 0:
        return None
    users = np.flatnonzero(np.diff(part.tocsr().indptr) > 0)
    if len(users) <= max_users:
        return None
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(users, max_users, replace=False))


def full_ranking(
    score_fn: ScoreFn,
    train: sp.csr_matrix,
    test: sp.csr_matrix,
    ks: Sequence[int] = (10, 20),
    batch_size: int = 2048,
    device: torch.device | str = "cpu",
    users: np.ndarray | None = None,
) -> dict[str, float]:
    """Recall, NDCG, precision, hit rate and item coverage @K over all items, training items masked.

    Users without test items are excluded; `n_users` in the result says how many were evaluated.
    Ranking is by the raw scores (ties broken by torch.topk), never by a squashed copy of them.
    """
    test = test.tocsr()
    n_items = test.shape[1]
    ks = sorted({int(k) for k in ks})
    kmax = min(max(ks), n_items)
    n_test = np.diff(test.indptr)
    if users is None:
        users = np.flatnonzero(n_test > 0)
    else:
        users = np.asarray(users, dtype=np.int64)
        users = users[n_test[users] > 0]
    test_keys = pair_keys(test)
    discount = 1.0 / np.log2(np.arange(2, kmax + 2))
    idcg_cum = np.cumsum(discount)
    sums = {f"{m}@{k}": 0.0 for k in ks for m in ("recall", "ndcg", "precision", "hit")}
    seen = {k: np.zeros(n_items, dtype=bool) for k in ks}
    for start in range(0, len(users), batch_size):
        batch = users[start : start + batch_size]
        with torch.no_grad():
            scores = score_fn(torch.from_numpy(batch).to(device)).float()
            if scores._base is not None or not scores.is_contiguous():
                scores = (
                    scores.clone()
                )  # a view of the model's own memory: never mask that in place
            mask_rows(scores, train, batch)
            top = torch.topk(scores, kmax, dim=1).indices.cpu().numpy().astype(np.int64)
        hits = contains(test_keys, batch[:, None] * n_items + top).astype(np.float64)
        n_rel = n_test[batch].astype(np.float64)
        for k in ks:
            kk = min(k, kmax)
            h = hits[:, :kk]
            nh = h.sum(axis=1)
            dcg = h @ discount[:kk]
            idcg = idcg_cum[np.minimum(n_rel, kk).astype(np.int64) - 1]
            sums[f"recall@{k}"] += float((nh / n_rel).sum())
            sums[f"ndcg@{k}"] += float((dcg / idcg).sum())
            sums[f"precision@{k}"] += float((nh / k).sum())
            sums[f"hit@{k}"] += float((nh > 0).sum())
            seen[k][top[:, :kk].ravel()] = True
    n = max(len(users), 1)
    out = {key: value / n for key, value in sums.items()}
    for k in ks:
        out[f"coverage@{k}"] = float(seen[k].sum()) / n_items
    out["n_users"] = float(len(users))
    return out
