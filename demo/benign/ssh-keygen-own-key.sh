#!/bin/bash
# The owner prints the public half of their own SSH key (ssh-keygen reads the private key).
. "$(dirname "$0")/../lib.sh"
need ssh-keygen
ssh-keygen -y -f "$HOME/.ssh/id_ed25519" | cut -c1-30
