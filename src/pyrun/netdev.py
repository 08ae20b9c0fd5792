"""linux.netDevices (runtime-spec 1.3): move host interfaces into the container.

The parent does it once the init's pid is known and before the init reports
ready, so the container's process never runs without its devices:

  1. read the interface's permanent, global-scope addresses (the kernel drops
     every address when a device changes namespace);
  2. make sure the new name is free in the container's namespace (the spec's
     MUST; the kernel would move the device first and only then fail the
     rename, stranding it there), set it down on the host, then move and
     rename it in one RTM_NEWLINK (IFLA_NET_NS_FD + IFLA_IFNAME), so the new
     name never has to be free on the host;
  3. inside the container's namespace, re-add the addresses and set it up.

Per the spec, nothing moves the device back: when the namespace goes away the
kernel returns physical devices to the initial namespace and destroys virtual
ones (a veth takes its peer along).

pyroute2 is imported here only, and only when netDevices is set.
"""
from __future__ import annotations

import os
import re
import socket
TYPE_CHECKING = False     # typing costs ~2 ms to import; annotations are lazy
if TYPE_CHECKING:
    from typing import Any

from pyrun.errors import ConfigError, PyrunError

FIELD = "linux.netDevices"
IFNAMSIZ = 16

# include/uapi/linux/if_addr.h
IFA_F_PERMANENT = 0x80
# Address flags a user may set, kept when the address is re-added.
_USER_IFA_FLAGS = 0x02 | 0x10 | 0x100 | 0x200 | 0x400   # NODAD HOMEADDRESS MNGTMPADDR NOPREFIXROUTE MCAUTOJOIN
RT_SCOPE_UNIVERSE = 0
IFF_UP = 0x1


def valid_name(name: Any) -> bool:
    """The kernel's dev_valid_name, plus its rule for one "%d" template."""
    if not isinstance(name, str) or not name or len(name.encode()) >= IFNAMSIZ:
        return False
    if name in (".", "..") or any(c in name for c in "/:") or any(c.isspace() for c in name):
        return False
    if "%" in name:
        i = name.index("%")
        if name[i + 1:i + 2] != "d" or "%" in name[i + 2:]:
            return False
    return True


def validate(linux: dict[str, Any]) -> None:
    """At create: netDevices needs a network namespace of the container's own,
    valid names, and devices that exist in the runtime's namespace (the spec's
    "MUST check if moving the network interface ... is possible")."""
    devices = linux.get("netDevices")
    if not devices:
        return
    if not isinstance(devices, dict):
        raise ConfigError(f"{FIELD}: must be an object")
    netns = next((ns for ns in linux.get("namespaces") or [] if ns.get("type") == "network"), None)
    if netns is None:
        raise ConfigError(f"{FIELD}: unable to move network devices without a private network namespace "
                          "(add a \"network\" entry to linux.namespaces)")
    if netns.get("path") and _same_file(netns["path"], "/proc/self/ns/net"):
        raise ConfigError(f"{FIELD}: unable to move network devices into the runtime's own network namespace "
                          f"({netns['path']})")
    new_names: dict[str, str] = {}
    for host_name, dev in devices.items():
        if not valid_name(host_name) or "%" in host_name:
            raise ConfigError(f"{FIELD}: invalid network device name {host_name!r}")
        if dev is not None and not isinstance(dev, dict):
            raise ConfigError(f"{FIELD}.{host_name}: must be an object")
        new = (dev or {}).get("name") or host_name
        if not valid_name(new):
            raise ConfigError(f"{FIELD}.{host_name}.name: invalid network device name {new!r}")
        if "%" not in new and new in new_names:
            raise ConfigError(f"{FIELD}.{host_name}.name: {new!r} is also the name of {new_names[new]!r}")
        new_names[new] = host_name
        try:
            socket.if_nametoindex(host_name)
        except OSError:
            raise ConfigError(f"{FIELD}: network device {host_name!r} does not exist "
                              "in the runtime's network namespace") from None


def _same_file(a: str, b: str) -> bool:
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _netlink_socket_in(ns_fd: int) -> socket.socket:
    """An rtnetlink socket bound to another network namespace.

    A netlink socket belongs to the namespace it was created in, so only
    this thread steps in for the socket() call and straight back out."""
    from pyrun.linux import syscalls as s
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        s.setns(ns_fd, s.CLONE_NEWNET)
        try:
            return socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC,
                                 socket.NETLINK_ROUTE)
        finally:
            s.setns(own, s.CLONE_NEWNET)
    finally:
        os.close(own)


def _error_text(e: BaseException) -> str:
    from pyroute2.netlink.exceptions import NetlinkError
    if isinstance(e, NetlinkError):
        text = os.strerror(e.code)
        return text[:1].lower() + text[1:]
    if isinstance(e, OSError) and e.errno:
        text = os.strerror(e.errno)
        return text[:1].lower() + text[1:]
    return str(e) or type(e).__name__


def _kept_addresses(ipr: Any, index: int) -> list[dict[str, Any]]:
    """Permanent global addresses, as keyword arguments for addr("add")."""
    kept = []
    for msg in ipr.get_addr(index=index):
        flags = msg.get_attr("IFA_FLAGS")
        flags = msg["flags"] if flags is None else flags
        if not flags & IFA_F_PERMANENT or msg["scope"] != RT_SCOPE_UNIVERSE:
            continue
        address = msg.get_attr("IFA_ADDRESS")
        local = msg.get_attr("IFA_LOCAL")
        args: dict[str, Any] = {"family": msg["family"], "prefixlen": msg["prefixlen"],
                                "address": address or local}
        if local and address and local != address:       # point-to-point: local and peer
            args["address"], args["local"] = address, local
        elif local:
            args["local"] = local
        broadcast = msg.get_attr("IFA_BROADCAST")
        if broadcast:
            args["broadcast"] = broadcast
        if flags & _USER_IFA_FLAGS:
            args["IFA_FLAGS"] = flags & _USER_IFA_FLAGS
        kept.append(args)
    return kept


def _find_moved(ipr: Any, new: str, old_index: int, mac: str | None) -> int:
    """The moved device's index in the container's namespace.  The kernel keeps
    the index when it is free there, and picks the name for a "%d" template."""
    if "%" not in new:
        found = ipr.link_lookup(ifname=new)
        if found:
            return found[0]
    else:
        pattern = re.compile(re.escape(new).replace("%d", r"\d+") + "$")
        matches = [link for link in ipr.get_links()
                   if pattern.match(link.get_attr("IFLA_IFNAME") or "")
                   and (mac is None or link.get_attr("IFLA_ADDRESS") == mac)]
        for link in matches:
            if link["index"] == old_index:
                return old_index
        if matches:
            return matches[0]["index"]
    raise PyrunError(f"{FIELD}: network device {new!r} not found in the container's network namespace "
                     "after the move")


def move_devices(devices: dict[str, dict[str, Any]], init_pid: int) -> None:
    """Move each host interface into init_pid's network namespace (see module doc)."""
    from pyroute2 import IPRoute

    try:
        ns_fd = os.open(f"/proc/{init_pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise PyrunError(f"{FIELD}: cannot open the container's network namespace: {_error_text(e)}") from None
    try:
        # Never "move" into our own namespace: the rename would happen on the host.
        target, own = os.fstat(ns_fd), os.stat("/proc/thread-self/ns/net")
        if (target.st_dev, target.st_ino) == (own.st_dev, own.st_ino):
            raise PyrunError(f"{FIELD}: unable to move network devices without a private network namespace")
        with IPRoute() as host:
            ns_sock = _netlink_socket_in(ns_fd)
            with IPRoute(use_socket=ns_sock) as inside:
                for name, dev in devices.items():
                    _move_one(host, inside, ns_fd, name, (dev or {}).get("name") or name)
    finally:
        os.close(ns_fd)


def _move_one(host: Any, inside: Any, ns_fd: int, name: str, new: str) -> None:
    where = f"{FIELD}: network device {name!r}"
    step = "looking it up"
    try:
        found = host.link_lookup(ifname=name)
        if not found:
            raise PyrunError(f"{where}: not found in the runtime's network namespace")
        index = found[0]
        if "%" not in new and inside.link_lookup(ifname=new):
            raise PyrunError(f"{where}: a device named {new!r} already exists in the container's "
                             "network namespace")
        link = host.get_links(index)[0]
        was_up = bool(link["flags"] & IFF_UP)
        mac = link.get_attr("IFLA_ADDRESS")
        step = "reading its addresses"
        addresses = _kept_addresses(host, index)
        # Down first, like runc: whatever uses it on the host sees it go quietly.
        step = "setting it down"
        host.link("set", index=index, state="down")
        step = f"moving it into the container's network namespace as {new!r}"
        try:
            host.link("set", index=index, net_ns_fd=ns_fd, ifname=new)
        except BaseException:
            if was_up:      # still ours: leave it as it was
                try:
                    host.link("set", index=index, state="up")
                except Exception:  # noqa: BLE001 - the move error is the one to report
                    pass
            raise
        new_index = _find_moved(inside, new, index, mac)
        for args in addresses:
            step = f"adding address {args.get('local') or args['address']}/{args['prefixlen']}"
            inside.addr("add", index=new_index, **args)
        step = "setting it up"
        inside.link("set", index=new_index, state="up")
    except PyrunError:
        raise
    except Exception as e:  # noqa: BLE001 - pyroute2 raises NetlinkError and others
        raise PyrunError(f"{where}: {step}: {_error_text(e)}") from None
