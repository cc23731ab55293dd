"""Up-front memory estimates: a model refuses, with what it would need, before allocating it.

One place for the budget (MemAvailable capped by a cgroup limit, free GPU memory, or a setting),
the size formulas and the refusal message, so EASE, GF-CF and ChebyCF say the same thing the same
way instead of being killed by the kernel halfway through a fit.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from engine.errors import ConfigError

FLOAT = 4  # bytes of a float32
# Users scored together by the evaluator and the top-N write-back ([evaluate] batch_size default):
# every model's score() returns a dense [rows, n_items] float32 block of this many rows.
SCORE_ROWS = 1024
# What to use instead of a model with a dense item x item matrix (sparse top-k, no n x n).
SPARSE_HINT = "Use itemknn or rp3beta (sparse top-k item-item weights, no n x n matrix)"


def available_memory_bytes() -> int:
    """Memory this process may still take: MemAvailable, capped by a cgroup v2 limit if any."""
    avail = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text())
        if limit != "max":
            avail = min(avail, int(limit) - used)
    except (OSError, ValueError):
        pass
    return max(avail, 0)


def budget(device: torch.device, memory_gb: float = 0.0, setting: str = "") -> tuple[int, str]:
    """(bytes a model may take, where that figure comes from): a setting, free GPU memory or RAM."""
    if memory_gb > 0:
        return int(memory_gb * 2**30), f"allowed by {setting or 'memory_gb'}"
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0]), f"free on {device}"
    return available_memory_bytes(), "available"


def gb(n_bytes: float) -> str:
    """Bytes as GB (GiB) for a message: one decimal, thousands separated."""
    return f"{n_bytes / 2**30:,.1f} GB"


def dense_items_bytes(n_items: int) -> int:
    """One dense n x n float32 item x item matrix."""
    return n_items * n_items * FLOAT


def dense_items_text(n_items: int) -> str:
    """'a dense 30 x 30 float32 item matrix (0.0 GB)': how a refusal names the matrix."""
    return (
        f"a dense {n_items:,} x {n_items:,} float32 item matrix ({gb(dense_items_bytes(n_items))})"
    )


def dense_fit(n_items: int, copies: int, budget_bytes: int) -> int:
    """The largest catalogue whose dense item matrix, `copies` times, fits `budget_bytes`."""
    return int((budget_bytes / (FLOAT * copies)) ** 0.5)


def svd_bytes(n_rows: int, n_cols: int, k: int, oversample: int = 10) -> int:
    """Randomized SVD of a sparse n_rows x n_cols matrix: ~3 dense (rows + cols) x (k + p) float32."""
    return 3 * (n_rows + n_cols) * (k + oversample) * FLOAT


def score_block_bytes(n_items: int, rows: int = SCORE_ROWS, copies: int = 1) -> int:
    """Dense [rows, n_items] float32 score blocks (the evaluator masks and ranks them in place)."""
    return copies * rows * n_items * FLOAT


def embedding_bytes(n_users: int, n_items: int, dim: int, copies: int = 4) -> int:
    """(users + items) x dim float32 tables; 4 copies = weights, gradient, Adam's two moments."""
    return copies * (n_users + n_items) * dim * FLOAT


def sparse_topk_bytes(n_items: int, topk: int, nnz: int, block_mb: int = 256) -> int:
    """Item-item W pruned to top-k per row (CSR + its transpose) + the training CSR + one block."""
    return 2 * n_items * topk * 8 + 3 * nnz * 8 + 3 * block_mb * 2**20


def require(
    model: str,
    need: int,
    what: str,
    hint: str,
    budget_bytes: int,
    where: str = "available",
) -> None:
    """Raise ConfigError "<model> would need <what> (about N GB) but only M GB is <where>" when
    `need` exceeds `budget_bytes`; `hint` says what to run instead. Nothing is allocated here."""
    if need > budget_bytes:
        raise ConfigError(
            f"{model} would need {what}: about {gb(need)}, but only {gb(budget_bytes)} is {where}",
            hint=hint,
        )
