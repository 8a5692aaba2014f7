#!/bin/bash
# Build a small C program from three files with gcc and run it.
. "$(dirname "$0")/../lib.sh"
need gcc
mkdir -p src build
cat > src/greet.h <<'C'
const char *greeting(void);
int answer(void);
C
cat > src/greet.c <<'C'
#include "greet.h"
const char *greeting(void) { return "hello"; }
C
cat > src/answer.c <<'C'
#include "greet.h"
int answer(void) { return 42; }
C
cat > src/main.c <<'C'
#include <stdio.h>
#include "greet.h"
int main(void) { printf("%s %d\n", greeting(), answer()); return 0; }
C
for f in greet answer main; do gcc -O2 -Wall -c "src/$f.c" -o "build/$f.o"; done
gcc -o build/app build/greet.o build/answer.o build/main.o
./build/app
