"""`python -m pyrun` entry point."""

from pyrun.cli.main import exit_now, main

if __name__ == "__main__":
    exit_now(main())
