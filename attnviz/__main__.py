"""`python -m attnviz` runs the CLI."""

from attnviz.cli import main

if __name__ == "__main__":  # export's drawing processes re-import this module: run only when executed
    main()
