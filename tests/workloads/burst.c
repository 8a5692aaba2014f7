/* Overload on purpose, to show that what cannot be recorded is counted: forks CHILDREN children
 * that exit at once (one count-map entry each), then makes UNSHARES unshare(0) calls (one
 * ring-buffer event each, and unshare(0) changes nothing). Usage: burst CHILDREN UNSHARES */
#define _GNU_SOURCE
#include <sched.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc != 3)
        return 2;
    long children = atol(argv[1]), unshares = atol(argv[2]);
    for (long i = 0; i < children; i++) {
        pid_t pid = fork();
        if (pid == 0)
            _exit(0);
        if (pid < 0 || waitpid(pid, NULL, 0) != pid)
            return 3;
    }
    for (long i = 0; i < unshares; i++)
        if (unshare(0) != 0)
            return 4;
    return 0;
}
