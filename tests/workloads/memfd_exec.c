/* Copies /bin/true into an anonymous memory file and executes it from there (fexecve). The
 * memfd's name is argv[1] when given (it may hold slashes). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

extern char **environ;

int main(int argc, char **argv)
{
    int src = open("/bin/true", O_RDONLY);
    int mem = memfd_create(argc > 1 ? argv[1] : "fluxtui-test", MFD_CLOEXEC);
    if (src < 0 || mem < 0)
        return 2;
    char buf[65536];
    ssize_t n;
    while ((n = read(src, buf, sizeof(buf))) > 0)
        if (write(mem, buf, n) != n)
            return 3;
    close(src);
    char *args[] = {"true-from-memory", NULL};
    fexecve(mem, args, environ);
    return 4;
}
