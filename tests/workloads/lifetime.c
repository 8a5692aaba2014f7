/* Whole-life workload: sleeps SLEEP_MS milliseconds (one nanosleep), makes N getppid() calls
 * through syscall(2) (no libc caching), and exits. Usage: lifetime SLEEP_MS N */
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc != 3)
        return 2;
    long ms = atol(argv[1]), n = atol(argv[2]);
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    syscall(SYS_nanosleep, &ts, NULL);
    for (long i = 0; i < n; i++)
        syscall(SYS_getppid);
    return 0;
}
