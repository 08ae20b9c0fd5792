"""Where a pyrun command spends its time: imports (`-X importtime`) and the
parent's own work (cProfile), on a busybox container.

    .venv/bin/python bench/profile.py [--top N]

Each command runs as the installed launcher runs it (`python -IS`, src and the
virtualenv's site-packages on sys.path).  The import table sums each command's
top-level imports (importtime's cumulative column, in-process, so slightly
inflated by the measuring); the cProfile table is `run /bin/true`'s parent
process, whose waits on the stages show up as recvmsg/waitpid.  For the
timeline across the forked stages see docs/performance.md (perf trace).
Must run as root.
"""
from __future__ import annotations

import argparse
import json
import os
import pstats
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))
from pyrun.tools.busybox_bundle import make_config, make_rootfs  # noqa: E402

PYTHON = str(REPO / ".venv" / "bin" / "python3")
def launcher(then: str) -> str:
    """The installed launcher's code (sys.path, then pyrun.cli.main), then `then`,
    with the command line after -c as pyrun's arguments."""
    return (f"import sys; sys.path[:0] = [{str(REPO / 'src')!r}, {sysconfig.get_path('purelib')!r}]\n"
            "from pyrun.cli.main import exit_now, main\n"
            "sys.argv = ['pyrun'] + sys.argv[1:]\n" + then)
RUNTIME = str(REPO / ".venv" / "bin" / "pyrun")


def importtime(root: Path, *args: str) -> tuple[float, list[tuple[float, str]]]:
    """(ms of top-level imports, [(self ms, module)]) of one command."""
    code = launcher("exit_now(main())\n")
    # a file, not a pipe: a created container keeps its stdio open
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.run([PYTHON, "-IS", "-X", "importtime", "-c", code, "--root", str(root), *args],
                              stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL, timeout=60)
        err.seek(0)
        text = err.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{args}: {text[-500:]}")
    total, selfs = 0.0, []
    for line in text.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        own, cumulative, name = line[len("import time:"):].split("|")
        if not name.startswith("  "):          # a top-level import
            total += int(cumulative) / 1000
        selfs.append((int(own) / 1000, name.strip()))
    return total, sorted(selfs, reverse=True)


def profile_run(root: Path, bundle: Path, cid: str, top: int) -> str:
    out = root.parent / "run.prof"
    code = launcher(f"import cProfile\ncProfile.run('main()', {str(out)!r})\n")
    subprocess.run([PYTHON, "-IS", "-c", code, "--root", str(root), "run", "--bundle", str(bundle), cid],
                   check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, timeout=60)
    text = tempfile.TemporaryFile("w+")
    stats = pstats.Stats(str(out), stream=text)
    stats.sort_stats("cumulative").print_stats(top)
    text.seek(0)
    return text.read()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--top", type=int, default=8, help="modules / functions to list")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        ap.error("containers need root")
    work = Path(tempfile.mkdtemp(prefix="pyrun-profile-"))
    root, bundle = work / "root", work / "bundle"
    try:
        make_rootfs(str(bundle / "rootfs"))
        (bundle / "config.json").write_text(json.dumps(make_config(["/bin/sleep", "1000"])))
        subprocess.run([RUNTIME, "--root", str(root), "create", "--bundle", str(bundle), "warm"], check=True,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=60)   # fills the validated-config cache
        subprocess.run([RUNTIME, "--root", str(root), "delete", "--force", "warm"], check=True, timeout=60)
        commands = [("create", "--bundle", str(bundle), "p1"), ("start", "p1"), ("state", "p1"),
                    ("exec", "p1", "/bin/true"), ("kill", "p1", "KILL"), ("delete", "--force", "p1")]
        print("| command | imports (ms) | biggest imports (self ms) |\n|---|---:|---|")
        for cmd in commands:
            total, selfs = importtime(root, *cmd)
            biggest = ", ".join(f"{name} {ms:.1f}" for ms, name in selfs[:args.top])
            print(f"| {cmd[0]} | {total:.1f} | {biggest} |")
        (bundle / "config.json").write_text(json.dumps(make_config(["/bin/true"])))
        subprocess.run([RUNTIME, "--root", str(root), "run", "--bundle", str(bundle), "warm2"], check=True,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, timeout=60)   # the cache again
        print("\n`run /bin/true`, the parent process (cProfile, cumulative):\n```")
        print(profile_run(root, bundle, "p2", args.top * 3).rstrip())
        print("```")
    finally:
        for cid in ("warm", "p1", "p2"):
            subprocess.run([RUNTIME, "--root", str(root), "delete", "--force", cid],
                           capture_output=True, timeout=60)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
