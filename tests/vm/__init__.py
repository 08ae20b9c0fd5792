"""A qemu VM running Debian's kernel with cgroup v2 only, over the host's own
filesystem: lets the cgroup tests run on pure v2 on a hybrid host."""
