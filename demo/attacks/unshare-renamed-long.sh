#!/bin/bash
# Variant: a renamed copy of unshare, long options, network and PID namespaces as well.
. "$(dirname "$0")/../lib.sh"
need unshare
mkdir -p "$WORK/.x"
cp "$(command -v unshare)" "$WORK/.x/dbus-daemon-helper"
"$WORK/.x/dbus-daemon-helper" --user --map-root-user --mount --net --pid --fork -- /bin/true
