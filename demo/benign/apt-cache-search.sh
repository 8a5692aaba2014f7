#!/bin/bash
# Look packages up in the local package index.
. "$(dirname "$0")/../lib.sh"
need apt-cache
apt-cache search --names-only '^openssl' | head -n 5
apt-cache policy bash | head -n 3
