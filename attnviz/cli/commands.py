"""Import every command module so its @app.command() registers."""

from . import explain, export, info, show, tokens  # noqa: F401
