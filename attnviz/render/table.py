"""Rich tables of attention weights: rows are query tokens, columns key tokens."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table

from ..result import AttentionResult, Stack


def stack_tables(stack: Stack, digits: int = 2) -> list[Table]:
    """One table per (layer, head) of an already-selected stack."""
    tables = []
    for li, layer in enumerate(stack.layer_ids):
        for hi, head in enumerate(stack.head_ids):
            table = Table(title=f"{stack.name} · layer {layer} · head {head}", show_lines=False)
            table.add_column("query \\ key", style="bold")
            for tok in stack.key.texts:
                table.add_column(tok, justify="right")
            for qi, tok in enumerate(stack.query.texts):
                row = stack.weights[li, hi, qi]
                table.add_row(tok, *(f"{v:.{digits}f}" for v in row))
            tables.append(table)
    return tables


def render(result: AttentionResult, digits: int = 2) -> RenderableType:
    return Group(*(t for s in result.stacks for t in stack_tables(s, digits)))
