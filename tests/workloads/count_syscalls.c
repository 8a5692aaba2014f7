/* Exact-count workload: waits for one byte on stdin (so tracing is attached first), then makes
 * N getppid() and M sched_yield() calls through syscall(2) (no libc caching), then exits.
 * Usage: count_syscalls N M */
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc != 3)
        return 2;
    long n = atol(argv[1]), m = atol(argv[2]);
    char byte;
    if (read(0, &byte, 1) != 1)
        return 3;
    for (long i = 0; i < n; i++)
        syscall(SYS_getppid);
    for (long i = 0; i < m; i++)
        syscall(SYS_sched_yield);
    return 0;
}
