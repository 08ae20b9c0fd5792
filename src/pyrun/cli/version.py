"""`pyrun --version` in runc's shape, which callers parse (`<name> version X`):

    pyrun version 0.1.0
    commit: <the git commit pyrun runs from, or "unknown">
    spec: 1.3.0
    python: 3.11.2
    libseccomp: 2.5.4

Cheap on purpose: the commit is read from the checkout's .git files and the
libseccomp version from the shared library's file name, with no subprocess,
ctypes or pyseccomp import.
"""
from __future__ import annotations

import os
import sys

_LIB_DIRS = ("/lib", "/usr/lib", "/lib64", "/usr/lib64", "/usr/local/lib")


def version_text() -> str:
    """What follows "pyrun version " (runc's cli.App.Version, with its extra lines)."""
    from pyrun import SPEC_VERSION, __version__
    lines = [__version__, f"commit: {commit()}", f"spec: {SPEC_VERSION}",
             "python: %d.%d.%d" % sys.version_info[:3]]
    seccomp = libseccomp_version()
    if seccomp:                 # runc too leaves the line out when it has no libseccomp
        lines.append(f"libseccomp: {seccomp}")
    return "\n".join(lines)


def commit() -> str:
    """$PYRUN_COMMIT (set by a packager), else HEAD of the git checkout pyrun's
    sources are in, else "unknown"."""
    env = os.environ.get("PYRUN_COMMIT")
    if env:
        return env
    try:
        return _git_head(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    except (OSError, ValueError):
        return "unknown"


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def _git_head(top: str) -> str:
    """HEAD's commit from the files git keeps: a .git directory, or a worktree's
    `.git` file naming its gitdir (whose `commondir` holds the shared refs)."""
    for checkout in (top, os.path.dirname(top)):     # src/ layout or a flat one
        dotgit = os.path.join(checkout, ".git")
        if os.path.isdir(dotgit):
            gitdir = dotgit
            break
        if os.path.isfile(dotgit):
            text = _read(dotgit)
            if not text.startswith("gitdir: "):
                raise ValueError(dotgit)
            gitdir = os.path.join(checkout, text[len("gitdir: "):])
            break
    else:
        raise ValueError("not a git checkout")
    head = _read(os.path.join(gitdir, "HEAD"))
    if not head.startswith("ref: "):
        return _sha(head)
    ref = head[len("ref: "):]
    common = gitdir
    if os.path.exists(os.path.join(gitdir, "commondir")):
        common = os.path.normpath(os.path.join(gitdir, _read(os.path.join(gitdir, "commondir"))))
    for base in (gitdir, common):
        try:
            return _sha(_read(os.path.join(base, ref)))
        except FileNotFoundError:
            pass
    with open(os.path.join(common, "packed-refs")) as f:
        for line in f:
            sha, _, name = line.strip().partition(" ")
            if name == ref:
                return _sha(sha)
    raise ValueError(ref)


def _sha(text: str) -> str:
    if len(text) != 40 or text.strip("0123456789abcdef"):
        raise ValueError(text)
    return text


def libseccomp_version() -> str | None:
    """x.y.z from libseccomp.so.2's target (libseccomp.so.2.5.4), the library
    pyseccomp loads; None when the host has none."""
    arch = getattr(sys.implementation, "_multiarch", "")
    dirs = [os.path.join(d, arch) for d in _LIB_DIRS if arch] + list(_LIB_DIRS)
    for d in dirs:
        real = os.path.realpath(os.path.join(d, "libseccomp.so.2"))
        name = os.path.basename(real)
        if name.startswith("libseccomp.so.") and os.path.exists(real):
            version = name[len("libseccomp.so."):]
            if version.count(".") == 2 and version.replace(".", "").isdigit():
                return version
    return None
