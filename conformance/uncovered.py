"""Linux statements no test here covers, and why: (anchor, fragment, nth) -> reason.

Each key is resolved against the spec text by run.py (statements.find), so a
reason cannot outlive the sentence it excuses.  Kinds of reason:
- author: a requirement on whoever writes config.json or a later spec, with
  nothing a runtime does or fails to do;
- host: needs hardware or kernel set-up this machine lacks (resctrl, RDMA,
  cgroup v2 controllers);
- scope: outside the operations the spec defines, or not observable from outside;
- not yet ported: testable, and tested for pyrun under tests/, but not yet in this
  runtime-neutral suite: counted as uncovered, with the note.
"""
from __future__ import annotations

_AUTHOR = "author: a requirement on the config's author, not on the runtime"
_IMAGE = ("author: constrains producers of org.opencontainers.image.* annotations (image "
          "conversion); the runtime passes annotations through (test_unknown_annotations_are_kept_and_ignored)")
_RDT = ("host: needs Intel RDT (a mounted resctrl filesystem); this machine has none, so only the "
        "'no resctrl: error' rule is testable (test_intel_rdt_without_resctrl_is_refused)")
_RES = ("not yet ported here: pyrun's cgroup limits are tested in tests/test_cgroup_resources.py "
        "and tests/test_update.py (issue #4), not yet in this runtime-neutral suite")

UNCOVERED: dict[tuple[str, str, int], str] = {
    ("configRoot", "The value SHOULD be the conventional rootfs", 0): _AUTHOR,
    ("configMounts", "Linux: This value SHOULD be an absolute path", 0):
        _AUTHOR + " (a relative destination is still read relative to / : covered)",
    ("configLinuxMountOptions", "This option SHOULD NOT be passed to the underlying mount(2) call", 1):
        "scope: not observable; a bind mount ignores mount(2) data anyway",
    ("configLinuxMountOptions", "This option SHOULD NOT be passed to the underlying mount(2) call", 2):
        "scope: not observable; a bind mount ignores mount(2) data anyway",
    ("configLinuxMountOptions", "If a custom option string is already recognized by mount(8)", 0):
        "scope: which custom strings a runtime adds is its choice; nothing common to test",
    ("configPOSIXMounts", "SHOULD contain either idmap or ridmap", 1): _AUTHOR,
    ("configPOSIXMounts", "SHOULD contain either idmap or ridmap", 2): _AUTHOR,
    ("configLinuxProcess", "SHOULD NOT change process' CPU affinity", 0):
        "scope: execCPUAffinity applies to exec'd processes; exec is not a runtime-spec operation",
    ("configAnnotations", "Keys MUST be strings", 0):
        "scope: JSON object keys are always strings; no config can violate it",
    ("configAnnotations", "Keys SHOULD be named using a reverse domain notation", 0): _AUTHOR,
    ("configAnnotations", "annotations using keys in this namespace MUST be as described", 0): _IMAGE,
    ("configAnnotations", "valid value for the os property", 0): _IMAGE,
    ("configAnnotations", "valid value for the os.version property", 0): _IMAGE,
    ("configAnnotations", "valid value for the os.features property", 0): _IMAGE,
    ("configAnnotations", "valid value for the architecture property", 0): _IMAGE,
    ("configAnnotations", "valid value for the variant property", 0): _IMAGE,
    ("configAnnotations", "valid value for the author property", 0): _IMAGE,
    ("configAnnotations", "valid value for the created property", 0): _IMAGE,
    ("configAnnotations", "valid value for the config.StopSignal property", 0): _IMAGE,
    ("configAnnotations", "This annotation SHOULD only be used in accordance", 1): _IMAGE,
    ("configAnnotations", "This annotation SHOULD only be used in accordance", 2): _IMAGE,
    ("configAnnotations", "This annotation SHOULD only be used in accordance", 3): _IMAGE,
    ("configAnnotations", "This annotation SHOULD only be used in accordance", 4): _IMAGE,
    ("configAnnotations", "This annotation SHOULD only be used in accordance", 5): _IMAGE,
    ("configAnnotations", "This annotation SHOULD only be used in accordance", 6): _IMAGE,
    ("configAnnotations", "This annotation SHOULD only be used in accordance", 7): _IMAGE,
    ("configAnnotations", "This annotation SHOULD only be used in accordance", 8): _IMAGE,
    ("configAnnotations", "Indicates signal that SHOULD be sent by the container runtimes", 0):
        "scope: `kill` takes its signal from the caller; choosing the stop signal is the caller's job",
    ("configAnnotations", "reserved and MUST NOT be used by subsequent specifications", 0):
        "author: binds future versions of the spec",
    ("configLinuxDevices", "The same type, major and minor SHOULD NOT be used", 0): _AUTHOR,
    ("configLinuxControlGroups", "check if the container cgroup is fit for purpose", 0):
        "scope: what 'fit for purpose' means is the runtime's choice (MAY); nothing common to test",
    ("configLinuxCgroupsPath", "If the /sys/kernel/cgroup/delegate file does not exist", 0):
        "host: both kernels here (the host's and the cgroup v2 VM's) have /sys/kernel/cgroup/delegate; "
        "hiding it needs a private mount namespace around the runtime, which this suite does not set up "
        "(pyrun's fallback is tested that way in the VM by tests/test_cgroup_ownership.py)",
    ("configLinuxMemory", "MUST reject the new limit", 0):
        "scope: checkBeforeUpdate is about `update`, which is not a runtime-spec operation",
    ("configLinuxBlockIO", "You MUST specify at least one of weight or leafWeight", 0): _AUTHOR,
    ("configLinuxRDMA", "You MUST specify at least one of the hcaHandles or hcaObjects", 0):
        "host: no RDMA controller or hardware here; " + _AUTHOR,
    ("configLinuxIntelRdt", "If intelRdt is set, the runtime MUST write the container process ID", 0): _RDT,
    ("configLinuxIntelRdt", "If intelRdt is not set, the runtime MUST NOT manipulate", 0): _RDT,
    ("configLinuxIntelRdt", "value / means that the container MUST be assigned", 0): _RDT,
    ("configLinuxIntelRdt", "The value SHOULD start with L3:", 0): _RDT,
    ("configLinuxIntelRdt", "The value MUST start with MB:", 0): _RDT,
    ("configLinuxIntelRdt", "^The value MUST NOT contain newlines", 0): _RDT,
    ("configLinuxIntelRdt", "The following rules on parameters MUST be applied", 0): _RDT,
    ("configLinuxIntelRdt", "If both l3CacheSchema and memBwSchema are set", 0): _RDT,
    ("configLinuxIntelRdt", "The runtimes MUST write l3CacheSchema first", 0): _RDT,
    ("configLinuxIntelRdt", "If either l3CacheSchema or memBwSchema is set", 0): _RDT,
    ("configLinuxIntelRdt", "If schemata field is set", 0): _RDT,
    ("configLinuxIntelRdt", "If none of l3CacheSchema, memBwSchema or schemata is set", 0): _RDT,
    ("configLinuxIntelRdt", "If closID is not set, runtimes MUST use the container ID", 0): _RDT,
    ("configLinuxIntelRdt", "doesn't exist, the runtimes MUST create it", 0): _RDT,
    ("configLinuxIntelRdt", "runtimes MUST compare l3CacheSchema", 0): _RDT,
    ("configLinuxIntelRdt", "runtime MUST check if corresponding pre-configured directory", 0): _RDT,
    ("configLinuxIntelRdt", "runtime MUST assign container to this closID", 0): _RDT,
    ("configLinuxIntelRdt", "the runtime MUST remove the sub-directory", 0): _RDT,
    ("configLinuxIntelRdt", "the runtime MUST NOT remove the sub-directory", 0): _RDT,
    ("configLinuxIntelRdt", "the runtime MUST create a dedicated MON group", 0): _RDT,
    ("configLinuxIntelRdt", "as the name of the MON group", 0): _RDT,
    ("configLinuxIntelRdt", "The runtime MUST delete the MON group", 0): _RDT,
    ("configLinuxIntelRdt", "If creation of the MON group fails", 0): _RDT,
    ("features", "SHOULD be determined on the compilation time", 0):
        "scope: not observable from outside beyond the output being stable (not host-dependent here)",
}
