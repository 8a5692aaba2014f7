/* Starts `sleep 30` as a child, PTRACE_ATTACHes to it, waits for the stop, detaches, prints
 * "attached <pid>", then stays alive until stdin reaches EOF, and kills the child. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

static int is_sleep(pid_t pid)
{
    char path[64], comm[32] = "";
    snprintf(path, sizeof(path), "/proc/%d/comm", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    int ok = fgets(comm, sizeof(comm), f) && strncmp(comm, "sleep", 5) == 0;
    fclose(f);
    return ok;
}

int main(void)
{
    pid_t child = fork();
    if (child < 0)
        return 2;
    if (child == 0) {
        execl("/bin/sleep", "sleep", "30", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 500 && !is_sleep(child); i++)   /* at most 5 s for the exec */
        usleep(10000);
    int status = 0, rc = 0;
    if (ptrace(PTRACE_ATTACH, child, NULL, NULL) != 0 || waitpid(child, &status, 0) != child)
        rc = 4;
    else
        ptrace(PTRACE_DETACH, child, NULL, NULL);
    printf("attached %d\n", child);
    fflush(stdout);
    char buf[64];
    while (read(0, buf, sizeof(buf)) > 0)
        ;
    kill(child, SIGKILL);
    waitpid(child, &status, 0);
    return rc;
}
