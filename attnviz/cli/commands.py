"""Import every command module so its @app.command() registers."""

from . import info, show, tokens  # noqa: F401
