"""The OCI/fstab mount option table: what each option word means to mount(2)."""
from __future__ import annotations

from pyrun.records import dataclass, field   # not dataclasses: ~4 ms of imports

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

# Recursive attributes: applied with mount_setattr(AT_RECURSIVE) to the new
# mount and every mount below it (mount(2) flags only reach the top one).
# option -> (MOUNT_ATTR_* to set, MOUNT_ATTR_* to clear)
_ATTR = {"ro": 0x1, "nosuid": 0x2, "nodev": 0x4, "noexec": 0x8, "nodiratime": 0x80,
         "nosymfollow": 0x200000}
_ATIME_MASK = 0x70
RECURSIVE_ATTRS: dict[str, tuple[int, int]] = {
    **{"r" + name: (bit, 0) for name, bit in _ATTR.items()},
    "rrw": (0, 0x1), "rsuid": (0, 0x2), "rdev": (0, 0x4), "rexec": (0, 0x8),
    "rdiratime": (0, 0x80), "rsymfollow": (0, 0x200000),
    "rrelatime": (0x0, _ATIME_MASK), "rnoatime": (0x10, _ATIME_MASK),
    "rstrictatime": (0x20, _ATIME_MASK), "ratime": (0x0, _ATIME_MASK),
    "rnorelatime": (0x0, 0), "rnostrictatime": (0x0, 0),
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
    attr_set: int = 0          # MOUNT_ATTR_* for mount_setattr(AT_RECURSIVE)
    attr_clr: int = 0

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
        elif opt in RECURSIVE_ATTRS:
            set_, clear = RECURSIVE_ATTRS[opt]
            out.attr_set = (out.attr_set & ~clear) | set_
            if clear == _ATIME_MASK:      # the kernel wants the whole atime field cleared
                out.attr_clr |= _ATIME_MASK
            else:
                out.attr_clr = (out.attr_clr | clear) & ~set_
        elif opt in EXTENSIONS:
            out.extensions.add(opt)
        else:
            out.data.append(opt)
    return out


def flag_names(flags: int) -> list[str]:
    """MS_* bits as option words (`pyrun explain`), in the table's order."""
    return [name for name, (set_, _clear) in FLAGS.items()
            if set_ and flags & set_ == set_ and name not in ("bind", "rbind", "remount")] + \
        [w for w, bit in (("bind", s.MS_BIND), ("rec", s.MS_REC), ("remount", s.MS_REMOUNT)) if flags & bit]


def propagation_name(flags: int) -> str:
    return next(name for name, value in PROPAGATION.items() if value == flags)
