"""Data loaders for interaction formats outside the DuckDB store (benchmarks)."""
