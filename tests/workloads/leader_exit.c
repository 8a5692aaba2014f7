/* The main thread exits (pthread_exit) and leaves one worker: the process has one thread, and
 * its main thread (whose /proc/PID/schedstat the process collector watches) never runs again.
 * The worker waits for a line on stdin, then burns CPU for at most 20 s (bounded), then
 * waits for stdin to close. Prints "ready" once the main thread is gone. */
#include <pthread.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static void *worker(void *arg) {
    (void)arg;
    char c;
    sleep(1); /* the main thread has exited by then */
    puts("ready");
    fflush(stdout);
    if (read(0, &c, 1) != 1) return NULL;
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    volatile unsigned long spin = 0;
    do {
        for (int i = 0; i < 1000000; i++) spin++;
        clock_gettime(CLOCK_MONOTONIC, &now);
    } while (now.tv_sec - start.tv_sec < 20);
    while (read(0, &c, 1) == 1) {}
    return NULL;
}

int main(void) {
    pthread_t t;
    if (pthread_create(&t, NULL, worker, NULL) != 0) return 1;
    pthread_exit(NULL);
}
