/* open_loop: open and close one file N times, timing each open().
 *
 * Used by bench_guard.py as the "auto-allowed program": an exec'd binary that a rule allows.
 * Usage: open_loop PATH N [DURATION_S]
 * Writes N (or fewer, when DURATION_S runs out first) open() latencies in nanoseconds as
 * native uint32 to stdout, then exits 0; exits 1 on the first failed open (errno on stderr).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
    if (n <= 0 || n > 10000000) {
        fprintf(stderr, "N out of range\n");
        return 2;
    }
    uint32_t *lat = calloc((size_t)n, sizeof *lat);
    if (!lat) return 2;
    uint64_t end = now_ns() + (uint64_t)(duration * 1e9);
    long done = 0;
    for (; done < n; done++) {
        uint64_t t0 = now_ns();
        int fd = open(argv[1], O_RDONLY | O_CLOEXEC);
        uint64_t t1 = now_ns();
        if (fd < 0) {
            fprintf(stderr, "open %s: %s\n", argv[1], strerror(errno));
            free(lat);
            return 1;
        }
        close(fd);
        uint64_t d = t1 - t0;
        lat[done] = d > UINT32_MAX ? UINT32_MAX : (uint32_t)d;
        if (t1 > end) { done++; break; }
    }
    size_t off = 0, total = (size_t)done * sizeof *lat;
    while (off < total) {
        ssize_t w = write(1, (char *)lat + off, total - off);
        if (w <= 0) { free(lat); return 3; }
        off += (size_t)w;
    }
    free(lat);
    return 0;
}
