"""Evaluation: full-ranking metrics (and the sampled metric) shared by every model."""
