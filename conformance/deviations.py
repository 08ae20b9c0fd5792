"""Where a runtime is known to deviate from the spec: test name -> why.

A listed test runs as a strict xfail for that runtime, so the suite stays as
strict as the spec and an upstream fix shows up as XPASS (then remove the entry).
Keys are the first word of the runtime's `--version` ('runc', 'pyrun', ...).
"""
from __future__ import annotations

DEVIATIONS: dict[str, dict[str, str]] = {
    "runc": {
        "test_delete_on_created_fails":
            "runc 1.1.5 `delete` (without --force) kills and removes a created container "
            "(delete.go: Created -> killContainer) instead of refusing",
        "test_hooks_run_in_order_at_their_operation":
            "runc 1.1.5 runs poststart hooks at the end of `create`, before the user process "
            "is executed (fixed in runc main after 1.2, commit 3cdda464f)",
        "test_hooks_get_the_state_on_stdin":
            "runc 1.1.5 runs poststart during `create`, so the state it passes says 'created'",
        "test_start_container_hook_failure":
            "runc 1.1.5 `start` exits 0 when a startContainer hook fails (the init reports it "
            "after the exec.fifo was already read)",
        "test_poststart_hook_failure":
            "runc 1.1.5 runs poststart during `create`: its failure fails create, not start",
        "test_non_semver_oci_version_is_refused":
            "runc 1.1.5 never looks at ociVersion: any string, SemVer or not, is accepted",
        "test_mount_option[defaults]":
            "runc 1.1.5 does not know the `defaults` option and passes it to the filesystem "
            "as data (tmpfs: invalid argument)",
        "test_idmapped_bind_mount":
            "runc 1.1.5 has no idmapped mounts: it ignores idmap/uidMappings and the files "
            "show as the overflow uid 65534",
        "test_idmap_without_mappings_or_userns_is_refused":
            "runc 1.1.5 does not know idmap/ridmap and accepts them silently",
        "test_mount_mappings_come_in_pairs":
            "runc 1.1.5 ignores mount uidMappings/gidMappings, so it never checks the pair",
        "test_domainname": "runc 1.1.5 does not implement domainname",
        "test_empty_annotation_key_is_refused": "runc 1.1.5 does not validate annotation keys",
        "test_non_string_annotation_value_is_refused[None]":
            "runc 1.1.5 (Go's encoding/json) reads a null annotation value as \"\"",
        "test_new_time_namespace": "runc 1.1.5 has no time namespace",
        "test_time_offsets": "runc 1.1.5 has no time namespace",
        "test_device_over_mismatching_file_is_refused":
            "runc 1.1.5 ignores EEXIST from mknod and leaves the mismatching file in place",
        "test_relative_masked_path_is_refused": "runc 1.1.5 does not check maskedPaths are absolute",
        "test_relative_readonly_path_is_refused":
            "runc 1.1.5 does not check readonlyPaths are absolute",
        "test_errno_with_an_action_without_errno_is_refused":
            "runc 1.1.5 ignores errnoRet/defaultErrnoRet on actions that take no errno",
        "test_seccomp_rule_without_names_is_refused":
            "runc 1.1.5 accepts a seccomp rule with an empty names list",
        "test_ungrantable_capability_is_logged":
            "runc 1.1.5 fails with 'unable to apply caps: operation not permitted', naming "
            "no capability, when it lacks one the config asks for",
        "test_ungrantable_capability_does_not_fail":
            "runc 1.1.5 fails create when it lacks a capability the config asks for",
        "test_claimed_mount_options_are_recognised":
            "runc 1.1.5 claims `defaults` in features but passes it to the filesystem as data",
        "test_claimed_mount_options_are_not_fs_specific":
            "runc 1.1.5 lists the filesystem-specific acl/noacl in features.mountOptions",
        "test_claimed_seccomp_words_are_recognised":
            "runc 1.1.5 claims seccomp architectures its libseccomp cannot add to a filter "
            "(numerical argument out of domain)",
        "test_idmap_claim_matches_behaviour":
            "runc 1.1.5 claims no idmap support yet mounts an idmap mount unmapped, silently",
        "test_recursive_mount_option[ratime]":
            "runc 1.1.5 does not apply the clearing recursive option `ratime`",
        "test_recursive_mount_option[rdev]":
            "runc 1.1.5 does not apply the clearing recursive option `rdev`",
        "test_recursive_mount_option[rdiratime]":
            "runc 1.1.5 does not apply the clearing recursive option `rdiratime`",
        "test_recursive_mount_option[rexec]":
            "runc 1.1.5 does not apply the clearing recursive option `rexec`",
        "test_recursive_mount_option[rrelatime]":
            "runc 1.1.5 does not apply the clearing recursive option `rrelatime`",
        "test_recursive_mount_option[rrw]":
            "runc 1.1.5 does not apply the clearing recursive option `rrw`",
        "test_recursive_mount_option[rstrictatime]":
            "runc 1.1.5 does not apply the clearing recursive option `rstrictatime`",
        "test_recursive_mount_option[rsuid]":
            "runc 1.1.5 does not apply the clearing recursive option `rsuid`",
        "test_recursive_mount_option[rsymfollow]":
            "runc 1.1.5 does not apply the clearing recursive option `rsymfollow`",
        "test_recursive_mount_option[rnostrictatime]":
            "runc 1.1.5 passes `rnostrictatime` to mount(2) as data: invalid argument",
        "test_idmap_without_mount_mappings_in_a_userns":
            "runc 1.1.5 ignores idmap/ridmap: the mount is made without an idmapping",
        "test_zero_hook_timeout_is_refused": "runc 1.1.5 does not validate hook timeouts",
        "test_net_device_moved_in": "runc 1.1.5 has no linux.netDevices",
        "test_missing_net_device_is_refused": "runc 1.1.5 has no linux.netDevices and ignores it",
        "test_net_device_name_taken_is_refused": "runc 1.1.5 has no linux.netDevices and ignores it",
        "test_net_device_name_template": "runc 1.1.5 has no linux.netDevices",
        "test_cpu_burst_is_applied":
            "runc 1.1.5 does not know linux.resources.cpu.burst (added in runc 1.2): "
            "cpu.cfs_burst_us stays 0",
        "test_pids_limit_zero_is_a_limit":
            "runc 1.1.5 reads pids.limit 0 as unset and leaves pids.max at max",
        "test_poststop_failure_is_a_warning":
            "runc 1.1.5 stops at the first failing poststop hook: the remaining ones never run",
    },
    "pyrun": {
        "test_pids_limit_zero_is_a_limit":
            "pyrun follows runc >= 1.2 (runc issue 4014, cgroups.bats 'pids.limit=0 means 1'): "
            "pids.limit 0 is written as pids.max 1 with every driver, because systemd's TasksMax "
            "cannot be 0; with the init in the cgroup neither value lets a task fork",
    },
}
