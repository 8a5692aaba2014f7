/* A 64-bit program making 32-bit syscalls through int 0x80: argv[1] times getpid (32-bit 20,
 * which is writev in the 64-bit table), argv[2] times the 64-bit getppid, then one 32-bit
 * ptrace(PTRACE_PEEKDATA) of a pid that cannot exist (fails with ESRCH, touches nothing).
 * Exits 0 when int 0x80 worked, 3 when this kernel has no 32-bit syscall interface. */
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

static long int80(long nr, long a, long b, long c)
{
    long ret;
    __asm__ volatile("int $0x80" : "=a"(ret) : "a"(nr), "b"(a), "c"(b), "d"(c) : "memory");
    return ret;
}

int main(int argc, char **argv)
{
    if (argc != 3)
        return 2;
    long n = atol(argv[1]), m = atol(argv[2]);
    for (long i = 0; i < n; i++)
        if (int80(20, 0, 0, 0) != getpid())
            return 3;
    for (long i = 0; i < m; i++)
        syscall(SYS_getppid);
    return int80(26, 2, 0x3fffffff, 0) == -3 ? 0 : 4;    /* ptrace: -ESRCH */
}
