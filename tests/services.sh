#!/usr/bin/env bash
# Installs and starts what the test suite needs, when it is absent: sox and
# espeak-ng (prompt building), a PostgreSQL server with a test database, a
# Redis server (RQ), Debian's Chromium (the web tool's browser tests, driven
# by Playwright at /usr/bin/chromium: Playwright's own browser download is not
# reachable from here), a real Asterisk 22 (the real-PBX tests: built once
# from its source, ../shared/asterisk or $ASTERISK_SOURCE, into /opt; the tests
# start and stop their own), and a fresh Debian 12 root for the install test
# (tests/debian_root.sh: debootstrapped once into /opt, booted by the test).
# Idempotent; safe to run before every test run. Needs root for apt-get.
set -euo pipefail

PG_DB=${TEST_POSTGRES_DB:-hotline_eval_test}
PG_HOST=127.0.0.1
PG_PORT=${TEST_POSTGRES_PORT:-5432}

apt_updated=
apt_install() {
    if [ -z "$apt_updated" ]; then apt-get update -qq; apt_updated=1; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

missing=()
command -v sox >/dev/null || missing+=(sox)
command -v espeak-ng >/dev/null || missing+=(espeak-ng)
command -v pg_ctlcluster >/dev/null || missing+=(postgresql)
command -v redis-server >/dev/null || missing+=(redis-server)
[ -x /usr/bin/chromium ] || missing+=(chromium)
# systemd-analyze verify checks the units in deploy/systemd (tests/test_systemd_units.py).
command -v systemd-analyze >/dev/null || missing+=(systemd)
# promtool checks the alert rules in deploy/prometheus (tests/test_metrics.py); Debian ships it with prometheus.
command -v promtool >/dev/null || missing+=(prometheus)
if [ ${#missing[@]} -gt 0 ]; then
    echo "services: installing ${missing[*]}"
    apt_install "${missing[@]}"
fi

if ! pg_isready -q -h "$PG_HOST" -p "$PG_PORT"; then
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    echo "services: starting PostgreSQL $version"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start
    for _ in $(seq 1 30); do pg_isready -q -h "$PG_HOST" -p "$PG_PORT" && break; sleep 1; done
fi

# A fresh Debian cluster only trusts the postgres OS user on the socket: give the
# role a password for TCP logins (a trust-auth cluster ignores it).
runuser -u postgres -- psql -q -c "ALTER ROLE postgres PASSWORD 'postgres'" >/dev/null
if ! runuser -u postgres -- psql -tAc "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'" | grep -q 1; then
    runuser -u postgres -- createdb "$PG_DB"
fi
echo "services: PostgreSQL ready, database $PG_DB"

REDIS_PORT=${TEST_REDIS_PORT:-6379}
if ! redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1; then
    echo "services: starting Redis on port $REDIS_PORT"
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
        --dir /var/lib/redis --logfile /var/log/redis/ci.log
    for _ in $(seq 1 30); do redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.2; done
fi
echo "services: Redis ready on port $REDIS_PORT"

ASTERISK_PREFIX=${ASTERISK_PREFIX:-/opt/asterisk-22.10.1}
if [ ! -f "$ASTERISK_PREFIX/.built-22.10.1" ]; then
    source_dir=${ASTERISK_SOURCE:-$(cd "$(dirname "$0")/../.." && pwd)/shared/asterisk}
    echo "services: building Asterisk 22.10.1 into $ASTERISK_PREFIX from $source_dir (about 5 minutes, once)"
    bash "$source_dir/build-asterisk.sh" "$ASTERISK_PREFIX"
fi
echo "services: Asterisk ready at $ASTERISK_PREFIX"

# The README's install, followed under a real systemd (tests/test_pbx_install.py), boots this root.
# Not fatal here: without it the tier fails (REQUIRE_PBX) or is skipped, and says why.
bash "$(dirname "$0")/debian_root.sh" "${HOTLINE_EVAL_DEBIAN_ROOT:-/opt/hotline-eval-debian-12}" "$ASTERISK_PREFIX" ||
    echo "services: no Debian root for the install test (tests/debian_root.sh failed)"
