#!/bin/bash
# An administrator looks around: processes, sockets, addresses, disks.
. "$(dirname "$0")/../lib.sh"
need ps ss ip df
ps aux | wc -l
ss -tanp | wc -l
ip -brief addr | wc -l
df -h / | tail -n 1
