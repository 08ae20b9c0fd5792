"""`ps`: the container's processes, as host pids or as lines of host `ps`."""
from __future__ import annotations

import subprocess

from pyrun.errors import PyrunError
from pyrun.state.store import ContainerDir


def pids(root: str, container_id: str) -> list[int]:
    """Every pid in the container's cgroups (sub-cgroups included), as runc's
    Processes(); read without the lock, like `state`."""
    from pyrun.cgroups.manager import load
    with ContainerDir.open(root, container_id, lock=False) as cdir:
        state = cdir.load()
    return load(state).pids()


def table(root: str, container_id: str, ps_args: list[str]) -> str:
    """Host `ps` output (default `-ef`): its header, then the container's lines."""
    wanted = set(pids(root, container_id))
    try:
        proc = subprocess.run(["ps", *(ps_args or ["-ef"])], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    except OSError as e:
        raise PyrunError(f'exec: "ps": {e.strerror.lower() if e.strerror else e}') from None
    if proc.returncode != 0:
        raise PyrunError(f"exit status {proc.returncode}: {proc.stdout}")
    lines = proc.stdout.split("\n")
    header = lines[0].split()
    if "PID" not in header:
        raise PyrunError("couldn't find PID field in ps output")
    index = header.index("PID")
    out = [lines[0]]
    for line in lines[1:]:
        if not line:
            continue
        fields = line.split()
        try:
            pid = int(fields[index])
        except (IndexError, ValueError):
            raise PyrunError(f'unable to parse pid: strconv.Atoi: parsing "{fields[index] if index < len(fields) else ""}": invalid syntax') from None
        if pid in wanted:
            out.append(line)
    return "\n".join(out) + "\n"
