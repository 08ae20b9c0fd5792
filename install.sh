#!/usr/bin/env bash
# Install pyrun on Debian 12 as root: system packages, a virtualenv on Debian's
# python3 (its start-up is ~20 ms; pyrun is started 3-5 times per container),
# pyrun itself, then run a busybox container that prints what it sees.
#   PYRUN_VENV   where the virtualenv goes (default: .venv beside this file)
#   PYRUN_NO_DEMO=1   only install into the virtualenv: no /usr/local/bin link, no demo
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
venv=${PYRUN_VENV:-$here/.venv}

packages=(python3-venv busybox-static runc crun libseccomp2 iproute2 procps docker.io podman uidmap time)
packages+=(gcc libc6-dev)     # launcher/pyrun-python.c: the console script's read-only interpreter
packages+=(qemu-system-x86)   # tests/vm/: boots Debian's kernel with pure cgroup v2
packages+=(criu)              # checkpoint/restore (pyrun drives `criu swrk`)
# conformance/upstream/: runc's bats suite and runtime-tools, built offline at CI time
packages+=(bats debootstrap gawk jq gcc libc6-dev libseccomp-dev pkg-config xz-utils)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x "$venv/bin/python" ]; then
    /usr/bin/python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q --disable-pip-version-check -e "$here[test]"
# Replace pip's console script (site, .pth files, `import re`: ~8 ms per command)
# with one that starts the interpreter isolated and without site, naming the two
# directories site would have found; it falls back to site if they moved.
site_dir=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
# The script's interpreter: pyrun-python, which execs the venv's python3
# through a read-only clone of its mount (CVE-2019-5736 class; pyrun.selfexe
# does the same from Python, at the cost of a second interpreter start,
# where this cannot be built).
interp="$venv/bin/python3"
if cc -O2 -static -s -o "$venv/bin/pyrun-python.new" "$here/launcher/pyrun-python.c" 2>/dev/null \
        || cc -O2 -s -o "$venv/bin/pyrun-python.new" "$here/launcher/pyrun-python.c"; then
    mv "$venv/bin/pyrun-python.new" "$venv/bin/pyrun-python"
    interp="$venv/bin/pyrun-python"
else
    echo "install.sh: warning: cannot build launcher/pyrun-python.c; create/run/exec will re-exec" \
         "through pyrun.selfexe (a second interpreter start)" >&2
fi
cat > "$venv/bin/pyrun.new" <<EOF
#!$interp -IS
import sys
sys.path[:0] = ["$here/src", "$site_dir"]
try:
    from pyrun.selfexe import ensure
except ImportError:
    import site
    site.main()
    from pyrun.selfexe import ensure
try:
    ensure(sys.argv[1:])     # create/run/exec: re-exec from a read-only interpreter
except Exception:
    pass                     # main() reports it as the command's error
from pyrun.cli.main import exit_now, main
exit_now(main())
EOF
chmod 755 "$venv/bin/pyrun.new" && mv "$venv/bin/pyrun.new" "$venv/bin/pyrun"
[ "${PYRUN_NO_DEMO:-}" = 1 ] && exit 0     # test.sh: leave the host's PATH alone
ln -sf "$venv/bin/pyrun" /usr/local/bin/pyrun

# The demo: a busybox bundle, run by pyrun, printing its own hostname, pid and uid.
demo=$(mktemp -d /tmp/pyrun-demo.XXXXXX)
trap 'rm -rf "$demo"' EXIT
"$venv/bin/python" -m pyrun.tools.busybox_bundle "$demo" --hostname pyrun-demo -- \
    sh -c 'echo "hostname: $(hostname)  pid: $$  uid: $(id -u)"'
"$venv/bin/pyrun" run --bundle "$demo" "pyrun-demo-$$"
