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
# A command directory under the host's /tmp (a CI clone, say) would be hidden by
# the empty /tmp: show that one directory, through an overlay of its own.
. /newroot/pyrun-io/env
case "$PYRUN_VM_CWD" in
/tmp/*)
    busybox mkdir -p /rw/cwd-upper /rw/cwd-work "/newroot$PYRUN_VM_CWD"
    busybox mount -t overlay -o "lowerdir=/lower$PYRUN_VM_CWD,upperdir=/rw/cwd-upper,workdir=/rw/cwd-work" \
        overlay "/newroot$PYRUN_VM_CWD" || fail "mount $PYRUN_VM_CWD"
    ;;
esac
busybox umount /proc /sys
exec busybox switch_root /newroot /bin/busybox sh /pyrun-io/guest_init.sh
