"""attnviz: see which token attends to which, per layer and head, from the command line.

    >>> from attnviz import extract, load, views
    >>> result = extract("I have a dream")          # embedded all-MiniLM-L6-v2
    >>> result.stack("encoder").weights.shape       # [layers, heads, q, k]
    (6, 12, 6, 6)
    >>> views.rollout(result).stack("encoder").weights.shape
    (1, 1, 6, 6)
    >>> load("saved.jsonl")                         # every result attnviz wrote to a file

Heavy modules (torch, transformers) load on first use, so `import attnviz` is cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"
__all__ = ["AttentionResult", "Stack", "Tokens", "ViewSpec", "extract", "load", "views", "__version__"]

if TYPE_CHECKING:
    from . import views
    from .api import extract
    from .result import AttentionResult, Stack, Tokens
    from .saved import load
    from .spec import ViewSpec


def __getattr__(name: str) -> Any:
    """The public names, each imported on first use (explicitly, so the import-cycle test sees them)."""
    if name == "extract":
        from .api import extract

        return extract
    if name == "load":
        from .saved import load

        return load
    if name == "views":
        import attnviz.views  # not `from . import views`: that would ask this very function again

        return attnviz.views
    if name in ("AttentionResult", "Stack", "Tokens"):
        from . import result

        return getattr(result, name)
    if name == "ViewSpec":
        from .spec import ViewSpec

        return ViewSpec
    raise AttributeError(f"module 'attnviz' has no attribute {name!r}")
