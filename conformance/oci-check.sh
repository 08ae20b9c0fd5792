#!/bin/sh
# oci-check: run as the container's process, print as one JSON object what this
# process actually sees (in the spirit of runtime-tools' runtimetest).
#
# Busybox sh + awk only: it runs in the bare busybox rootfs, adds no mount and
# no host binary to the container, and the shell reading /proc/$$ IS the
# container process (pid, caps, seccomp, limits are its own, not a helper's).
#
#   sh /oci-check.sh [--stat PATH]... [--sysctl NAME]... [--read FILE]... [--write PATH]...
#                    [--run NAME CMD]...
set -u
me=$$

# A JSON string from stdin (all lines, newlines kept as \n).
jstr() {
    awk 'BEGIN { ORS = ""; printf "\"" }
         { gsub(/\\/, "\\\\"); gsub(/"/, "\\\""); gsub(/\t/, "\\t"); gsub(/\r/, "\\r");
           gsub(/[\001-\037]/, "?"); if (NR > 1) printf "\\n"; printf "%s", $0 }
         END { printf "\"" }'
}
str() { printf '%s' "$1" | jstr; }

stats=""; sysctls=""; reads=""; writes=""; runs=""
while [ $# -gt 0 ]; do
    case "$1" in
        --stat) stats="$stats $2"; shift 2 ;;
        --sysctl) sysctls="$sysctls $2"; shift 2 ;;
        --read) reads="$reads $2"; shift 2 ;;
        --write) writes="$writes $2"; shift 2 ;;
        --run) runs="$runs|$2"; eval "run_$2=\$3"; shift 3 ;;
        *) echo "oci-check: unknown argument $1" >&2; exit 2 ;;
    esac
done

printf '{"pid": %s' "$me"
printf ', "ppid": %s' "$(awk '{ print $4 }' /proc/$me/stat)"

printf ', "namespaces": {'
sep=""
for ns in cgroup ipc mnt net pid time user uts; do
    link=$(readlink /proc/$me/ns/$ns 2>/dev/null) || continue
    ino=${link#*[}; ino=${ino%]}
    printf '%s"%s": %s' "$sep" "$ns" "$ino"; sep=", "
done
printf '}'

# /proc/<pid>/status as {field: value}: Uid, Gid, Groups, Umask, Cap*, NoNewPrivs, Seccomp...
printf ', "status": {'
awk -F':\t*' 'BEGIN { ORS = "" } {
    v = $2; gsub(/\\/, "\\\\", v); gsub(/"/, "\\\"", v); gsub(/\t/, " ", v)
    printf "%s\"%s\": \"%s\"", (NR > 1 ? ", " : ""), $1, v }' /proc/$me/status
printf '}'

# /proc/<pid>/limits: {"Max open files": ["1024", "1024"], ...}
printf ', "limits": {'
awk 'BEGIN { ORS = "" } NR > 1 {
    name = substr($0, 1, 26); sub(/ +$/, "", name)
    split(substr($0, 27), f, " +")
    printf "%s\"%s\": [\"%s\", \"%s\"]", (NR > 2 ? ", " : ""), name, f[1], f[2] }' /proc/$me/limits
printf '}'

printf ', "oom_score_adj": %s' "$(cat /proc/$me/oom_score_adj)"
printf ', "hostname": '; str "$(cat /proc/sys/kernel/hostname)"
printf ', "domainname": '; str "$(cat /proc/sys/kernel/domainname)"
printf ', "cwd": '; str "$(readlink /proc/$me/cwd)"
printf ', "args": ['
tr '\0' '\n' < /proc/$me/cmdline | awk 'BEGIN { ORS = "" } {
    gsub(/\\/, "\\\\"); gsub(/"/, "\\\""); printf "%s\"%s\"", (NR > 1 ? ", " : ""), $0 }'
printf '], "env": ['
tr '\0' '\n' < /proc/$me/environ | awk 'BEGIN { ORS = "" } {
    gsub(/\\/, "\\\\"); gsub(/"/, "\\\""); printf "%s\"%s\"", (NR > 1 ? ", " : ""), $0 }'
printf ']'

# mountinfo: one object per mount, in the kernel's order.
printf ', "mounts": ['
awk 'BEGIN { ORS = "" } {
    opt = ""; for (i = 7; $i != "-"; i++) opt = opt (opt == "" ? "" : " ") $i
    printf "%s{\"id\": %s, \"parent\": %s, \"dev\": \"%s\", \"root\": \"%s\", \"target\": \"%s\", \"options\": \"%s\", \"optional\": \"%s\", \"fstype\": \"%s\", \"source\": \"%s\", \"super\": \"%s\"}",
        (NR > 1 ? ", " : ""), $1, $2, $3, $4, $5, $6, opt, $(i+1), $(i+2), $(i+3) }' /proc/$me/mountinfo
printf ']'

printf ', "cgroup": '; str "$(cat /proc/$me/cgroup)"
printf ', "fds": ['
sep=""
for fd in $(ls /proc/$me/fd); do
    target=$(readlink /proc/$me/fd/$fd 2>/dev/null) || continue
    printf '%s{"fd": %s, "target": ' "$sep" "$fd"; str "$target"; printf '}'; sep=", "
done
printf ']'

# Paths asked for: type, device numbers (decimal), mode, owner.
printf ', "paths": {'
sep=""
for p in $stats; do
    printf '%s' "$sep"; str "$p"; sep=", "
    if [ -e "$p" ] || [ -L "$p" ]; then
        set -- $(stat -c '%f %t %T %a %u %g %s' "$p")
        printf ': {"exists": true, "rawmode": "%s", "major": %d, "minor": %d, "perm": "%s", "uid": %s, "gid": %s, "size": %s, "type": ' \
            "$1" "0x$2" "0x$3" "$4" "$5" "$6" "$7"
        str "$(stat -c %F "$p")"
        printf ', "link": '; if [ -L "$p" ]; then str "$(readlink "$p")"; else printf null; fi
        printf '}'
    else
        printf ': {"exists": false}'
    fi
done
printf '}'

printf ', "sysctls": {'
sep=""
for s in $sysctls; do
    f=/proc/sys/$(echo "$s" | tr . /)
    printf '%s' "$sep"; str "$s"; printf ': '; sep=", "
    if v=$(cat "$f" 2>/dev/null); then str "$v"; else printf null; fi
done
printf '}'

printf ', "files": {'
sep=""
for f in $reads; do
    printf '%s' "$sep"; str "$f"; printf ': '; sep=", "
    if v=$(cat "$f" 2>/dev/null); then str "$v"; else printf null; fi
done
printf '}'

# Can this process write there? (touch a file in a directory, or append to a file)
printf ', "writable": {'
sep=""
for p in $writes; do
    printf '%s' "$sep"; str "$p"; sep=", "
    if [ -d "$p" ]; then
        if touch "$p/.oci-check-w" 2>/dev/null; then rm -f "$p/.oci-check-w"; printf ': true'; else printf ': false'; fi
    elif (: >> "$p") 2>/dev/null; then printf ': true'; else printf ': false'; fi
done
printf '}'

# Commands asked for: their exit status and output.
printf ', "runs": {'
sep=""
IFS_SAVE=$IFS; IFS='|'
for name in $runs; do
    [ -n "$name" ] || continue
    IFS=$IFS_SAVE
    eval "cmd=\$run_$name"
    out=$(sh -c "$cmd" 2>&1); rc=$?
    printf '%s"%s": {"rc": %s, "out": ' "$sep" "$name" "$rc"; str "$out"; printf '}'; sep=", "
    IFS='|'
done
IFS=$IFS_SAVE
printf '}}\n'
