#!/bin/bash
# Look packages up in the local package index.
. "$(dirname "$0")/../lib.sh"
need apt-cache
apt-cache search --names-only '^openssl$'
apt-cache policy bash
