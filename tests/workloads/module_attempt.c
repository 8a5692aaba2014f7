/* Asks the kernel to load a module from an invalid fd: the call fails (EBADF), nothing is
 * loaded, but the attempt is what the module_load rule reports. */
#include <sys/syscall.h>
#include <unistd.h>

int main(void)
{
    return syscall(SYS_finit_module, -1, "", 0) == -1 ? 0 : 2;
}
