/* The benchmark's syscall loop: N getppid() calls through syscall(2), timed with the thread's
 * CPU time (CLOCK_THREAD_CPUTIME_ID: a BPF program runs in the thread and is charged to it,
 * while time spent waiting for a CPU on a loaded machine is not); prints nanoseconds per call.
 * Usage: getppid_loop N [alternate] [barrier]
 *   alternate  alternate getppid() and getpid() (every call starts a new syscall pair, the
 *              worst case for fluxtui's in-kernel counting)
 *   barrier    wait for one byte on stdin before looping (so the caller can watch first) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    long n = atol(argv[1]);
    int alternate = 0, barrier = 0;
    for (int i = 2; i < argc; i++) {
        alternate |= strcmp(argv[i], "alternate") == 0;
        barrier |= strcmp(argv[i], "barrier") == 0;
    }
    char byte;
    if (barrier && read(0, &byte, 1) != 1)
        return 3;
    struct timespec start, end;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &start);
    if (alternate) {
        for (long i = 0; i < n; i += 2) {
            syscall(SYS_getppid);
            syscall(SYS_getpid);
        }
    } else {
        for (long i = 0; i < n; i++)
            syscall(SYS_getppid);
    }
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &end);
    double ns = (end.tv_sec - start.tv_sec) * 1e9 + (end.tv_nsec - start.tv_nsec);
    printf("%.1f\n", ns / n);
    return 0;
}
