#!/bin/bash
# unshare -r -m: a new user namespace mapped to root and a new mount namespace, where a tmpfs is
# mounted (private to that namespace, gone with it). (T1611)
. "$(dirname "$0")/../lib.sh"
need unshare
mkdir -p "$WORK/mnt"
unshare -r -m sh -c 'mount -t tmpfs none "$1" && id -u' sh "$WORK/mnt"
