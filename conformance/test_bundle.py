"""bundle.md: the filesystem bundle."""
from __future__ import annotations

import shutil

import pytest

from conftest import Bundle, Runtime, run_check

spec = pytest.mark.spec


@spec("containerFormat01", "This REQUIRED file MUST reside in the root of the bundle directory and MUST be named config.json")
def test_config_must_be_named_config_json_at_the_root(runtime: Runtime, bundle: Bundle) -> None:
    """config.json moved into a subdirectory, or renamed: no bundle; put back: it runs."""
    cfg = bundle.path / "config.json"
    sub = bundle.path / "sub"
    sub.mkdir()
    shutil.move(cfg, sub / "config.json")
    shutil.copy(sub / "config.json", bundle.path / "Config.json")
    for _ in range(2):
        cid = runtime.new_id()
        res = runtime("create", "--bundle", str(bundle.path), cid, check=False)
        assert res.rc != 0 and res.errors and not runtime.exists(cid)
        res = runtime("create", "--bundle", str(sub.parent / "Config.json"), cid, check=False)
        assert res.rc != 0 and not runtime.exists(cid)
    shutil.move(sub / "config.json", cfg)
    assert run_check(runtime, bundle)["pid"] == 1


@spec("containerFormat02", "that directory itself is not part of the bundle")
def test_bundle_directory_name_does_not_matter(runtime: Runtime, bundle: Bundle) -> None:
    """The same artifacts in a directory of another name (reached through a relative
    --bundle path) make the same container; state.bundle is the absolute path."""
    import os
    original = bundle.path
    other = original.parent / (original.name + "-renamed dir")
    original.rename(other)
    bundle.path = other
    cwd = os.getcwd()
    try:
        bundle.check_args()
        cid = runtime.new_id()
        os.chdir(other.parent)
        runtime("create", "--bundle", other.name, cid)
        st = runtime.state(cid)
        runtime("delete", "--force", cid)
    finally:
        os.chdir(cwd)
        other.rename(original)        # the fixture removes the directory it made
        bundle.path = original
    assert st["bundle"] == str(other)
