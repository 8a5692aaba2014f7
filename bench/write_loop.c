/* write_loop: N times, open a file (created, truncated), write 64 bytes and close it: the
 * write-close that a persistence place reports. Usage: write_loop DIR N
 * Files are DIR/f0 .. DIR/f{N%64}: a handful of names, rewritten. Prints the elapsed
 * nanoseconds of the whole loop on stdout. Exit status 0, 1 on a failed call, 2 on bad usage.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s DIR N\n", argv[0]);
        return 2;
    }
    long n = strtol(argv[2], NULL, 10);
    char path[4096], data[64];
    for (int i = 0; i < 64; i++) data[i] = 'a' + i % 26;
    uint64_t start = now_ns();
    for (long i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/f%ld", argv[1], i % 64);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0 || write(fd, data, sizeof data) != sizeof data || close(fd) != 0) {
            perror(path);
            return 1;
        }
    }
    printf("%llu\n", (unsigned long long)(now_ns() - start));
    return 0;
}
