"""Bad input: one clear line naming the field, a non-zero exit, one JSON error
entry in the log, and nothing left behind (the fixture's leak check)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest


def _fail(pyrun, tmp_path: Path, *args: str, usage: bool = False) -> tuple[str, list[dict]]:
    """usage: a bad command line, for which runc (urfave/cli) also prints
    "Incorrect Usage" and the command's help on stdout."""
    log = tmp_path / f"log-{len(list(tmp_path.glob('log-*')))}.json"
    res = pyrun(*args, check=False, global_args=("--log", str(log), "--log-format", "json"))
    assert res.returncode != 0
    if usage:
        assert res.stdout.startswith("Incorrect Usage") and "\nUSAGE:\n" in res.stdout, res.stdout
    else:
        assert res.stdout == ""
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["level"] for e in entries] == ["error"]
    assert entries[0]["msg"] == lines[0]
    assert entries[0]["time"].endswith("Z")
    return lines[0], entries


def _break(bundle, mutate) -> None:
    mutate(bundle.config)
    bundle.write()


CASES = {
    "missing process": (lambda c: c.pop("process"), "process"),
    "args not a list": (lambda c: c["process"].__setitem__("args", "sh"), "process.args"),
    "empty args": (lambda c: c["process"].__setitem__("args", []), "process.args"),
    "relative cwd": (lambda c: c["process"].__setitem__("cwd", "tmp"), "process.cwd"),
    "uid negative": (lambda c: c["process"]["user"].__setitem__("uid", -1), "process.user.uid"),
    "bad ociVersion": (lambda c: c.__setitem__("ociVersion", "one"), "ociVersion"),
    "bad namespace": (lambda c: c["linux"]["namespaces"].append({"type": "bogus"}), "linux.namespaces[6].type"),
    "duplicate namespace": (lambda c: c["linux"]["namespaces"].append({"type": "pid"}), "linux.namespaces"),
    "bad rlimit": (lambda c: c["process"]["rlimits"].append({"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}),
                   "process.rlimits[1].type"),
    "bad capability": (lambda c: c["process"]["capabilities"]["bounding"].append(21),
                       "process.capabilities.bounding"),
    "mount without destination": (lambda c: c["mounts"].append({"type": "tmpfs", "source": "tmpfs"}),
                                  "mounts[7]"),
    "hostname without uts": (lambda c: c["linux"].__setitem__(
        "namespaces", [n for n in c["linux"]["namespaces"] if n["type"] != "uts"]), "hostname"),
    "missing rootfs": (lambda c: c["root"].__setitem__("path", "nothere"), "root.path"),
    "missing namespace path": (lambda c: c["linux"]["namespaces"].append(
        {"type": "user", "path": "/proc/nothere/ns/user"}), "linux.namespaces[6].path"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_invalid_config_is_one_line_naming_the_field(pyrun, bundle, tmp_path, case):
    mutate, field = CASES[case]
    _break(bundle, mutate)
    line, _ = _fail(pyrun, tmp_path, "create", "-b", str(bundle.path), pyrun.new_id())
    assert line.startswith("pyrun create failed: ")
    assert field in line, line


def test_missing_config_json(pyrun, bundle, tmp_path):
    (bundle.path / "config.json").unlink()
    line, _ = _fail(pyrun, tmp_path, "create", "-b", str(bundle.path), pyrun.new_id())
    assert "config.json not found" in line


@pytest.mark.parametrize("text", ['{"ociVersion": ', '{"ociVersion": "1.0', '{"a": 1 "b": 2}',
                                  '{"a": [1, 2,]}', '{"a": "\\x"}', '\ud800'])
def test_invalid_json(pyrun, bundle, tmp_path, text):
    (bundle.path / "config.json").write_text(text, errors="surrogatepass")
    line, _ = _fail(pyrun, tmp_path, "run", "-b", str(bundle.path), pyrun.new_id())
    assert "config.json: invalid JSON" in line


def test_missing_bundle(pyrun, tmp_path):
    line, _ = _fail(pyrun, tmp_path, "create", "-b", str(tmp_path / "nothere"), pyrun.new_id())
    assert "nothere" in line and "no such file or directory" in line


@pytest.mark.parametrize("bad_id", ["../x", "a/b", "..", "x y", ""])
def test_bad_ids_are_refused(pyrun, bundle, tmp_path, bad_id):
    line, _ = _fail(pyrun, tmp_path, "create", "-b", str(bundle.path), bad_id)
    assert "invalid container ID format" in line
    assert not (pyrun.root.parent / "x").exists()


def test_duplicate_id_keeps_the_first_container(pyrun, bundle, tmp_path):
    bundle.set_args("sleep", "300")
    cid = pyrun.new_id()
    pyrun("create", "-b", str(bundle.path), cid)
    first = pyrun.state(cid)
    line, _ = _fail(pyrun, tmp_path, "create", "-b", str(bundle.path), cid)
    assert "container with given ID already exists" in line
    assert pyrun.state(cid) == first
    pyrun("delete", "-f", cid)


def test_init_step_failure_names_the_step_and_cleans_up(pyrun, bundle, tmp_path):
    # A bind mount whose source does not exist fails inside the init.
    bundle.config["mounts"].append({"destination": "/data", "type": "bind",
                                    "source": str(tmp_path / "no-such-source"), "options": ["bind"]})
    bundle.write()
    line, entries = _fail(pyrun, tmp_path, "create", "-b", str(bundle.path), pyrun.new_id())
    src = tmp_path / "no-such-source"
    # runc's text straight after "error during container init: " (callers glob it), the step after it
    assert line == ("pyrun create failed: unable to start container process: error during container init: "
                    f"error mounting '{src}' to rootfs at '/data': no such file or directory: {src} (step: prepare rootfs)")
    assert entries[0]["step"] == "prepare rootfs"


def test_missing_executable_uses_runcs_wording(pyrun, bundle, tmp_path):
    bundle.set_args("nosuch")
    line, _ = _fail(pyrun, tmp_path, "run", "-b", str(bundle.path), pyrun.new_id())
    assert 'exec: "nosuch": executable file not found in $PATH' in line


def test_errors_without_log_file_are_logrus_text_on_stderr(pyrun):
    res = pyrun("state", "pyrun-t-nothere", check=False)
    assert res.returncode == 1
    assert res.stderr.count("\n") == 1
    assert 'level=error msg="container does not exist"' in res.stderr


@pytest.mark.parametrize("args", [["start"], ["kill"], ["delete"], ["state"], ["create"]])
def test_missing_arguments(pyrun, tmp_path, args):
    line, _ = _fail(pyrun, tmp_path, *args, usage=True)
    assert line == f'pyrun: "{args[0]}" requires {"a minimum of" if args[0] == "kill" else "exactly"} 1 argument(s)'


def test_unknown_flag_and_command(pyrun, tmp_path):
    line, _ = _fail(pyrun, tmp_path, "create", "--bogus", "x", usage=True)
    assert "flag provided but not defined: -bogus" in line
    line, _ = _fail(pyrun, tmp_path, "frobnicate")
    assert "frobnicate" in line


def test_spec_writes_a_valid_config_and_refuses_to_overwrite(pyrun, tmp_path):
    from pyrun.spec.schema_loader import load_validator
    pyrun("spec", "--bundle", str(tmp_path))
    config = json.loads((tmp_path / "config.json").read_text())
    load_validator("config").validate(config)
    assert config["process"]["args"] == ["sh"] and config["root"]["path"] == "rootfs"
    line, _ = _fail(pyrun, tmp_path, "spec", "-b", str(tmp_path))
    assert "config.json exists" in line
    rootless = tmp_path / "rootless"
    rootless.mkdir()
    pyrun("spec", "--rootless", "-b", str(rootless))
    config = json.loads((rootless / "config.json").read_text())
    load_validator("config").validate(config)
    kinds = {n["type"] for n in config["linux"]["namespaces"]}
    assert "user" in kinds and "network" not in kinds and "cgroup" not in kinds
    assert config["linux"]["uidMappings"][0]["size"] == 1


def test_schema_cache_never_lets_a_changed_config_through(pyrun, bundle, tmp_path):
    bundle.set_args("true")
    pyrun("run", "-b", str(bundle.path), pyrun.new_id())
    pyrun("run", "-b", str(bundle.path), pyrun.new_id())          # served from the cache
    assert (pyrun.root / "@validated-configs").exists()
    bundle.config["process"]["user"]["uid"] = "zero"
    bundle.write()
    line, _ = _fail(pyrun, tmp_path, "run", "-b", str(bundle.path), pyrun.new_id())
    assert "process.user.uid" in line
