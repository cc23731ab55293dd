"""Named exceptions: every user-facing failure is one of these, shown as one clear line."""

from __future__ import annotations


class BookrecError(Exception):
    """Base of every error a user can cause; the CLI prints it as one line, no traceback."""

    exit_code = 1

    def __init__(self, what: str, *, where: str | None = None, hint: str | None = None):
        self.what, self.where, self.hint = what, where, hint
        super().__init__(self.line())

    def line(self) -> str:
        """What went wrong, where, and what to do, on one line."""
        parts = [self.what]
        if self.where:
            parts.append(f"({self.where})")
        text = " ".join(parts)
        return f"{text}. {self.hint}" if self.hint else text


class InputFileError(BookrecError):
    """An input file is missing, empty or unreadable."""

    exit_code = 2


class FormatError(BookrecError):
    """An input file is in a format we cannot recognise or parse."""

    exit_code = 2


class ConfigError(BookrecError):
    """A setting (flag, environment variable, TOML file) is invalid."""

    exit_code = 2


class DatabaseError(BookrecError):
    """The DuckDB file is missing, locked or not a bookrec database."""

    exit_code = 3


class StageNotReadyError(BookrecError):
    """A stage needs the output of an earlier stage that has not run yet."""

    exit_code = 4


class UnknownEntityError(BookrecError):
    """A user id, ISBN, model or run that does not exist."""

    exit_code = 5


class ProviderError(BookrecError):
    """An enrichment provider (LLM API or local model) cannot be used."""

    exit_code = 6


class CheckpointError(BookrecError):
    """A model state or training checkpoint file cannot be loaded safely (foreign, old or corrupt)."""

    exit_code = 7
