#!/bin/bash
# Build a small package with dpkg-deb that ships a systemd unit, install it with dpkg, then
# purge it: a package manager changing a persistence place is its job.
. "$(dirname "$0")/../lib.sh"
need dpkg-deb dpkg
[ -d /usr/lib/systemd/system ] || { echo "scenario: needs /usr/lib/systemd/system" >&2; exit 77; }
pkg=fluxtui-eval-unit
root=pkgroot
mkdir -p "$root/DEBIAN" "$root/usr/lib/systemd/system"
cat > "$root/DEBIAN/control" <<CONTROL
Package: $pkg
Version: 1.0
Architecture: all
Maintainer: fluxtui evaluation <root@localhost>
Description: a unit shipped to exercise fluxtui's persistence watch
CONTROL
cat > "$root/usr/lib/systemd/system/$pkg.service" <<UNIT
[Unit]
Description=fluxtui evaluation unit (never enabled)
[Service]
ExecStart=/bin/true
UNIT
dpkg-deb --root-owner-group --build "$root" "$pkg.deb" >/dev/null
temp_package "$pkg"
dpkg -i "$pkg.deb" >/dev/null
dpkg -s "$pkg" | grep -c '^Status: install ok installed'
dpkg --purge "$pkg" >/dev/null
