"""The CRIU flags `checkpoint` and `restore` both take (help.CRIU_FLAGS has
their words): one table, so the two commands cannot drift in a name or kind."""
from __future__ import annotations

from pyrun.cli.parser import Flag

CRIU_FLAGS = {f.names[0]: f for f in (
    Flag(("image-path",), "str"),
    Flag(("work-path",), "str"),
    Flag(("tcp-established",)),
    Flag(("ext-unix-sk",)),
    Flag(("shell-job",)),
    Flag(("lazy-pages",)),
    Flag(("file-locks",)),
    Flag(("manage-cgroups-mode",), "str"),
    Flag(("empty-ns",), "list"),
    Flag(("auto-dedup",)),
)}


def in_order(*flags: str | Flag) -> list[Flag]:
    """A command's flags in runc's order (its help lists them so): a shared
    one by its name, the command's own as a Flag."""
    return [CRIU_FLAGS[f] if isinstance(f, str) else f for f in flags]
