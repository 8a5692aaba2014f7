#!/bin/bash
# gdb attaches to a process the script started and reads its registers (T1055.008).
. "$(dirname "$0")/../lib.sh"
need gdb sleep
support sleep 30
victim=$!
wait_file "/proc/$victim/exe"
sleep 0.2  # let the victim exec sleep
gdb -q -nx -batch -p "$victim" -ex 'info registers rip' 2>&1 | tail -n 1
