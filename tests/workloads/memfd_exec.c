/* Copies /bin/true into an anonymous memory file and executes it from there (fexecve). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

extern char **environ;

int main(void)
{
    int src = open("/bin/true", O_RDONLY);
    int mem = memfd_create("fluxtui-test", MFD_CLOEXEC);
    if (src < 0 || mem < 0)
        return 2;
    char buf[65536];
    ssize_t n;
    while ((n = read(src, buf, sizeof(buf))) > 0)
        if (write(mem, buf, n) != n)
            return 3;
    close(src);
    char *argv[] = {"true-from-memory", NULL};
    fexecve(mem, argv, environ);
    return 4;
}
