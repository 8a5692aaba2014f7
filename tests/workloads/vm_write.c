/* Writes into a child's memory with process_vm_writev (what the process_vm_write rule reports),
 * then calls fsopen("tmpfs") of the new mount API (only a filesystem context: nothing is
 * mounted). Exits 0 when the child's memory was written. */
#define _GNU_SOURCE
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SYS_fsopen
#define SYS_fsopen 430
#endif

static char target[16] = "before";

int main(void)
{
    int to_child[2], from_child[2];
    if (pipe(to_child) || pipe(from_child))
        return 2;
    pid_t child = fork();
    if (child < 0)
        return 2;
    if (child == 0) {           /* waits, then reports what its buffer holds */
        char go;
        if (read(to_child[0], &go, 1) != 1)
            _exit(3);
        _exit(write(from_child[1], target, sizeof(target)) == sizeof(target) ? 0 : 3);
    }
    char text[16] = "injected";
    struct iovec local = {text, sizeof(text)}, remote = {target, sizeof(target)};
    int rc = process_vm_writev(child, &local, 1, &remote, 1, 0) == sizeof(text) ? 0 : 4;
    char seen[16] = "";
    if (write(to_child[1], "x", 1) != 1 || read(from_child[0], seen, sizeof(seen)) != sizeof(seen)
        || strcmp(seen, "injected") != 0)
        rc = rc ? rc : 5;
    int status = 0;
    if (waitpid(child, &status, 0) != child)
        kill(child, SIGKILL);
    long fd = syscall(SYS_fsopen, "tmpfs", 0);
    if (fd >= 0)
        close((int)fd);
    return rc;
}
