#!/bin/bash
# python3 -m http.server on loopback serves 500 requests, one curl process each.
. "$(dirname "$0")/../lib.sh"
need python3 curl
mkdir -p www
echo "status: ok" > www/health
support python3 -m http.server --bind 127.0.0.1 --directory "$WORK/www" "$PORT"
wait_port "$PORT"
ok=0
for _ in $(seq 500); do
    curl -fsS -o /dev/null "http://127.0.0.1:$PORT/health" && ok=$((ok + 1))
done
echo "served: $ok"
