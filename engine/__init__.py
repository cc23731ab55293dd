"""bookrec: a book-recommendation analytics engine over DuckDB."""

__version__ = "0.1.0"
