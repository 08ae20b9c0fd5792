#!/bin/busybox sh
# Stage 2, pid 1 on the host's root (read-only 9p + tmpfs overlay): the mounts
# a systemd-less Debian would have, with cgroup v2 alone at /sys/fs/cgroup and
# every controller enabled for children of the root; then the harness's
# command, its output and exit status written to the share; then power off.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8 TERM=dumb PYRUN_IN_VM=1
bb=/bin/busybox
io=/pyrun-io
if [ "$1" = run ]; then       # as systemd's pyrun-vm.service (below): everything is set up
    export PYRUN_VM_OUT=$io/files
    . $io/env
    cd "$PYRUN_VM_CWD" && /bin/sh $io/command > $io/output 2>&1 < /dev/null
    echo $? > $io/status
    $bb sync
    $bb reboot -f
fi
$bb mount -t proc -o nosuid,nodev,noexec proc /proc
$bb mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
$bb mount -t devtmpfs -o nosuid,mode=0755 devtmpfs /dev
$bb mkdir -p /dev/pts /dev/shm /dev/mqueue
$bb mount -t devpts -o nosuid,noexec,gid=5,mode=620,ptmxmode=0666 devpts /dev/pts
$bb mount -t tmpfs -o nosuid,nodev,mode=1777 shm /dev/shm
$bb mount -t mqueue -o nosuid,nodev,noexec mqueue /dev/mqueue
$bb ln -sf /proc/self/fd /dev/fd
$bb ln -sf /proc/self/fd/0 /dev/stdin
$bb ln -sf /proc/self/fd/1 /dev/stdout
$bb ln -sf /proc/self/fd/2 /dev/stderr
$bb mount -t tmpfs -o nosuid,nodev,mode=0755 tmpfs /run
$bb mount -t cgroup2 -o nosuid,nodev,noexec,nsdelegate cgroup2 /sys/fs/cgroup
$bb mount -t bpf -o nosuid,nodev,noexec bpf /sys/fs/bpf 2>/dev/null
for c in $($bb cat /sys/fs/cgroup/cgroup.controllers); do
    echo "+$c" > /sys/fs/cgroup/cgroup.subtree_control
done
$bb hostname pyrun-vm
$bb ip link set lo up

. $io/env
if [ -n "$PYRUN_VM_MODULES" ]; then   # the unpacked kernel's modules, for modprobe
    $bb mkdir -p "/lib/modules/$($bb uname -r)"
    $bb mount --bind "$PYRUN_VM_MODULES" "/lib/modules/$($bb uname -r)"
    # the kernel's module autoload (`ip link add type veth`) runs /sbin/modprobe
    [ -e /sbin/modprobe ] || $bb ln -s /bin/busybox /sbin/modprobe
fi
export PYRUN_VM_OUT=$io/files
run_command() {
    # /bin/sh, not busybox sh: busybox prefers its own applets to the PATH
    cd "$PYRUN_VM_CWD" && /bin/sh $io/command > $io/output 2>&1 < /dev/null
    echo $? > $io/status
    $bb sync
    $bb reboot -f
}
if [ -n "$PYRUN_VM_SYSTEMD" ]; then
    # systemd as pid 1 (the host's systemd and dbus, from the 9p root): only the
    # command's unit and the system bus start, none of the host's own units;
    # the command runs as that unit, so systemd owns every cgroup as on a real host.
    $bb mkdir -p /etc/systemd/system/dbus.socket.d /etc/systemd/system/dbus.service.d
    printf '[Unit]\nDefaultDependencies=no\n' > /etc/systemd/system/dbus.socket.d/pyrun-vm.conf
    printf '[Unit]\nDefaultDependencies=no\n' > /etc/systemd/system/dbus.service.d/pyrun-vm.conf
    $bb cat > /etc/systemd/system/pyrun-vm.service <<EOF
[Unit]
DefaultDependencies=no
Wants=dbus.socket dbus.service
After=dbus.socket dbus.service
[Service]
Type=oneshot
Environment=PATH=$PATH HOME=$HOME LANG=$LANG TERM=$TERM PYRUN_IN_VM=1 PYRUN_VM_OUT=$PYRUN_VM_OUT PYRUN_VM_SYSTEMD=1
ExecStart=$bb sh $io/guest_init.sh run
StandardOutput=tty
StandardError=tty
TTYPath=/dev/console
EOF
    exec /lib/systemd/systemd --unit=pyrun-vm.service --log-target=console --show-status=0
fi
run_command
