#!/usr/bin/env bash
# A fresh Debian 12 for the install test (tests/test_pbx_install.py): debootstrap into a folder under /opt, once
# per machine, with what the README's install asks of apt already there (the test boots it with systemd-nspawn and
# no network), and the libraries the suite's Asterisk build links to, so that the same build runs inside it as
# "the Asterisk beside it" (Debian 12 ships no Asterisk package).
#
# Usage: debian_root.sh [ROOT] [ASTERISK_PREFIX]. Idempotent: a root whose marker matches this script and that
# Asterisk build is kept; anything else is built again beside it and swapped in. Needs root and Debian's mirror.
set -euo pipefail

ROOT=${1:-${HOTLINE_EVAL_DEBIAN_ROOT:-/opt/hotline-eval-debian-12}}
ASTERISK_PREFIX=${2:-${ASTERISK_PREFIX:-/opt/asterisk-22.10.1}}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

# The README's `apt-get install` line, and what a host has before it: systemd as init, and ip for the test's link.
PACKAGES=(systemd systemd-sysv dbus iproute2 ca-certificates python3-venv postgresql redis-server sox espeak-ng)

# The Debian packages of the shared libraries the Asterisk build's binary, libraries and modules load (those of
# the build itself, under its prefix, belong to no package).
asterisk_libraries() {
    find "$ASTERISK_PREFIX/sbin" "$ASTERISK_PREFIX/lib" -type f \( -name asterisk -o -name '*.so*' \) -print0 |
        xargs -0 ldd 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u |
        while read -r library; do
            dpkg -S "$library" 2>/dev/null || dpkg -S "$(readlink -f "$library")" 2>/dev/null || true
        done | cut -d: -f1 | sort -u
}

# One builder at a time, and never while a machine runs on the root (tests/debian_machine.py holds the same lock
# around its machine, and sets HOTLINE_EVAL_DEBIAN_ROOT_LOCKED when it calls this script under it).
if [ -z "${HOTLINE_EVAL_DEBIAN_ROOT_LOCKED:-}" ]; then
    exec 9>"$ROOT.lock"
    flock 9
fi

[ -x "$ASTERISK_PREFIX/sbin/asterisk" ] || { echo "debian_root: no Asterisk build at $ASTERISK_PREFIX" >&2; exit 1; }
mapfile -t LIBRARIES < <(asterisk_libraries)
marker=".hotline-eval-root-$( (cat "$0"; printf '%s\n' "${LIBRARIES[@]}") | sha256sum | cut -c1-16)"
if [ -f "$ROOT/$marker" ]; then
    echo "debian_root: $ROOT is ready"
    exit 0
fi

command -v debootstrap >/dev/null && command -v systemd-nspawn >/dev/null || {
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap systemd-container >/dev/null
}

building="$ROOT.building"
rm -rf "$building"
echo "debian_root: debootstrap Debian 12 into $ROOT (a few minutes, once)"
include=$(IFS=,; echo "${PACKAGES[*]},${LIBRARIES[*]}")
debootstrap --variant=minbase --include="$include" bookworm "$building" "$MIRROR" >"$building.log" 2>&1 || {
    tail -n 30 "$building.log" >&2
    exit 1
}
# pg_createcluster ran in the chroot, where this host's own PostgreSQL holds 5432, so it chose the next free
# port: a fresh host's cluster is on 5432.
sed -i 's/^port = .*/port = 5432/' "$building"/etc/postgresql/*/main/postgresql.conf
# Package lists, so that the README's `apt-get install` finds what is installed without a network.
chroot "$building" apt-get update -qq
chroot "$building" apt-get clean
# A fresh machine: its own machine id at first boot, a name, and the container's console as its only terminal.
: >"$building/etc/machine-id"
echo hotline-eval-test >"$building/etc/hostname"
# What Debian's installer writes (debootstrap does not): without it "localhost" does not resolve, and PostgreSQL's
# default listen_addresses = 'localhost' listens on nothing but its socket.
printf '127.0.0.1\tlocalhost\n127.0.1.1\thotline-eval-test\n::1\tlocalhost ip6-localhost ip6-loopback\n' \
    >"$building/etc/hosts"
touch "$building/$marker"
rm -rf "$ROOT.old" "$building.log"
[ -d "$ROOT" ] && mv "$ROOT" "$ROOT.old"
mv "$building" "$ROOT"
rm -rf "$ROOT.old"
echo "debian_root: $ROOT is ready"
