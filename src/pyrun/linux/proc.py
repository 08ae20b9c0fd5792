"""Reading /proc: process start times and liveness, without ctypes."""
from __future__ import annotations


def stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name, or None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return None
    # comm may contain spaces and parentheses: split after the last ')'.
    return raw[raw.rfind(")") + 2:].split()


def start_time(pid: int) -> int | None:
    """Field 22 (starttime in clock ticks) guards against pid reuse."""
    fields = stat_fields(pid)
    return int(fields[19]) if fields else None


def is_alive(pid: int, expected_start: int | None = None) -> bool:
    """True when `pid` runs (not a zombie) and is the same process we started."""
    fields = stat_fields(pid)
    if not fields or fields[0] in ("Z", "X"):
        return False
    return expected_start is None or int(fields[19]) == expected_start


def exe_id(pid: int) -> list[int] | None:
    """(st_dev, st_ino) of the process's executable: it changes at execve."""
    import os
    try:
        st = os.stat(f"/proc/{pid}/exe")
    except OSError:
        return None
    return [st.st_dev, st.st_ino]
