#!/bin/bash
# Variant: the same write through /proc/PID/mem with dd, no special syscall. (T1055.009)
. "$(dirname "$0")/../lib.sh"
need python3 dd
support python3 "$(dirname "$0")/../helpers/victim.py" "$WORK/victim"
wait_file "$WORK/victim"
read -r pid address < "$WORK/victim"
printf 'injected\0' | dd of="/proc/$pid/mem" bs=1 seek="$address" conv=notrunc status=none
wait "${SUPPORT_PIDS[0]}" || true
