"""attnviz: see which token attends to which, per layer and head, from the command line.

    >>> from attnviz import extract
    >>> result = extract("I have a dream")          # embedded all-MiniLM-L6-v2
    >>> result.stack("encoder").weights.shape       # [layers, heads, q, k]
    (6, 12, 6, 6)

Heavy modules (torch, transformers) load on first use, so `import attnviz` is cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["AttentionResult", "Stack", "Tokens", "extract", "__version__"]

if TYPE_CHECKING:
    from .api import extract
    from .result import AttentionResult, Stack, Tokens


def __getattr__(name: str) -> Any:
    if name == "extract":
        from .api import extract

        return extract
    if name in ("AttentionResult", "Stack", "Tokens"):
        from . import result

        return getattr(result, name)
    raise AttributeError(f"module 'attnviz' has no attribute {name!r}")
