"""Vectorised training samples: the official LightGCN sampler (user uniform, then one of its positives)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from engine.evaluate.metrics import contains, pair_keys


class UniformSampler:
    """Draws (user, positive, negatives) triples; negatives are uniform over the user's non-positives."""

    def __init__(self, train: sp.csr_matrix, rng: np.random.Generator):
        self.train = train.tocsr()
        self.n_users, self.n_items = self.train.shape
        self.rng = rng
        self.indptr = self.train.indptr.astype(np.int64)
        self.indices = self.train.indices.astype(np.int64)
        self.degree = np.diff(self.indptr)
        # Users with no positive (or with every item positive) cannot form a BPR triple.
        self.users = np.flatnonzero((self.degree > 0) & (self.degree < self.n_items))
        self.keys = pair_keys(self.train)

    def epoch(
        self, n_samples: int | None = None, n_neg: int = 1
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One epoch: as many samples as training interactions, like the official LightGCN code."""
        n = self.train.nnz if n_samples is None else n_samples
        users = self.users[self.rng.integers(0, len(self.users), n)]
        offset = self.rng.integers(0, self.degree[users])
        pos = self.indices[self.indptr[users] + offset]
        return users, pos, self.negatives(users, n_neg)

    def negatives(self, users: np.ndarray, n_neg: int = 1) -> np.ndarray:
        """[len(users), n_neg] items that are not positives of their user (rejection sampling)."""
        users = np.broadcast_to(users[:, None], (len(users), n_neg))
        neg = self.rng.integers(0, self.n_items, users.shape)
        bad = self.is_positive(users, neg)
        while bad.any():  # a few percent the first time, then geometrically fewer
            neg[bad] = self.rng.integers(0, self.n_items, int(bad.sum()))
            still = self.is_positive(users[bad], neg[bad])
            bad[bad] = still
        return neg

    def is_positive(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Whether each (user, item) pair is a training positive."""
        return contains(self.keys, users.astype(np.int64) * self.n_items + items)
