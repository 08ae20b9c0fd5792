"""`python -m pyrun` entry point."""
import sys

from pyrun.cli.main import main

sys.exit(main())
