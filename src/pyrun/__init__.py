"""pyrun: an OCI runtime-spec compliant container runtime, a drop-in for runc."""
__version__ = "0.1.0"
SPEC_VERSION = "1.3.0"


def program() -> str:
    """The name pyrun answers to in help, --version and errors: the name it
    was run by, so installed as `runc` (a drop-in) it says runc, as callers
    and runc's own tests expect; `pyrun` when run as a module."""
    import sys
    name = sys.argv[0].rpartition("/")[2] if sys.argv and sys.argv[0] else ""
    return name if name and not name.endswith(".py") and name != "-c" else "pyrun"
