"""`roboaug`: the command line of the gateway, built on roboaug.api.client (install
`roboaug-api[client]`). `main(argv)` returns the exit code (see app.Exit)."""

from .app import Exit, main

__all__ = ["Exit", "main"]
