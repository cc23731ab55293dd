"""Recommenders behind one interface (engine.models.base): MF-BPR, LightGCN, NCF, GF-CF, EASE."""

from engine.models.base import (
    Dataset,
    FitResult,
    Recommender,
    build,
    from_state,
    register,
    registered,
)

__all__ = ["Dataset", "FitResult", "Recommender", "build", "from_state", "register", "registered"]
