"""What a newcomer sees, pinned at 80 and 120 columns: every --help, the default show, a long
input, explain's opening. On a pipe no line ends in a space. UPDATE_GOLDEN=1 rewrites them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from harness import check_golden, run

COMMANDS = ("", "show", "render", "export", "heads", "explain", "tokens", "info")
WIDTHS = ("80", "120")
LONG = " ".join((Path(__file__).parent.parent / "sample_inputs" / "long.txt").read_text().split() * 2)  # ~300 tokens


def no_trailing_spaces(text: str) -> None:
    assert not [line for line in text.splitlines() if line.endswith(" ")]


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("command", COMMANDS)
def test_help(command, width):
    out = run(*([command] if command else []), "--help", env={"COLUMNS": width})
    assert out.code == 0 and out.stderr == ""
    text = out.stdout
    no_trailing_spaces(text)
    assert not re.search(r"<(str|int|float|list|bool)[^>]*>|\{\w+\}", text), "a Python type leaks into --help"
    assert "..." not in text.replace("TEXT...", "").replace("[ARGS]...", "")  # no cut summaries
    assert "Examples:" in text and "attnviz " in text.split("Examples:")[1]
    check_golden(f"help-{command or 'attnviz'}-{width}", text)


@pytest.mark.parametrize("width", WIDTHS)
def test_default_show(width):
    out = run("show", "I have a dream", env={"COLUMNS": width})
    no_trailing_spaces(out.stdout)
    assert len(out.stdout.splitlines()) <= 50
    check_golden(f"show-default-{width}", out.stdout)


def test_long_input_uses_the_width():
    """300 tokens at 120 columns: the glance fits a screen, and --head all tiles the heatmaps."""
    glance = run("show", LONG, env={"COLUMNS": "120"})
    assert glance.code == 0, glance.stderr
    no_trailing_spaces(glance.stdout)
    check_golden("show-long-120", glance.stdout)
    every = run("show", LONG, "--head", "all", env={"COLUMNS": "120"}).stdout
    assert any(line.startswith("head 0") and "head 2" in line for line in every.splitlines())  # side by side
    assert len(every.splitlines()) < 200


@pytest.mark.parametrize("width", WIDTHS)
def test_explain_opening(width):
    out = run("explain", "I have a dream", env={"COLUMNS": width})
    no_trailing_spaces(out.stdout)
    opening = "\n".join(out.stdout.splitlines()[:14]) + "\n"
    check_golden(f"explain-opening-{width}", opening)


def test_the_roots_summaries_are_the_commands_own():
    """The root's --help lists COMMANDS without importing a command; each line must be the
    first paragraph of that command's docstring, as its own --help shows it."""
    import importlib
    import inspect

    from attnviz.cli.app import COMMANDS
    from attnviz.cli.help import summary

    for name, line in COMMANDS.items():
        function = getattr(importlib.import_module(f"attnviz.cli.{name}"), name)
        assert line == summary(inspect.getdoc(function) or ""), name


def test_the_roots_help_imports_no_command_module():
    import subprocess
    import sys

    code = "import sys; from attnviz.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
    code += "print(sorted(m for m in sys.modules if m.startswith('attnviz.cli.') and m.split('.')[-1] in "
    code += "('show', 'render', 'export', 'heads', 'explain', 'tokens', 'info')), file=sys.stderr)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stderr.strip() == "[]"
