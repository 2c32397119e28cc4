"""`python -m attnviz` runs the CLI."""

from attnviz.cli import main

main()
