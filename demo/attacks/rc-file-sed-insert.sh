#!/bin/bash
# sed -i puts an alias at the top of ~/.bashrc of the decoy home (T1546.004): a new file renamed
# over the old one, by a verified program that is not expected to write it.
. "$(dirname "$0")/../lib.sh"
need sed
sed -i '1i alias sudo="$HOME/.cache/.sudo"' ~/.bashrc
head -1 ~/.bashrc
