"""Run the conformance suite against one or more runtimes and report spec coverage.

    python conformance/run.py [--runtime PATH]... [--write-readme] [-- PYTEST ARGS]

Default runtimes: this virtualenv's pyrun and Debian's runc (/usr/sbin/runc).
The runtimes run concurrently (separate state roots and ID prefixes).  The
coverage table comes from the spec text (statements.py) and the citations the
tests carry; what no test covers is listed with the reason from uncovered.py.
Exit status 0 when every test passed or is a recorded deviation (strict xfail).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import statements  # noqa: E402
from uncovered import UNCOVERED  # noqa: E402

DEFAULT_RUNTIMES = [str(Path(sys.executable).parent / "pyrun"), "/usr/sbin/runc"]
README = HERE / "README.md"
START, END = "<!-- coverage:start -->", "<!-- coverage:end -->"


# Shards of the suite run as separate pytest processes: most of a test's time is
# waiting on the runtime, so a few at once finish much sooner on 2 cores.
SHARDS = [["test_config.py"], ["test_config_linux.py", "test_features.py"],
          ["test_runtime.py", "test_config_hooks.py", "test_runtime_linux.py", "test_bundle.py"]]


def run_suites(runtimes: list[str], pytest_args: list[str]) -> tuple[dict[str, dict], float]:
    """Every shard for every runtime, all at once; returns {runtime: report} and the wall time."""
    began = time.monotonic()
    procs = []
    for rt in runtimes:
        for shard in SHARDS:
            report = tempfile.NamedTemporaryFile(prefix="oci-conformance-", suffix=".json", delete=False)
            log = tempfile.TemporaryFile("w+")
            cmd = [sys.executable, "-m", "pytest", *[str(HERE / f) for f in shard], "-q",
                   "-p", "no:cacheprovider", "--runtime", rt, "--conformance-report", report.name,
                   *pytest_args]
            procs.append((rt, report.name, log, subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=HERE.parent)))
    out: dict[str, dict] = {}
    for rt, report, log, proc in procs:
        proc.wait()
        log.seek(0)
        text = log.read()
        print(f"===== {rt}: {' '.join(_interesting(text))}")
        merged = out.setdefault(rt, {"name": Path(rt).name, "runtime": rt, "tests": {}, "exit": 0})
        try:
            part = json.loads(Path(report).read_text())
            merged["name"] = part["name"]
            merged["tests"].update(part["tests"])
        except (OSError, ValueError):
            merged["broken"] = text[-3000:]
            print(text[-3000:])
        # 5: nothing collected (e.g. -k matched nothing in this shard)
        if proc.returncode not in (0, 5):
            merged["exit"] = proc.returncode
        os.unlink(report)
    return out, time.monotonic() - began


def _interesting(text: str) -> list[str]:
    """pytest's failure summary and closing line, not the progress dots."""
    lines = text.splitlines()
    keep = [ln for ln in lines if ln.startswith(("FAILED", "ERROR", "XPASS"))]
    return lines[-1:] + keep


def counts(report: dict) -> dict[str, int]:
    c = {"passed": 0, "failed": 0, "error": 0, "xfailed": 0, "xpassed": 0, "skipped": 0}
    for t in report["tests"].values():
        c[t["outcome"]] = c.get(t["outcome"], 0) + 1
    return c


def coverage(reports: dict[str, dict]) -> tuple[list[dict], dict]:
    stmts = statements.load()
    cited: dict[str, list[str]] = {}
    for report in reports.values():
        for nodeid, t in report["tests"].items():
            for key in t["spec"]:
                name = nodeid.split("::", 1)[1]
                if name not in cited.setdefault(key, []):
                    cited[key].append(name)
    reasons = {}
    for (anchor, fragment, nth), why in UNCOVERED.items():
        reasons[statements.find(stmts, anchor, fragment, nth).key] = why
    rows = []
    for s in stmts:
        row = {"s": s, "tests": cited.get(s.key, []), "why": reasons.get(s.key, "")}
        if not s.linux:
            row["state"] = "n/a"
        elif row["tests"]:
            row["state"] = "covered"
        elif row["why"] and not row["why"].startswith("not yet ported"):
            row["state"] = "untestable"
        else:
            row["state"] = "uncovered"
        row["verdict"] = {}
        for rt, report in reports.items():
            outcomes = [t["outcome"] for nodeid, t in report["tests"].items() if s.key in t["spec"]]
            if not outcomes:
                v = ""
            elif any(o in ("failed", "error", "xpassed") for o in outcomes):
                v = "FAIL"
            elif any(o == "xfailed" for o in outcomes):
                v = "deviates"
            elif all(o == "skipped" for o in outcomes):
                v = "skipped"
            else:
                v = "pass"
            row["verdict"][report.get("name", rt)] = v
        rows.append(row)
    linux = [r for r in rows if r["s"].linux]
    totals = {}
    for level in ("MUST", "SHOULD"):
        group = [r for r in linux if r["s"].level.startswith(level)]
        totals[level] = {"applicable": len(group),
                         "covered": sum(r["state"] == "covered" for r in group),
                         "untestable": sum(r["state"] == "untestable" for r in group),
                         "uncovered": sum(r["state"] == "uncovered" for r in group)}
        for name in {n for r in rows for n in r["verdict"]}:
            totals[level][f"pass:{name}"] = sum(r["verdict"].get(name) == "pass" for r in group)
            totals[level][f"deviates:{name}"] = sum(r["verdict"].get(name) == "deviates" for r in group)
    totals["non-linux"] = sum(not r["s"].linux for r in rows)
    return rows, totals


def render(reports: dict[str, dict], rows: list[dict], totals: dict, wall: float) -> str:
    names = [r.get("name", rt) for rt, r in reports.items()]
    out = [f"Generated by `python conformance/run.py --write-readme` ({wall:.0f} s wall time, "
           f"runtimes run concurrently).", ""]
    out.append("| runtime | binary | passed | known deviations (xfail) | failed | skipped |")
    out.append("| --- | --- | --- | --- | --- | --- |")
    for rt, r in reports.items():
        c = counts(r)
        shown = os.path.relpath(rt, HERE.parent) if rt.startswith(str(HERE.parent) + "/") else rt
        out.append(f"| {r.get('name', rt)} | `{shown}` | {c['passed']} | {c['xfailed']} | "
                   f"{c['failed'] + c['error'] + c['xpassed']} | {c['skipped']} |")
    out.append("")
    m, sh = totals["MUST"], totals["SHOULD"]
    out.append(f"**MUST / MUST NOT covered: {m['covered']} / {m['applicable']}** Linux statements "
               f"({m['untestable']} more justified as untestable here, {m['uncovered']} uncovered). "
               f"SHOULD / SHOULD NOT covered: {sh['covered']} / {sh['applicable']} "
               f"({sh['untestable']} justified, {sh['uncovered']} uncovered). "
               f"{totals['non-linux']} statements are for other platforms only.")
    out.append("")
    out.append("MUST statements whose tests all pass, per runtime: " + ", ".join(
        f"{n} {m.get(f'pass:{n}', 0)} (deviates on {m.get(f'deviates:{n}', 0)})" for n in names) + ".")
    out.append("")
    out.append("| statement | level | text | tests | " + " | ".join(names) + " |")
    out.append("| --- | --- | --- | --- | " + " | ".join("---" for _ in names) + " |")
    for r in rows:
        s = r["s"]
        text = s.text.replace("|", "\\|")
        if len(text) > 140:
            text = text[:137] + "..."
        if r["state"] == "covered":
            tests = "<br>".join(f"`{t}`" for t in r["tests"][:4]) + \
                (f"<br>(+{len(r['tests']) - 4})" if len(r["tests"]) > 4 else "")
        elif r["state"] == "n/a":
            tests = "n/a: other platform"
        else:
            tests = ("untestable here: " + r["why"]) if r["why"] else "**not covered**"
        verdicts = " | ".join(r["verdict"].get(n, "") for n in names)
        out.append(f"| `{s.file}#{s.key}` | {s.level} | {text} | {tests} | {verdicts} |")
    return "\n".join(out)


def write_readme(table: str) -> None:
    text = README.read_text()
    a, b = text.index(START) + len(START), text.index(END)
    README.write_text(text[:a] + "\n" + table + "\n" + text[b:])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runtime", action="append", help="a runc-compatible binary (repeatable)")
    ap.add_argument("--write-readme", action="store_true", help="rewrite the table in README.md")
    ap.add_argument("pytest_args", nargs="*", help="passed to pytest (after --)")
    ns = ap.parse_args()
    runtimes = ns.runtime or [rt for rt in DEFAULT_RUNTIMES if os.path.exists(rt)]
    reports, wall = run_suites(runtimes, ns.pytest_args)
    rows, totals = coverage(reports)
    table = render(reports, rows, totals, wall)
    if ns.write_readme:
        write_readme(table)
    for line in table.splitlines()[:12]:
        print(line)
    uncovered = [r for r in rows if r["state"] == "uncovered" and r["s"].must]
    for r in uncovered:
        print(f"uncovered MUST: {r['s'].file}#{r['s'].key}: {r['s'].text[:120]}")
    ok = all(r["exit"] in (0,) and not r.get("broken") for r in reports.values())
    total = {k: sum(counts(r)[k] for r in reports.values()) for k in counts({"tests": {}})}
    print(f"conformance: {total['passed']} passed, {total['failed'] + total['error'] + total['xpassed']} "
          f"failed, {total['xfailed'] + total['skipped']} skipped")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
