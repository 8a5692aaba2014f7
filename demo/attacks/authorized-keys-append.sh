#!/bin/bash
# The shell appends a public key to ~/.ssh/authorized_keys of the decoy home (T1098.004). The
# key is a made-up one: nobody holds its private half.
. "$(dirname "$0")/../lib.sh"
mkdir -p ~/.ssh
echo "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGZsdXh0dWktZXZhbHVhdGlvbi1ub3QtYS1yZWFsLWtleTE= backdoor@evil" >> ~/.ssh/authorized_keys
wc -l < ~/.ssh/authorized_keys
