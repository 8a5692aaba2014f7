#!/bin/bash
# The shell writes /etc/ld.so.preload (T1574.006), harmlessly: an empty file (no library is
# preloaded), or, when one exists, its own bytes again. Restored byte for byte at exit, even when
# interrupted.
. "$(dirname "$0")/../lib.sh"
protect_file /etc/ld.so.preload
if [ -e /etc/ld.so.preload ]; then
    cat /etc/ld.so.preload > "$WORK/preload"
    cat "$WORK/preload" > /etc/ld.so.preload
else
    : > /etc/ld.so.preload
fi
echo "wrote /etc/ld.so.preload"
