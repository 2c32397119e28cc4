"""Drawing a renderable on a fixed-width console, the same way in every render test."""

from __future__ import annotations

import io

from rich.console import Console, RenderableType


def draw(renderable: RenderableType, width: int, color: bool = False) -> str:
    """What `renderable` prints on a `width`-column console, truecolor or colourless."""
    out = io.StringIO()
    console = Console(
        file=out,
        width=width,
        color_system="truecolor" if color else None,
        force_terminal=color,
        legacy_windows=False,
        _environ={},  # ignore NO_COLOR / COLUMNS from the test environment
    )
    console.print(renderable)
    return out.getvalue()
