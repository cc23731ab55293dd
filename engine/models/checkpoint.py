"""Model states and training checkpoints on disk: tensors and plain values only, never code.

A file is written with torch.save and read with torch's restricted unpickler
(`weights_only=True`) with nothing allow-listed: tensors, dicts, lists, tuples, str, int, float,
bool and None. A path read from the database may point at a file someone else wrote; a pickle
that names any other class or function is refused before anything in it runs. numpy arrays are
stored as tensors (torch does not allow-list numpy's reconstruct functions, and neither do we).
"""

from __future__ import annotations

import os
import pickle
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from engine.errors import CheckpointError

_PLAIN = (str, int, float, bool, type(None))
# What a pickled numpy array names: states written before states held tensors only.
_OLD_NUMPY = {
    "numpy.core.multiarray._reconstruct",
    "numpy._core.multiarray._reconstruct",
    "numpy.ndarray",
    "numpy.dtype",
}


def check_safe(value: Any, where: str = "state") -> None:
    """Raise TypeError naming the first value that `weights_only` loading would refuse."""
    if isinstance(value, torch.Tensor):
        if type(value) not in (torch.Tensor, torch.nn.Parameter):
            raise TypeError(f"{where} is a {type(value).__name__}; store a plain torch.Tensor")
    elif isinstance(value, dict) and type(value) in (dict, OrderedDict):
        for k, v in value.items():
            if type(k) not in (str, int):
                raise TypeError(f"{where} has a key of type {type(k).__name__}")
            check_safe(v, f"{where}[{k!r}]")
    elif type(value) in (list, tuple):
        for i, v in enumerate(value):
            check_safe(v, f"{where}[{i}]")
    elif type(value) not in _PLAIN:
        raise TypeError(
            f"{where} is a {type(value).__module__}.{type(value).__qualname__}; "
            "store tensors and plain Python values only (torch.from_numpy for arrays)"
        )


def save(obj: dict[str, Any], path: Path) -> Path:
    """Write `obj` atomically (temp file + rename) after checking it loads with weights_only."""
    check_safe(obj)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)
    return path


def load(path: Path, *, hint: str = "Delete the file and retrain the model") -> dict[str, Any]:
    """Read a file written by `save` on the CPU; anything else is a CheckpointError, run nothing."""
    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise _refusal(path, hint) from None
    except (OSError, RuntimeError, EOFError, ValueError) as exc:
        raise CheckpointError(
            f"unreadable model file: {type(exc).__name__}", where=str(path), hint=hint
        ) from None
    if not isinstance(obj, dict):
        raise CheckpointError("not a bookrec model file", where=str(path), hint=hint)
    return obj


def _refusal(path: Path, hint: str) -> CheckpointError:
    """Why weights_only loading failed: an old bookrec file (numpy arrays) or foreign code."""
    try:  # a static scan of the pickle's opcodes: nothing is imported or called
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # noqa: BLE001 - not even a zip: certainly nothing we wrote
        names = []
    if names and all(n in _OLD_NUMPY or n.startswith("numpy.dtypes.") for n in names):
        return CheckpointError(
            "model file saved in an older format (numpy arrays inside); refused to unpickle it",
            where=str(path),
            hint=hint,
        )
    shown = ", ".join(names[:3]) if names else "objects other than tensors"
    return CheckpointError(
        f"refused to load a model file that would run code ({shown})",
        where=str(path),
        hint=f"It was not written by bookrec or was tampered with. {hint}",
    )


def pack_csr(m: sp.csr_matrix) -> dict[str, Any]:
    """A CSR matrix as tensors (indptr, indices, data) and its shape, for a state dict."""
    m = sp.csr_matrix(m)
    return {
        "shape": [int(m.shape[0]), int(m.shape[1])],
        "indptr": torch.from_numpy(np.ascontiguousarray(m.indptr)),
        "indices": torch.from_numpy(np.ascontiguousarray(m.indices)),
        "data": torch.from_numpy(np.ascontiguousarray(m.data)),
    }


def unpack_csr(d: dict[str, Any]) -> sp.csr_matrix:
    """The CSR matrix `pack_csr` stored."""
    return sp.csr_matrix(
        (d["data"].numpy(), d["indices"].numpy(), d["indptr"].numpy()), shape=tuple(d["shape"])
    )
