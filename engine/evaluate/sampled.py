"""The prototype's *sampled* metric: one held-out item ranked among 99 random unseen items.

Not comparable with full-ranking figures (it is far more optimistic); always reported under
"sampled_" names beside them, so results can be set against the prototype's numbers.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from engine.evaluate.metrics import ScoreBlocks, ScoreFn, contains, pair_keys


def held_out_items(test: sp.csr_matrix, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One test item per user with test items (chosen at random, seeded): (users, items)."""
    test = test.tocsr()
    counts = np.diff(test.indptr)
    users = np.flatnonzero(counts > 0)
    rng = np.random.default_rng(seed)
    pick = (rng.random(len(users)) * counts[users]).astype(np.int64)
    return users, test.indices[test.indptr[users] + pick].astype(np.int64)


def sample_negatives(users: np.ndarray, seen: sp.csr_matrix, n_neg: int, seed: int) -> np.ndarray:
    """[len(users), n_neg] distinct items per row that the user never interacted with (vectorised rejection)."""
    n_items = seen.shape[1]
    keys = pair_keys(seen)
    rng = np.random.default_rng(seed + 1)
    neg = rng.integers(0, n_items, size=(len(users), n_neg), dtype=np.int64)
    for _ in range(1000):
        bad = contains(keys, users[:, None] * n_items + neg)
        # duplicates within a row: mark every repeat after the first occurrence
        order = np.argsort(neg, axis=1, kind="stable")
        sorted_neg = np.take_along_axis(neg, order, axis=1)
        dup_sorted = np.zeros_like(bad)
        dup_sorted[:, 1:] = sorted_neg[:, 1:] == sorted_neg[:, :-1]
        dup = np.zeros_like(bad)
        np.put_along_axis(dup, order, dup_sorted, axis=1)
        bad |= dup
        if not bad.any():
            return neg
        neg[bad] = rng.integers(0, n_items, size=int(bad.sum()), dtype=np.int64)
    raise ValueError("cannot sample enough unseen items (users have seen almost every item)")


def sampled_ranking(
    score_fn: ScoreFn,
    test: sp.csr_matrix,
    seen: sp.csr_matrix,
    *,
    n_neg: int = 99,
    k: int = 10,
    seed: int = 2020,
    batch_size: int = 1024,
    device: torch.device | str = "cpu",
    users: np.ndarray | None = None,
) -> dict[str, float]:
    """sampled_hr@k / sampled_ndcg@k: the held-out item's rank among n_neg unseen items (ties count
    half). `users`: only these of the users with test items (`metrics.sample_users`); each keeps
    the held-out item it has when every user is judged."""
    n_items = seen.shape[1]
    counts = np.diff(seen.tocsr().indptr)
    held, pos = held_out_items(test, seed)
    if users is not None:
        keep = np.isin(held, np.asarray(users, dtype=np.int64))
        held, pos = held[keep], pos[keep]
    users = held
    ok = (
        counts[users] + n_neg <= n_items
    )  # users who have seen (nearly) everything cannot be sampled
    users, pos = users[ok], pos[ok]
    if len(users) == 0:
        return {f"sampled_hr@{k}": 0.0, f"sampled_ndcg@{k}": 0.0, "sampled_users": 0.0}
    neg = sample_negatives(users, seen, n_neg, seed)
    hr = ndcg = 0.0
    blocks = ScoreBlocks(score_fn, n_items, min(batch_size, len(users)), device)
    for start in range(0, len(users), batch_size):
        sl = slice(start, start + batch_size)
        batch = torch.from_numpy(users[sl]).to(device)
        with torch.no_grad():
            scores = blocks(batch)
        cand = torch.from_numpy(np.concatenate([pos[sl, None], neg[sl]], axis=1)).to(scores.device)
        s = torch.gather(scores, 1, cand).double()
        rank = (s[:, 1:] > s[:, :1]).sum(1).double() + 0.5 * (s[:, 1:] == s[:, :1]).sum(1).double()
        hit = rank < k
        hr += float(hit.sum())
        ndcg += float(torch.where(hit, 1.0 / torch.log2(rank + 2.0), torch.zeros_like(rank)).sum())
    n = len(users)
    return {f"sampled_hr@{k}": hr / n, f"sampled_ndcg@{k}": ndcg / n, "sampled_users": float(n)}
