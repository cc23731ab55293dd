"""Loader for the LightGCN benchmark text format: one line per user, `user item item ...`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp

from engine.errors import FormatError, InputFileError
from engine.models.base import Dataset


def read_pairs(path: Path) -> tuple[np.ndarray, np.ndarray, int]:
    """(users, items, n_users): int64 pairs of every `user item item ...` line, and 1 + the largest
    user id seen (a user line with no items adds no pair but still counts)."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(
            "file not found", where=str(path), hint="Pass a LightGCN-format train/test .txt"
        )
    users: list[np.ndarray] = []
    items: list[np.ndarray] = []
    n_users = 0
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                ids = np.array(line.split(), dtype=np.int64)
            except ValueError:
                raise FormatError(
                    "expected integers `user item item ...`", where=f"{path}:{lineno}"
                ) from None
            if (ids < 0).any():
                raise FormatError("negative id", where=f"{path}:{lineno}")
            n_users = max(n_users, int(ids[0]) + 1)
            users.append(np.full(len(ids) - 1, ids[0], dtype=np.int64))
            items.append(ids[1:])
    if not users:
        raise InputFileError("empty file", where=str(path))
    return np.concatenate(users), np.concatenate(items), n_users


def load(train_path: Path, test_path: Path | None = None) -> Dataset:
    """A Dataset from LightGCN-format files; ids are taken as given (0-based), sizes from their maxima."""
    tu, ti, n_train_users = read_pairs(train_path)
    su, si, n_test_users = read_pairs(test_path) if test_path is not None else (tu[:0], ti[:0], 0)
    n_users = max(n_train_users, n_test_users)
    n_items = int(max(ti.max(initial=-1), si.max(initial=-1))) + 1

    def matrix(u: np.ndarray, i: np.ndarray) -> sp.csr_matrix:
        return sp.csr_matrix((np.ones(len(u), np.float32), (u, i)), shape=(n_users, n_items))

    test = matrix(su, si) if test_path is not None else None
    return Dataset(n_users, n_items, matrix(tu, ti), None, test)
