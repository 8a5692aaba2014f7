#!/bin/bash
# Make a repository with three commits and clone it locally.
. "$(dirname "$0")/../lib.sh"
need git
export GIT_CONFIG_NOSYSTEM=1 GIT_AUTHOR_NAME=dev GIT_AUTHOR_EMAIL=dev@example.org \
    GIT_COMMITTER_NAME=dev GIT_COMMITTER_EMAIL=dev@example.org
git init -q src
for i in 1 2 3; do echo "change $i" >> src/notes.txt; git -C src add notes.txt; git -C src commit -qm "change $i"; done
git clone -q "file://$WORK/src" dst
git -C dst log --oneline | wc -l
