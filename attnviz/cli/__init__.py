"""The command line: one module per command, sharing options from options.py."""

from .app import app, main

__all__ = ["app", "main"]
