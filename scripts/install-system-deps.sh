#!/usr/bin/env bash
# Installs the system packages the test suite talks to, when they are missing:
# PostgreSQL (initdb/pg_ctl), SIPp (sip-tester), baresip (a real softphone), espeak-ng, sox and
# Chromium (the browser tests drive Debian's build through Playwright; Playwright downloads none)
# tcpdump (what the benchmark's fixed-time caller heard), gcc and Python's headers (the C
# extensions of the media path), Kamailio (the SIP proxy in front of a cluster's nodes).
#
# Another apt or dpkg run (unattended-upgrades on a fresh machine, say) may hold the package
# manager's locks: we wait for them, up to APT_LOCK_TIMEOUT seconds (default 600), instead of
# failing. dpkg's lock is waited for by apt itself (DPkg::Lock::Timeout); the lists lock that
# `apt-get update` takes is not, so a run refused for a held lock is tried again until then.
set -euo pipefail
need=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || need+=(postgresql)
command -v sipp >/dev/null || need+=(sip-tester)
command -v baresip >/dev/null || need+=(baresip)
command -v espeak-ng >/dev/null || need+=(espeak-ng)
command -v sox >/dev/null || need+=(sox)
command -v chromium >/dev/null || need+=(chromium)
command -v tcpdump >/dev/null || need+=(tcpdump)  # benchmarks.sip_load --caller fixed-time
{ [ -x /usr/sbin/kamailio ] || command -v kamailio >/dev/null; } || need+=(kamailio)  # the cluster tests: Kamailio in front of two nodes (issue 23)
command -v gcc >/dev/null || need+=(gcc)  # the native RTP receiver and pacer (pip install builds them)
python_include="$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["include"])' 2>/dev/null || true)"
[ -f "$python_include/Python.h" ] || need+=(python3-dev)  # and Python's headers
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
echo "installing system packages: ${need[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
lock_timeout="${APT_LOCK_TIMEOUT:-600}"
retry_every="${APT_LOCK_RETRY_SECONDS:-5}"

# Runs apt-get with its arguments; while it fails because a lock is held, waits and tries again.
apt_get() {
  local deadline=$((SECONDS + lock_timeout)) output status
  while true; do
    status=0
    output="$($SUDO apt-get -o DPkg::Lock::Timeout="$lock_timeout" "$@" 2>&1)" || status=$?
    if [ "$status" -eq 0 ]; then return 0; fi
    if ! grep -qiE "could not get lock|unable to (acquire|lock)" <<<"$output" || [ "$SECONDS" -ge "$deadline" ]; then
      printf '%s\n' "$output" >&2
      return "$status"
    fi
    echo "apt-get $1: another package manager run holds its lock; waiting" >&2
    sleep "$retry_every"
  done
}

apt_get update -qq
apt_get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
