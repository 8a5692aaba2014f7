#!/usr/bin/env bash
# Installs the named Debian packages that are missing, without starting any service they ship
# (a test-only Prometheus must not start listening on the machine). Exits non-zero when apt fails.
set -euo pipefail
missing=()
for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# policy-rc.d answering 101 tells invoke-rc.d and deb-systemd-invoke not to start services.
policy=/usr/sbin/policy-rc.d
made_policy=""
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# fluxtui set-up: do not start services while installing\nexit 101\n' > "$policy"
    chmod 755 "$policy"
    made_policy=1
fi
cleanup() { if [ -n "$made_policy" ]; then rm -f "$policy"; fi; }
trap cleanup EXIT
apt_opts=(-y -qq --no-install-recommends -o DPkg::Lock::Timeout=600)
apt-get update -qq -o DPkg::Lock::Timeout=600
apt-get install "${apt_opts[@]}" "${missing[@]}" >/dev/null
