#!/bin/sh
# Stage 1, /init of the initramfs (busybox sh as pid 1): load the modules that
# reach the host's root, mount it read-only over virtio-9p with a tmpfs overlay
# on top, mount the harness's writable share, and switch into it all.
# Any failure reboots, which ends qemu (-no-reboot); the host sees no status.
export PATH=/bin
fail() { echo "pyrun-vm stage1: $*"; busybox reboot -f; }
busybox mount -t proc proc /proc
busybox mount -t sysfs sysfs /sys
for m in $(busybox cat /modules); do
    busybox insmod "/lib/modules/$m.ko" || fail "insmod $m"
done
opts="trans=virtio,version=9p2000.L,msize=${pyrun_msize:-512000}"
busybox mount -t 9p -o "ro,$opts,cache=${pyrun_cache:-loose}" hostroot /lower || fail "mount hostroot"
busybox mount -t tmpfs -o mode=0755 overlay-rw /rw || fail "mount tmpfs"
busybox mkdir /rw/upper /rw/work
# /tmp stays on the root filesystem, as on the host, but starts empty: a
# whiteout hides the host's /tmp and the mkdir below makes an opaque directory.
busybox mknod /rw/upper/tmp c 0 0
busybox mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work overlay /newroot \
    || fail "mount overlay"
busybox mkdir -m 1777 /newroot/tmp
busybox mkdir -p /newroot/pyrun-io
busybox mount -t 9p -o "$opts" pyrunio /newroot/pyrun-io || fail "mount pyrunio"
# A command directory under the host's /tmp (a CI clone, say), and the
# `shared` beside it, would be hidden by the empty /tmp: show just those,
# a directory through an overlay of its own, a symlink as itself.
. /newroot/pyrun-io/env
n=0
show() {
    case "$1" in /tmp/?*) ;; *) return 0 ;; esac
    if [ -L "/lower$1" ]; then
        busybox mkdir -p "$(busybox dirname "/newroot$1")"
        busybox ln -sfn "$(busybox readlink "/lower$1")" "/newroot$1"
    elif [ -d "/lower$1" ]; then
        n=$((n + 1))
        busybox mkdir -p "/rw/show$n/upper" "/rw/show$n/work" "/newroot$1"
        busybox mount -t overlay -o "lowerdir=/lower$1,upperdir=/rw/show$n/upper,workdir=/rw/show$n/work" \
            overlay "/newroot$1" || fail "mount $1"
    fi
}
show "$PYRUN_VM_CWD"
show "$(busybox dirname "$PYRUN_VM_CWD")/shared"
show "$PYRUN_VM_MODULES"      # a kernel cache under /tmp (PYRUN_VM_CACHE): modprobe needs it
busybox umount /proc /sys
exec busybox switch_root /newroot /bin/busybox sh /pyrun-io/guest_init.sh
