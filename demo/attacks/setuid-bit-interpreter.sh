#!/bin/bash
# Variant: a set-user-ID-root copy of the Python interpreter (the GTFOBins pattern), run by the
# unprivileged user nobody, which then makes root its real uid.
. "$(dirname "$0")/../lib.sh"
need python3 setpriv
chmod 0711 "$WORK"
mkdir -m 0755 "$WORK/bin"
cp "$(readlink -f "$(command -v python3)")" "$WORK/bin/svc"
chmod 4755 "$WORK/bin/svc"
setpriv --reuid=65534 --regid=65534 --clear-groups -- \
    "$WORK/bin/svc" -S -c 'import os; os.setuid(0); print("uid", os.getuid())'
