"""Full-ranking top-K metrics: score every item, mask training items, topk, compare with held-out items."""

from __future__ import annotations

import inspect
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


def takes_out(score_fn: ScoreFn) -> bool:
    """Whether `score_fn(users, out=buffer)` may write its scores into a caller's buffer."""
    try:
        return "out" in inspect.signature(score_fn).parameters
    except (TypeError, ValueError):
        return False


class ScoreBlocks:
    """Score blocks an evaluation loop may change in place, all in one reused buffer.

    `blocks(users)` -> float32 [len(users), n_items]. A model whose `score(users, out=None)` takes
    `out` writes every batch into the same [batch_size, n_items] buffer; any other model's result
    is used as it is, or copied into the buffer when it is a view of the model's own tensors
    (popularity's one row expanded), which must not be masked in place. Why one buffer: a fresh
    block per batch is a fresh mapping the kernel zero-fills page by page (Gowalla, 2,048 users x
    40,981 items: 1.2 M page faults, about a third of a full evaluation; xl: ~1 GB per 128 users).
    """

    def __init__(self, score_fn: ScoreFn, n_items: int, batch_size: int, device) -> None:
        self.score_fn, self.n_items, self.batch_size = score_fn, n_items, batch_size
        self.device = torch.device(device)
        self.takes_out = takes_out(score_fn)
        self.buffer: torch.Tensor | None = None

    def _buffer(self, n: int) -> torch.Tensor:
        if self.buffer is None:
            self.buffer = torch.empty(
                (max(self.batch_size, n), self.n_items), dtype=torch.float32, device=self.device
            )
        if self.buffer.shape[0] < n:
            self.buffer = torch.empty((n, self.n_items), dtype=torch.float32, device=self.device)
        return self.buffer[:n]

    def __call__(self, users: torch.Tensor) -> torch.Tensor:
        if self.takes_out:
            out = self._buffer(len(users))
            scores = self.score_fn(users, out=out)
        else:
            out, scores = None, self.score_fn(users)
        if scores.dtype != torch.float32:
            return scores.float()
        if out is not None and scores.data_ptr() == out.data_ptr():
            return scores
        if scores._base is not None or not scores.is_contiguous():
            # a view of the model's own memory: never mask that in place
            if scores.device != self.device:
                return scores.clone()
            return self._buffer(len(users)).copy_(scores)
        return scores


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
    blocks = ScoreBlocks(score_fn, n_items, min(batch_size, max(len(users), 1)), device)
    for start in range(0, len(users), batch_size):
        batch = users[start : start + batch_size]
        with torch.no_grad():
            scores = blocks(torch.from_numpy(batch).to(device))
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
