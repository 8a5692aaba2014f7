#!/bin/bash
# A TCP connect scan of 1,000 ports on 127.0.0.1 (T1046).
. "$(dirname "$0")/../lib.sh"
need python3
python3 - <<'PY'
import socket
open_ports = []
for port in range(1, 1001):
    with socket.socket() as s:
        s.settimeout(0.2)
        if s.connect_ex(("127.0.0.1", port)) == 0:
            open_ports.append(port)
print("open:", open_ports)
PY
