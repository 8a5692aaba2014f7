#!/bin/bash
# Extract an archive of 3,000 files with tar x, then extract it again over the tree (tar replaces
# each file: unlink and write by the thousand).
. "$(dirname "$0")/../lib.sh"
need tar
mkdir -p src
for d in $(seq 30); do
    mkdir "src/d$d"
    for i in $(seq 100); do echo "row $d $i" > "src/d$d/r$i.csv"; done
done
tar cf many.tar src
mkdir out
tar xf many.tar -C out
tar xf many.tar -C out
find out -type f | wc -l
