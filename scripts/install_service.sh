#!/usr/bin/env bash
# make install-service: installs packaging/fluxtui.service for the given fluxtui executable, and
# a root-only configuration if there is none. Starts nothing: it prints how to.
set -euo pipefail
fluxtui=$1; unit_dir=$2; config_dir=$3
repo=$(cd "$(dirname "$0")/.." && pwd)

if [ "$(id -u)" -ne 0 ]; then
    echo "install-service: needs root (writes $unit_dir and $config_dir)" >&2
    exit 1
fi
if [ ! -x "$fluxtui" ]; then
    echo "install-service: $fluxtui is not an executable (run make setup)" >&2
    exit 1
fi
install -d -m 0755 "$unit_dir"
install -d -m 0700 "$config_dir"
sed -e "s|@FLUXTUI@|$fluxtui|g" -e "s|/etc/fluxtui/config.yml|$config_dir/config.yml|g" \
    "$repo/packaging/fluxtui.service" > "$unit_dir/fluxtui.service.tmp"
chmod 0644 "$unit_dir/fluxtui.service.tmp"
mv "$unit_dir/fluxtui.service.tmp" "$unit_dir/fluxtui.service"
echo "install-service: wrote $unit_dir/fluxtui.service (ExecStart $fluxtui)"
if [ ! -e "$config_dir/config.yml" ]; then
    install -m 0600 "$repo/config.yml" "$config_dir/config.yml"
    echo "install-service: wrote $config_dir/config.yml (root only, 0600); edit it to taste"
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    echo "install-service: start it with: systemctl enable --now fluxtui"
else
    echo "install-service: systemd is not running here; the unit takes effect on a systemd boot"
fi
