#!/usr/bin/env bash
# Run .ci/run the way CI does, on this machine made as close to a new one as it allows.
#
#   tests/fresh/run.sh [REV]        (as root; REV defaults to HEAD)
#
# What CI does: a fresh clone of the submitted commit in another folder, a read-only
# copy of shared/ beside it, `bash .ci/run` with CI=true and no standard input.
# What a new machine lacks and earlier work may have left here:
#   - net.ipv4.ip_forward = 1 (a Docker daemon switches it on): set to 0 for the run,
#     put back afterwards;
#   - running daemons (dockerd, containerd, podman, qemu): refused, stop them first;
#   - pyrun's caches under /run/pyrun, the qemu kernel cache (/var/cache/pyrun-vm) and
#     the upstream suites' build cache (/var/tmp/pyrun-upstream): the run uses empty
#     caches of its own and /run/pyrun is moved aside;
#   - users and cgroups earlier test runs created (prl*, pyrun-*): refused, listed;
#   - the project's virtualenv: the clone makes its own.
# Packages installed by hand are the one thing it cannot take away: install.sh must
# list everything the suites use (a missing one shows up as a failure on a new machine).
# Prints the wall time and .ci/run's exit status, which it exits with.
# One compound command, read whole before it runs: editing this file meanwhile is safe.
{
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 2; }
repo=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
rev=${1:-HEAD}
shared=$(cd "$repo/../shared" && pwd)

problems=()
for daemon in dockerd containerd podman conmon qemu-system-x86_64; do
    # by the executable's name: pgrep -x would compare only 15 characters of it
    if pids=$(pgrep -f "^(/[^ ]*/)?$daemon( |$)"); then problems+=("$daemon is running (pids $(echo $pids))"); fi
done
users=$(awk -F: '$1 ~ /^prl/ {print $1}' /etc/passwd)
[ -z "$users" ] || problems+=("test users left by an earlier run: $users")
left=$(find /sys/fs/cgroup -maxdepth 4 -type d -name '*pyrun*' 2>/dev/null | head -5)
[ -z "$left" ] || problems+=("cgroups left by an earlier run: $left")
if [ ${#problems[@]} -gt 0 ]; then
    printf 'not like a new machine:\n' >&2; printf -- '- %s\n' "${problems[@]}" >&2; exit 2
fi

work=$(mktemp -d /tmp/pyrun-fresh.XXXXXX)
chmod 755 "$work"      # as a checkout is: the rootless tests run pyrun as an ordinary user
forward=$(sysctl -n net.ipv4.ip_forward)
moved=""
restore() {
    sysctl -qw net.ipv4.ip_forward="$forward"
    if [ -n "$moved" ]; then rm -rf /run/pyrun; mv "$moved" /run/pyrun; fi
    chmod -R u+w "$work" 2>/dev/null || true
    rm -rf "$work"
}
trap restore EXIT
sysctl -qw net.ipv4.ip_forward=0
if [ -e /run/pyrun ]; then moved="$work/run-pyrun.aside"; mv /run/pyrun "$moved"; fi

git clone -q --no-local "$repo" "$work/main"
git -C "$work/main" checkout -q --detach "$rev"
cp -a "$shared/." "$work/shared/" 2>/dev/null || { mkdir -p "$work/shared"; cp -a "$shared/." "$work/shared/"; }
chmod -R a-w "$work/shared"

echo "fresh run of $(git -C "$work/main" rev-parse --short HEAD) in $work (ip_forward=0, empty caches)"
start=$(date +%s)
set +e
( cd "$work/main" && CI=true PYRUN_VM_CACHE="$work/vm-cache" \
      PYRUN_UPSTREAM_CACHE="$work/upstream-cache" bash .ci/run </dev/null )
rc=$?
set -e
echo "fresh run: .ci/run exited $rc after $(( $(date +%s) - start )) s"
exit $rc
}
