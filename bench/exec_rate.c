/* Exec load for bench_lossless.py: starts `rate` programs a second for `seconds` seconds
 * (posix_spawn, vfork-based; up to 256 children in flight, reaped as they end), and calls
 * getppid() once per start: an independent truth for the per-syscall count of this process.
 * Prints "<started> <getppid calls> <seconds taken>". Bounded in count and time. */
#define _GNU_SOURCE
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s RATE SECONDS PROGRAM\n", argv[0]);
        return 2;
    }
    signal(SIGCHLD, SIG_DFL);  /* an ignored SIGCHLD (inherited) would reap them unseen */
    long rate = atol(argv[1]);
    double seconds = atof(argv[2]);
    char *child_argv[] = {argv[3], NULL};
    long total = (long)(rate * seconds), started = 0, calls = 0, running = 0;
    double t0 = now(), limit = t0 + seconds * 3;  /* never more than 3x the asked time */
    while (started < total && now() < limit) {
        double ahead = t0 + (double)started / rate - now();
        if (ahead > 0) {
            struct timespec ts = {0, (long)(ahead * 1e9)};
            nanosleep(&ts, NULL);
        }
        if (running >= 256 && waitpid(-1, NULL, 0) > 0)
            running--;
        pid_t pid;
        if (posix_spawn(&pid, argv[3], NULL, NULL, child_argv, environ) == 0) {
            started++;
            running++;
        }
        syscall(SYS_getppid);
        calls++;
        while (running && waitpid(-1, NULL, WNOHANG) > 0)
            running--;
    }
    double took = now() - t0;
    struct timespec pause = {0, 1000000};
    while (running && now() < limit + 30) {      /* bounded: a stuck child is reported */
        if (waitpid(-1, NULL, WNOHANG) > 0)
            running--;
        else
            nanosleep(&pause, NULL);
    }
    if (running)
        fprintf(stderr, "%ld children still running\n", running);
    printf("%ld %ld %.3f\n", started, calls, took);
    return 0;
}
