#!/usr/bin/env python3
"""Run the config fuzzer at length and report how many examples ran.

    .venv/bin/python bench/fuzz.py                   # 10 000 examples, fresh random seeds
    .venv/bin/python bench/fuzz.py --examples 1000   # a shorter one

It runs tests/test_fuzz.py's two hypothesis tests (mutations of a valid
config, and schema-generated sections) in chunks of --chunk examples, each
chunk a pytest run with a new random seed (PYRUN_FUZZ_RANDOM=1) instead of
CI's fixed one; every example gets the same checks as in CI (one error line
or a clean run, no traceback, no leftover).  The running total is printed
after each chunk, so an interrupted run still says how far it got.  Must run
as root, like the test suite; stops at the first failing chunk.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COUNT = re.compile(r"examples fuzzed: (\d+).*tracebacks: (\d+), leaks: (\d+)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=10_000, help="examples in all (default 10000)")
    parser.add_argument("--chunk", type=int, default=500, help="examples per pytest run (default 500)")
    args = parser.parse_args()
    python = REPO / ".venv" / "bin" / "python"
    cmd = [str(python if python.exists() else sys.executable), "-m", "pytest", "tests/test_fuzz.py",
           "-q", "-p", "no:cacheprovider", "-x", "-k", "mutated or schema"]
    total = tracebacks = leaks = 0
    started = time.monotonic()
    while total < args.examples:
        per_test = max(1, min(args.chunk, args.examples - total) // 2)
        env = dict(os.environ, PYRUN_FUZZ_EXAMPLES=str(per_test), PYRUN_FUZZ_RANDOM="1")
        proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        match = COUNT.search(proc.stdout)
        if not match:
            sys.stdout.write(proc.stdout[-20_000:])
            return proc.returncode or 1
        total += int(match.group(1))
        tracebacks += int(match.group(2))
        leaks += int(match.group(3))
        print(f"fuzz: {total} examples in {time.monotonic() - started:.0f} s, "
              f"{tracebacks} tracebacks, {leaks} leaks", flush=True)
        if proc.returncode != 0:
            sys.stdout.write(proc.stdout[-20_000:])
            return proc.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
