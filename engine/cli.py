"""`bookrec`: a thin CLI; each subcommand is a few lines calling one stage of the engine."""

from __future__ import annotations

import importlib
import sys

import click

from engine import __version__
from engine.errors import BookrecError

# One module per stage under engine/commands; each exposes `commands`, a list of click commands.
COMMAND_MODULES = [
    "engine.commands.core",
    "engine.commands.ingest",
    "engine.commands.enrich",
    "engine.commands.sample",
    "engine.commands.facets",
    "engine.commands.models",
    "engine.commands.tune",
    "engine.commands.bench",
    "engine.commands.serve",
    "engine.commands.export",
]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="bookrec")
def cli() -> None:
    """bookrec: Book-Crossing into DuckDB, enrichment, facets, recommenders and a dashboard."""


for _name in COMMAND_MODULES:
    for _command in importlib.import_module(_name).commands:
        cli.add_command(_command)


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors become one line on stderr and a non-zero exit, never a traceback."""
    try:
        cli.main(args=argv, prog_name="bookrec", standalone_mode=False)
    except BookrecError as exc:
        click.echo(f"bookrec: error: {exc.line()}", err=True)
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("bookrec: interrupted", err=True)
        return 130
    except KeyboardInterrupt:
        click.echo("bookrec: interrupted; the database keeps its last good state", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
