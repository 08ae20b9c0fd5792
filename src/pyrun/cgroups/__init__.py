"""cgroup hierarchy detection and the container's cgroup directories."""
