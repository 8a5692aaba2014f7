/* The same program with and without one extra syscall, for the anomaly model's profile test.
 * anomaly_probe N        : N rounds of getppid(), reading /proc/self/stat and a 20 ms sleep
 * anomaly_probe N ptrace : the same, plus one ptrace(PTRACE_PEEKUSER) on itself halfway, which
 *                          fails with ESRCH (a process that is not traced cannot be peeked) and
 *                          changes nothing. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 10;
    int with_ptrace = argc > 2 && strcmp(argv[2], "ptrace") == 0;
    struct timespec pause = {0, 20 * 1000 * 1000};
    char buf[512];
    pid_t self = getpid();  /* in both modes: only the ptrace call differs */
    for (int i = 0; i < rounds && i < 1000; i++) {
        syscall(SYS_getppid);
        int fd = open("/proc/self/stat", O_RDONLY);
        if (fd >= 0) {
            if (read(fd, buf, sizeof(buf)) < 0)
                return 3;
            close(fd);
        }
        if (with_ptrace && i == rounds / 2)
            syscall(SYS_ptrace, PTRACE_PEEKUSER, self, 0, 0);
        nanosleep(&pause, NULL);
    }
    return 0;
}
