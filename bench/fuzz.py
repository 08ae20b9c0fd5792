#!/usr/bin/env python3
"""Run the config fuzzer at length and report how many examples ran.

    .venv/bin/python bench/fuzz.py                  # 10 000 examples, a fresh random seed
    .venv/bin/python bench/fuzz.py --examples 500   # a quick one

It runs tests/test_fuzz.py's two hypothesis tests (mutations of a valid
config, and schema-generated sections), each with half the examples,
randomised (PYRUN_FUZZ_RANDOM=1) instead of CI's fixed seed, plus the
hand-picked cases; every example goes through the same checks as in CI
(one error line or a clean run, no traceback, no leftover).  Must run as
root, like the test suite.  Prints the counts and exits non-zero on any
failure.
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=10_000, help="examples in all (default 10000)")
    args = parser.parse_args()
    env = dict(os.environ, PYRUN_FUZZ_EXAMPLES=str(max(1, args.examples // 2)), PYRUN_FUZZ_RANDOM="1")
    python = REPO / ".venv" / "bin" / "python"
    cmd = [str(python if python.exists() else sys.executable), "-m", "pytest", "tests/test_fuzz.py",
           "-q", "-p", "no:cacheprovider", "-x"]
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    elapsed = time.monotonic() - started
    sys.stdout.write(proc.stdout[-20_000:])
    match = re.search(r"examples fuzzed: (\d+).*tracebacks: (\d+), leaks: (\d+)", proc.stdout)
    if match:
        print(f"\nfuzz: {match.group(1)} examples in {elapsed:.0f} s, "
              f"{match.group(2)} tracebacks, {match.group(3)} leaks, pytest exit {proc.returncode}")
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
