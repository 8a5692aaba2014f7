#!/bin/bash
# Copy a tree of 3,000 small files with cp -r, then remove the copy.
. "$(dirname "$0")/../lib.sh"
mkdir -p tree
for d in $(seq 30); do
    mkdir "tree/d$d"
    for i in $(seq 100); do echo "line $d $i" > "tree/d$d/f$i.txt"; done
done
cp -r tree copy
find copy -type f | wc -l
rm -rf copy
