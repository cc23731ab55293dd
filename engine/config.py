"""Settings: one frozen dataclass per stage; defaults < TOML file < environment < CLI flags."""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from engine.errors import ConfigError

T = TypeVar("T")

DEFAULT_DB = Path("data") / "bookrec.duckdb"
CONFIG_ENV = "BOOKREC_CONFIG"
DEFAULT_CONFIG_FILE = Path("bookrec.toml")


def default_db_path() -> Path:
    """The DuckDB file used when no --db is given: $BOOKREC_DB or data/bookrec.duckdb."""
    return Path(os.environ.get("BOOKREC_DB", DEFAULT_DB))


def _toml_section(section: str, path: Path | None) -> dict[str, Any]:
    path = path or Path(os.environ.get(CONFIG_ENV, DEFAULT_CONFIG_FILE))
    if not path.exists():
        if os.environ.get(CONFIG_ENV) and path == Path(os.environ[CONFIG_ENV]):
            raise ConfigError("config file not found", where=str(path), hint=f"Fix ${CONFIG_ENV}")
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", where=str(path)) from None
    value = data.get(section, {})
    if not isinstance(value, dict):
        raise ConfigError(f"[{section}] must be a table", where=str(path))
    return value


def _coerce(name: str, raw: Any, hint: Any) -> Any:
    """Turn a TOML/env value into the field's declared type."""
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if raw is None or (isinstance(raw, str) and raw.lower() in ("", "none", "null")):
            return None
        hint = args[0]
        origin = typing.get_origin(hint)
    try:
        if hint is bool:
            if isinstance(raw, bool):
                return raw
            if str(raw).lower() in ("1", "true", "yes", "on"):
                return True
            if str(raw).lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if hint in (int, float, str):
            return hint(raw)
        if hint is Path:
            return Path(raw)
        if origin in (tuple, list):
            items = raw.split(",") if isinstance(raw, str) else list(raw)
            (inner, *_rest) = typing.get_args(hint) or (str,)
            return tuple(
                _coerce(name, i.strip() if isinstance(i, str) else i, inner) for i in items
            )
        if origin is dict:
            return dict(raw)
        if origin is typing.Literal:
            if raw not in typing.get_args(hint):
                raise ValueError(raw)
            return raw
    except (TypeError, ValueError):
        raise ConfigError(f"setting {name}={raw!r} is not a valid {hint}") from None
    return raw


def load_settings(
    cls: type[T],
    section: str,
    overrides: dict[str, Any] | None = None,
    *,
    config_file: Path | None = None,
    environ: dict[str, str] | None = None,
) -> T:
    """Build settings of type `cls` for `section` from TOML, BOOKREC_<SECTION>_<FIELD> env and overrides."""
    environ = dict(os.environ) if environ is None else environ
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    for key, raw in _toml_section(section, config_file).items():
        key = key.replace("-", "_")
        if key not in fields:
            raise ConfigError(
                f"unknown setting [{section}] {key}", hint=f"Known: {', '.join(sorted(fields))}"
            )
        values[key] = _coerce(key, raw, hints[key])
    prefix = f"BOOKREC_{section.upper()}_"
    for env_key, raw in environ.items():
        if env_key.startswith(prefix):
            key = env_key[len(prefix) :].lower()
            if key in fields:
                values[key] = _coerce(key, raw, hints[key])
    for key, raw in (overrides or {}).items():
        if raw is None:
            continue
        if key not in fields:
            raise ConfigError(f"unknown setting {key} for {section}")
        values[key] = _coerce(key, raw, hints[key])
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid [{section}] settings: {exc}") from None


def as_dict(settings: Any) -> dict[str, Any]:
    """Settings as a JSON-friendly dict (paths as strings), for fingerprints and run records."""
    out = {}
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        out[f.name] = (
            str(value)
            if isinstance(value, Path)
            else (list(value) if isinstance(value, tuple) else value)
        )
    return out
