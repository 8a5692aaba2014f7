#!/bin/bash
# Generate a new SSH key pair (in the scenario's own directory) and show its fingerprint.
. "$(dirname "$0")/../lib.sh"
need ssh-keygen
ssh-keygen -q -t ed25519 -N '' -C deploy -f "$WORK/deploy_key"
ssh-keygen -l -f "$WORK/deploy_key.pub"
