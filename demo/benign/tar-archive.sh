#!/bin/bash
# Archive a tree of 200 small files with tar czf and list the archive.
. "$(dirname "$0")/../lib.sh"
need tar gzip
mkdir -p tree
for i in $(seq 200); do echo "line $i" > "tree/file$i.txt"; done
tar czf tree.tar.gz tree
tar tzf tree.tar.gz | wc -l
