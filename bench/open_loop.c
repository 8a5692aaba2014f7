/* open_loop: open and close one file N times, timing each open().
 *
 * The benchmark's reader: an exec'd binary that a guard rule allows (or, copied elsewhere,
 * one that no rule allows). Usage: open_loop PATH N [DURATION_S [close]]
 * Stops after N opens or when DURATION_S has passed. Writes one native uint32 per open (its
 * latency in nanoseconds, of open() alone, or of open() + close() with "close"; failed opens
 * included) to stdout, and "opens O failures F
 * elapsed_ns E" to stderr. Exit status 0, or 2 on bad usage.
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
        fprintf(stderr, "usage: %s PATH N [DURATION_S]\n", argv[0]);
        return 2;
    }
    long n = strtol(argv[2], NULL, 10);
    double duration = argc > 3 ? strtod(argv[3], NULL) : 60.0;
    int with_close = argc > 4 && argv[4][0] == 'c';
    if (n <= 0 || n > 10000000 || duration <= 0) {
        fprintf(stderr, "N or DURATION_S out of range\n");
        return 2;
    }
    uint32_t *lat = calloc((size_t)n, sizeof *lat);
    if (!lat) return 2;
    uint64_t start = now_ns();
    uint64_t end = start + (uint64_t)(duration * 1e9);
    long done = 0, failures = 0;
    while (done < n) {
        uint64_t t0 = now_ns();
        int fd = open(argv[1], O_RDONLY | O_CLOEXEC);
        uint64_t t1 = now_ns();
        if (fd < 0)
            failures++;
        else
            close(fd);
        if (with_close) t1 = now_ns();
        uint64_t d = t1 - t0;
        lat[done++] = d > UINT32_MAX ? UINT32_MAX : (uint32_t)d;
        if (t1 > end) break;
    }
    uint64_t elapsed = now_ns() - start;
    size_t off = 0, total = (size_t)done * sizeof *lat;
    while (off < total) {
        ssize_t w = write(1, (char *)lat + off, total - off);
        if (w <= 0) break;
        off += (size_t)w;
    }
    fprintf(stderr, "opens %ld failures %ld elapsed_ns %llu\n", done, failures,
            (unsigned long long)elapsed);
    free(lat);
    return 0;
}
