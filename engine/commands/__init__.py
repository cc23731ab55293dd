"""CLI subcommands, one module per stage; engine.cli registers every module's `commands`."""
