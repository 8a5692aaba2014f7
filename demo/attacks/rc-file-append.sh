#!/bin/bash
# The shell adds a PATH hijack to ~/.bashrc of the decoy home (T1546.004).
. "$(dirname "$0")/../lib.sh"
echo 'export PATH="$HOME/.cache/.bin:$PATH"' >> ~/.bashrc
tail -1 ~/.bashrc
