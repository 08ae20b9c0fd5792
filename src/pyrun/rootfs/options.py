"""The OCI/fstab mount option table: what each option word means to mount(2)."""
from __future__ import annotations

from dataclasses import dataclass, field

from pyrun.linux import syscalls as s

# option -> (flags to set, flags to clear)
FLAGS: dict[str, tuple[int, int]] = {
    "async": (0, s.MS_SYNCHRONOUS), "sync": (s.MS_SYNCHRONOUS, 0),
    "atime": (0, s.MS_NOATIME), "noatime": (s.MS_NOATIME, 0),
    "bind": (s.MS_BIND, 0), "rbind": (s.MS_BIND | s.MS_REC, 0),
    "defaults": (0, 0),
    "dev": (0, s.MS_NODEV), "nodev": (s.MS_NODEV, 0),
    "diratime": (0, s.MS_NODIRATIME), "nodiratime": (s.MS_NODIRATIME, 0),
    "dirsync": (s.MS_DIRSYNC, 0),
    "exec": (0, s.MS_NOEXEC), "noexec": (s.MS_NOEXEC, 0),
    "iversion": (s.MS_I_VERSION, 0), "noiversion": (0, s.MS_I_VERSION),
    "lazytime": (s.MS_LAZYTIME, 0), "nolazytime": (0, s.MS_LAZYTIME),
    "loud": (0, s.MS_SILENT), "silent": (s.MS_SILENT, 0),
    "mand": (s.MS_MANDLOCK, 0), "nomand": (0, s.MS_MANDLOCK),
    "relatime": (s.MS_RELATIME, 0), "norelatime": (0, s.MS_RELATIME),
    "strictatime": (s.MS_STRICTATIME, 0), "nostrictatime": (0, s.MS_STRICTATIME),
    "remount": (s.MS_REMOUNT, 0),
    "ro": (s.MS_RDONLY, 0), "rw": (0, s.MS_RDONLY),
    "suid": (0, s.MS_NOSUID), "nosuid": (s.MS_NOSUID, 0),
    "symfollow": (0, s.MS_NOSYMFOLLOW), "nosymfollow": (s.MS_NOSYMFOLLOW, 0),
}

PROPAGATION: dict[str, int] = {
    "private": s.MS_PRIVATE, "rprivate": s.MS_PRIVATE | s.MS_REC,
    "shared": s.MS_SHARED, "rshared": s.MS_SHARED | s.MS_REC,
    "slave": s.MS_SLAVE, "rslave": s.MS_SLAVE | s.MS_REC,
    "unbindable": s.MS_UNBINDABLE, "runbindable": s.MS_UNBINDABLE | s.MS_REC,
}

# Recursive attributes (mount_setattr); accepted and applied as their
# non-recursive flag on every mount of the subtree we create.
RECURSIVE: dict[str, str] = {
    "r" + name: name for name in ("ro", "rw", "nosuid", "suid", "nodev", "dev", "noexec", "exec",
                                  "nodiratime", "diratime", "relatime", "norelatime", "noatime",
                                  "atime", "strictatime", "nostrictatime", "nosymfollow", "symfollow")
}

# Options that steer the runtime rather than the kernel.
EXTENSIONS = {"tmpcopyup", "idmap", "ridmap"}


@dataclass
class MountOptions:
    flags: int = 0
    clear: int = 0
    propagation: list[int] = field(default_factory=list)
    data: list[str] = field(default_factory=list)
    extensions: set[str] = field(default_factory=set)

    @property
    def is_bind(self) -> bool:
        return bool(self.flags & s.MS_BIND)

    @property
    def data_string(self) -> str | None:
        return ",".join(self.data) or None


def parse(options: list[str]) -> MountOptions:
    out = MountOptions()
    for opt in options:
        if opt in FLAGS:
            set_, clear = FLAGS[opt]
            out.flags = (out.flags | set_) & ~clear
            out.clear = (out.clear | clear) & ~set_
        elif opt in PROPAGATION:
            out.propagation.append(PROPAGATION[opt])
        elif opt in RECURSIVE:
            set_, clear = FLAGS[RECURSIVE[opt]]
            out.flags = (out.flags | set_) & ~clear
        elif opt in EXTENSIONS:
            out.extensions.add(opt)
        else:
            out.data.append(opt)
    return out
