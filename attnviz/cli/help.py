"""Plain `--help` that teaches: metavars in words, options in panels, examples at the end.

Typer's own plain help prints Python types (`<str>`, `<int range>`), `{TEXT}` in the
usage line, one long option list, and command summaries cut to 45 characters; its rich
help would import rich for every `--help`. These two classes keep click's fast plain
formatter and change only what it says.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from typer import _click as click  # typer's vendored click: the classes its commands are built on
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

# Option panels, in the order a reader needs them: the model and scratch-only flags come last.
INPUT_PANEL = "Input"
SELECT_PANEL = "Selection"
VIEW_PANEL = "View"
LESSON_PANEL = "Lesson"
PROBE_PANEL = "Induction probe"
OUTPUT_PANEL = "Output"
IMAGE_PANEL = "Images"
MODEL_PANEL = "Model"
SCRATCH_PANEL = "Scratch model (--model scratch)"
PANEL_ORDER = (
    INPUT_PANEL,
    SELECT_PANEL,
    VIEW_PANEL,
    LESSON_PANEL,
    PROBE_PANEL,
    OUTPUT_PANEL,
    IMAGE_PANEL,
    MODEL_PANEL,
    SCRATCH_PANEL,
    "Options",
)


def _metavar(param: TyperOption | TyperArgument) -> str:
    """What a value looks like, in words: a choice list, N, X, FILE or the name."""
    if param.metavar:
        return param.metavar
    kind = param.type_descriptor
    if kind.choices is not None:
        return "|".join(str(getattr(choice, "value", choice)) for choice in kind.choices)
    if kind.is_path:
        return "FILE"
    words = {int: "N", float: "X"}
    return words.get(kind.annotation, (param.name or "value").upper())


class Command(TyperCommand):
    """A command whose help shows words for values, option panels and an Examples block."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            is_flag = getattr(param, "is_flag", False) or getattr(param, "count", False)
            if isinstance(param, (TyperOption, TyperArgument)) and not is_flag:
                param.metavar = _metavar(param)

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        pieces = [self.options_metavar or "[OPTIONS]"]
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                name = param.metavar or (param.name or "").upper()
                name += "..." if param.nargs != 1 else ""
                pieces.append(name if param.required else f"[{name}]")
        return pieces

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        arguments = []
        panels: dict[str, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            if getattr(param, "hidden", False):
                continue
            if param.param_type_name == "argument":
                arguments.append((param.metavar or (param.name or "").upper(), getattr(param, "help", "") or ""))
                continue
            record = param.get_help_record(ctx)
            if record is not None:
                panels.setdefault(getattr(param, "rich_help_panel", None) or "Options", []).append(record)
        if arguments:
            with formatter.section("Arguments"):
                formatter.write_dl(arguments)
        for panel in sorted(panels, key=lambda p: PANEL_ORDER.index(p) if p in PANEL_ORDER else len(PANEL_ORDER)):
            with formatter.section(panel):
                formatter.write_dl(panels[panel])

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        write_examples(formatter, self.epilog)


class Group(TyperGroup):
    """The root: every command's whole summary line, never cut, then examples. Commands are
    built when first asked for (`lazy`), so `--help` imports no command module."""

    summaries: dict[str, str] = {}  # name → summary line, in the order help lists them
    loader: Callable[[str], click.Command] | None = None

    @classmethod
    def lazy(cls, summaries: dict[str, str], loader: Callable[[str], click.Command]) -> type[Group]:
        """A Group class whose commands are `summaries`' names, each built by `loader` on first use."""
        return type("LazyGroup", (cls,), {"summaries": summaries, "loader": staticmethod(loader)})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*self.summaries, *(n for n in super().list_commands(ctx) if n not in self.summaries)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.summaries and self.loader is not None:
            self.add_command(self.loader(cmd_name), cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            if name in self.summaries:
                rows.append((name, self.summaries[name]))
                continue
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, summary(command.help or "")))
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        write_examples(formatter, self.epilog)


def summary(help_text: str) -> str:
    """A command's first paragraph, joined into one line."""
    return " ".join(help_text.strip().split("\n\n")[0].split())


def write_examples(formatter: click.HelpFormatter, epilog: str | None) -> None:
    """The epilog as written: `# what it does` lines over the command, never re-wrapped."""
    if not epilog:
        return
    lines: Sequence[str] = epilog.strip("\n").splitlines()
    formatter.write_paragraph()
    formatter.write_text("Examples:")
    for line in lines:
        formatter.write(f"{' ' * (formatter.current_indent + 2)}{line}\n" if line else "\n")
