"""`pyrun --help`, `pyrun help CMD`, `pyrun CMD -h` and the usage-error screens,
laid out as runc's urfave/cli (v1) templates lay them out: `NAME:`, `USAGE:`,
`DESCRIPTION:`, `OPTIONS:`, option names and text in tab-aligned columns.

Imported only when help is shown: the texts cost the normal path nothing.
The flags themselves come from each command's FLAGS, so help lists exactly
what the parser accepts; HELP only adds the words (tests/test_cli_fidelity.py
checks that every flag has some, and no stale ones remain).
"""
from __future__ import annotations

from pyrun import program

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pyrun.cli.parser import Flag

APP_USAGE = """Open Container Initiative runtime, written in Python

pyrun runs containers packaged as OCI bundles, as described by the Open
Container Initiative runtime specification, and answers to the same command
line as runc, so that containerd, Docker, podman and scripts can call it in
runc's place.

A bundle is a directory holding a "config.json" (the container's
configuration) and, usually, the container's root filesystem.

To run a container from the bundle in the current directory:

    # pyrun run [ -b bundle ] <container-id>

"<container-id>" names the container; it must be unique under the state root
(--root). The bundle defaults to the current directory."""

GLOBAL_HELP = {
    "debug": "write debug entries to the log as well",
    "log": "the file pyrun's log entries go to (default is '/dev/stderr')",
    "log-format": "the log entries' format: 'text' (logrus key=value lines) or 'json'",
    "root": "the directory containers' state is kept under (best on a tmpfs)",
    "systemd-cgroup": "accept cgroupsPath in systemd's \"slice:prefix:name\" form, e.g. \"system.slice:pyrun:42\"",
    "rootless": "cgroup permission errors are not fatal ('true', 'false' or 'auto')",
    "help": "show help",
    "version": "print the version",
}
HIDDEN_GLOBALS = ("criu",)       # accepted for runc's callers, used by nothing

ID = '"<container-id>" names the container'

# command: (one-line summary, arguments text, description, {flag: words})
# create's flags, which run has too
CREATE_FLAGS = {
    "bundle": "the bundle directory (default: the current directory)",
    "console-socket": "an AF_UNIX socket that receives the master end of the container's pseudoterminal",
    "pidfd-socket": "an AF_UNIX socket that receives a pidfd of the container's init",
    "pid-file": "write the init's pid to this file",
    "no-pivot": "change root with MS_MOVE and chroot, not pivot_root (for a rootfs on a ramdisk)",
    "no-new-keyring": "keep the caller's session keyring instead of a new one",
    "preserve-fds": "pass N more file descriptors to the container (stdio + $LISTEN_FDS + N in all)"}

# checkpoint's and restore's common flags
CRIU_FLAGS = {
    "image-path": "the directory of CRIU's image files (default: ./checkpoint)",
    "work-path": "the directory of CRIU's work files and its log (default: the image directory)",
    "tcp-established": "allow open TCP connections",
    "ext-unix-sk": "allow external unix sockets",
    "shell-job": "allow shell jobs (a terminal from outside the container)",
    "lazy-pages": "restore memory pages lazily, through userfaultfd",
    "file-locks": "handle file locks",
    "manage-cgroups-mode": "cgroups mode: soft|full|strict|ignore (default: soft)",
    "empty-ns": "create this namespace, but do not restore its properties (network only)",
    "auto-dedup": "deduplicate memory images as they are written"}

COMMANDS: dict[str, tuple[str, str, str, dict[str, str]]] = {
    "create": (
        "create a container",
        f"<container-id>\n\n{ID}; it must be unique under the state root.",
        "create sets a container up from the bundle (namespaces, cgroup, root filesystem,\n"
        "hooks) and leaves its process waiting; \"pyrun start\" then runs process.args\n"
        "from config.json. See \"pyrun spec --help\" for writing a config.json.",
        CREATE_FLAGS),
    "start": (
        "run the process of a created container",
        f"<container-id>\n\n{ID}, as given to \"pyrun create\".",
        "start lets the process of a created container run (process.args of its config.json).",
        {}),
    "run": (
        "create and start a container",
        f"<container-id>\n\n{ID}; it must be unique under the state root.",
        "run creates a container from the bundle and starts it: \"pyrun create\" then\n"
        "\"pyrun start\". In the foreground (the default) pyrun waits for the container's\n"
        "process, forwards signals to it, exits with its status and deletes the container.",
        {**CREATE_FLAGS,
         "detach": "start the container and return; do not wait for it",
         "keep": "do not delete the container once its process has exited",
         "no-subreaper": "do not make pyrun a child subreaper while it waits"}),
    "exec": (
        "run another process in a running container",
        "<container-id> <command> [args...]  || -p process.json <container-id>\n\n"
        f"{ID}; \"<command>\" is what to run in it, and may be left out\n"
        "only when -p gives a process.json. The process joins the container's\n"
        "namespaces and cgroup and gets the container's confinement.\n\n"
        "       # pyrun exec <container-id> ps",
        "",
        {"console-socket": "an AF_UNIX socket that receives the master end of the process's pseudoterminal",
         "pidfd-socket": "an AF_UNIX socket that receives a pidfd of the process",
         "cwd": "the working directory in the container",
         "env": "add an environment variable (NAME=value; repeatable)",
         "tty": "give the process a pseudoterminal",
         "user": "the process's user, as <uid>[:<gid>]",
         "additional-gids": "add a supplementary group id (repeatable)",
         "process": "a process.json with the whole process to run",
         "detach": "return once the process has started; do not wait for it",
         "pid-file": "write the process's pid to this file",
         "process-label": "the SELinux label of the process",
         "apparmor": "the AppArmor profile of the process",
         "no-new-privs": "set no_new_privs for the process",
         "cap": "add a capability to the process's sets (repeatable)",
         "preserve-fds": "pass N more file descriptors to the process (stdio + N in all)",
         "cgroup": "run the process in an existing sub-cgroup: [<controller>:]<path> (repeatable)",
         "ignore-paused": "exec even though the container is paused"}),
    "state": (
        "print the state of a container",
        f"<container-id>\n\n{ID}.",
        "state prints the container's runtime-spec state (id, pid, status, bundle...) as JSON.",
        {}),
    "kill": (
        "send a signal (default: SIGTERM) to the container's init",
        f"<container-id> [signal]\n\n{ID}; \"[signal]\" is a name (KILL, SIGKILL)\n"
        "or a number; 0 only checks that the init is alive.\n\n"
        "       # pyrun kill ubuntu01 KILL",
        "",
        {"all": "send the signal to every process in the container's cgroup"}),
    "delete": (
        "delete a container and everything it holds",
        f"<container-id>\n\n{ID}. delete removes a stopped (or created) container:\n"
        "its cgroup, its state and whatever else it holds; poststop hooks run last.",
        "",
        {"force": "kill the container first (SIGKILL) if it is still running"}),
    "list": (
        "list the containers under the state root",
        "\n\nThe state root is the global option \"--root\".\n\n"
        "       # pyrun list\n"
        "       # pyrun --root /run/other list",
        "",
        {"format": "table or json",
         "quiet": "print only the containers' IDs"}),
    "spec": (
        "write a starter config.json",
        "",
        "spec writes a config.json for a container that runs \"sh\" on a terminal, to\n"
        "be edited. The bundle then needs a root filesystem in its \"rootfs\" directory:\n\n"
        "       # mkdir rootfs && tar -C rootfs -xf busybox.tar\n"
        "       # pyrun spec\n"
        "       # pyrun run demo",
        {"bundle": "where to write config.json (default: the current directory)",
         "rootless": "a config for an ordinary user: a user namespace maps that user to root"}),
    "features": (
        "print the features this pyrun supports",
        "",
        "features prints the runtime-spec Features document (JSON): the namespaces,\n"
        "capabilities, mount options, hooks, seccomp actions... this build supports.",
        {}),
    "update": (
        "change a container's resource limits",
        f"<container-id>\n\n{ID}.\n\n"
        "update writes new resource limits to the container's cgroup: from the flags,\n"
        "or, with -r, from a runtime-spec LinuxResources JSON file ('-' for stdin),\n"
        "in which any field may be left out:\n\n"
        '{"memory": {"limit": 0, "reservation": 0, "swap": 0},\n'
        ' "cpu": {"shares": 0, "quota": 0, "period": 0, "realtimeRuntime": 0,\n'
        '         "realtimePeriod": 0, "cpus": "", "mems": ""},\n'
        ' "blockIO": {"weight": 0}, "pids": {"limit": 0}}',
        "",
        {"resources": "a JSON file with the resources to set, or '-' for stdin",
         "blkio-weight": "relative block IO weight, 10 to 1000",
         "cpu-period": "CPU CFS period, in microseconds",
         "cpu-quota": "CPU CFS quota, in microseconds per period",
         "cpu-burst": "CPU CFS burst, in microseconds",
         "cpu-share": "relative CPU weight (shares)",
         "cpu-rt-period": "realtime period, in microseconds",
         "cpu-rt-runtime": "realtime runtime per period, in microseconds",
         "cpuset-cpus": "the CPUs the container may use (e.g. 0-3,5)",
         "cpuset-mems": "the memory nodes the container may use",
         "cpu-idle": "1 makes the cgroup SCHED_IDLE (cgroup v2)",
         "kernel-memory": "ignored (kernel memory limits are gone from the kernel)",
         "kernel-memory-tcp": "ignored (kernel memory limits are gone from the kernel)",
         "memory": "memory limit, e.g. 100m or 1g; -1 for none",
         "memory-reservation": "memory soft limit",
         "memory-swap": "memory plus swap limit; -1 for none",
         "pids-limit": "the most processes the container may have",
         "l3-cache-schema": "Intel RDT L3 cache schema",
         "mem-bw-schema": "Intel RDT memory bandwidth schema"}),
    "checkpoint": (
        "checkpoint a running container",
        f"<container-id>\n\n{ID}, a running (or paused) container.",
        "checkpoint saves the container's processes with CRIU into the image directory;\n"
        "the container is then destroyed, unless --leave-running or --pre-dump.",
        CRIU_FLAGS | {
            "parent-path": "the previous (pre-dump) image directory, relative to --image-path",
            "leave-running": "leave the container running after the checkpoint",
            "tcp-skip-in-flight": "skip in-flight TCP connections",
            "link-remap": "link unlinked files back where possible",
            "status-fd": "with --lazy-pages: CRIU writes \\0 to this fd once the page server is ready",
            "page-server": "ADDRESS:PORT of a CRIU page server to send the memory pages to",
            "pre-dump": "dump only the memory (for a later dump with --parent-path); the container keeps running"}),
    "restore": (
        "restore a container from a checkpoint",
        f"<container-id>\n\n{ID}; it must be unique under the state root (it may differ\n"
        "from the checkpointed container's).",
        "restore brings a checkpoint made by \"pyrun checkpoint\" back as a new, running\n"
        "container of the bundle. In the foreground (the default) pyrun waits for it as\n"
        "\"pyrun run\" does.",
        CRIU_FLAGS | {
            "console-socket": CREATE_FLAGS["console-socket"],
            "bundle": CREATE_FLAGS["bundle"],
            "detach": "restore the container and return; do not wait for it",
            "pid-file": CREATE_FLAGS["pid-file"],
            "no-subreaper": "do not make pyrun a child subreaper while it waits",
            "no-pivot": "accepted for runc's callers (CRIU changes root itself)",
            "lsm-profile": "an LSM profile (TYPE:NAME) for the restored processes (needs AppArmor or SELinux)",
            "lsm-mount-context": "an LSM mount context (needs SELinux)"}),
    "pause": (
        "freeze every process of a container",
        f"<container-id>\n\n{ID}.",
        "pause freezes the container's cgroup: its processes stop until \"pyrun resume\".",
        {}),
    "resume": (
        "thaw a paused container",
        f"<container-id>\n\n{ID}.",
        "resume thaws the container's cgroup, frozen by \"pyrun pause\".",
        {}),
    "ps": (
        "list the processes of a container",
        f"<container-id> [ps options]\n\n{ID}; \"[ps options]\" go to ps(1).",
        "",
        {"format": "table or json (the pids only)"}),
    "events": (
        "print a container's events and statistics",
        f"<container-id>\n\n{ID}.",
        "events prints, as JSON lines, the container's OOM events and, every interval,\n"
        "its cgroup statistics (cpu, memory, pids, blkio); --stats prints them once.",
        {"interval": "how often to print statistics",
         "stats": "print the statistics once and exit"}),
    "explain": (
        "print what create and start would do, without doing it",
        "[<container-id>]\n\n" + ID + " (default \"explain\"); it decides the default cgroup path.",
        "explain validates the bundle's config.json and prints, in order, every step create\n"
        "and start would carry out on this host: the parent's (state directory, cgroup\n"
        "directories, device rules, limit files and the values written), stage 1's\n"
        "(cgroup join, namespaces created or joined) and the init's (mounts, devices,\n"
        "hooks, masked and read-only paths, capabilities, seccomp, rlimits, user), and\n"
        "the warnings create would print. Nothing is created. The steps are the ones\n"
        "create runs (PYRUN_TRACE=<file> makes create write what it did in the same form).\n"
        "See docs/explain-audit.md for the JSON.",
        {"bundle": "the bundle directory (default: the current directory)",
         "config": "a config file to explain instead of <bundle>/config.json (its directory is the bundle)",
         "format": "text or json",
         "pid-file": "as create's --pid-file (shown in the plan, not written)",
         "console-socket": "as create's --console-socket (needed with process.terminal; not connected)",
         "no-pivot": "as create's --no-pivot",
         "no-new-keyring": "as create's --no-new-keyring"}),
    "audit": (
        "report how a running container is confined, read from the kernel",
        f"<container-id>\n\n{ID}, as given to \"pyrun create\" (or runc's, with --root).",
        "audit inspects a running container from the host, from /proc and the cgroup\n"
        "files, not from its config.json: namespaces shared with the host, uid/gid maps,\n"
        "capability sets, no_new_privs, seccomp, LSM label, rlimits, cgroup limits,\n"
        "host paths mounted writable, device nodes, masked and read-only paths, sysctls\n"
        "that differ from the host and fds that lead outside the rootfs. Findings are\n"
        "graded high, medium, low or info; --strict exits 1 when any is high.\n"
        "See docs/explain-audit.md for the JSON.",
        {"format": "text or json",
         "strict": "exit 1 when any finding is high-risk"}),
}
# Accepted but left out of the help, as runc 1.4 hides them (deprecated there).
HIDDEN = {"kill": ("all",), "update": ("kernel-memory", "kernel-memory-tcp")}
ORDER = ("checkpoint", "create", "delete", "events", "exec", "kill", "list", "pause", "ps", "restore", "resume", "run",
         "spec", "start", "state", "update", "features", "explain", "audit")
HELP_SUMMARY = "Shows a list of commands or help for one command"


def _columns(rows: list[tuple[str, str]]) -> list[str]:
    """Go's tabwriter (padding 2, spaces): the first cells padded to one width."""
    width = max(len(left) for left, _ in rows) + 2
    return [(left.ljust(width) + right).rstrip() if right else left for left, right in rows]


def _flag_names(flag: Flag) -> str:
    value = "" if flag.kind == "bool" else " value"
    return ", ".join(("-" if len(n) == 1 else "--") + n + value for n in flag.names)


def _flag_text(flag: Flag, words: str) -> str:
    if flag.kind in ("bool", "list") or flag.default is None:
        return words
    default = f'"{flag.default}"' if flag.kind == "str" else str(flag.default)
    return f"{words} (default: {default})"


def _option_rows(flags: list[Flag], words: dict[str, str], hidden: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    return [("   " + _flag_names(f), _flag_text(f, words.get(f.names[0], ""))) for f in flags
            if f.names[0] not in hidden]


def app_help(global_flags: list[Flag], version: str) -> str:
    name = program()
    commands = [("   " + name, COMMANDS[name][0]) for name in ORDER] + [("   help, h", HELP_SUMMARY)]
    lines = [f"NAME:\n   {name} - {APP_USAGE}\n", "USAGE:",
             f"   {name} [global options] command [command options] [arguments...]\n",
             f"VERSION:\n   {version}\n", "COMMANDS:", *_columns(commands), "",
             "GLOBAL OPTIONS:", *_columns(_option_rows(global_flags, GLOBAL_HELP, HIDDEN_GLOBALS))]
    return "\n".join(lines) + "\n"


def command_flags(command: str) -> list[Flag]:
    """The command's FLAGS, from its module (importing it is what running it costs anyway)."""
    from pyrun.cli.main import COMMANDS as MODULES
    name = f"pyrun.cli.{MODULES[command]}"
    __import__(name)
    import sys
    return list(getattr(sys.modules[name], "FLAGS", []))


def command_help(command: str) -> str:
    name = program()
    summary, args_usage, description, words = COMMANDS[command]
    flags = [f for f in command_flags(command) if f.names[0] not in HIDDEN.get(command, ())]
    usage = f"{name} {command}" + (" [command options]" if flags else "") + " " + args_usage
    out = f"NAME:\n   {name} {command} - {summary}\n\nUSAGE:\n   {usage}\n"
    if description:
        out += f"\nDESCRIPTION:\n   {description}\n"
    if flags:
        out += "\nOPTIONS:\n" + "".join(line + "\n" for line in _columns(_option_rows(flags, words))) + "   \n"
    return out


def help_command_help() -> str:
    """`pyrun help help` (runc's, urfave's own, leaves the name out)."""
    name = program()
    return f"NAME:\n   {name} help - {HELP_SUMMARY}\n\nUSAGE:\n   {name} help [command]\n"
