/* Run as root: drops the real and effective uid to 65534 keeping 0 as saved uid, then takes
 * uid 0 back (the change from a non-root uid to root that the uid_root rule reports). */
#define _GNU_SOURCE
#include <unistd.h>

int main(void)
{
    if (setresuid(65534, 65534, 0) != 0)
        return 2;
    if (setresuid(0, 0, 0) != 0)
        return 3;
    return getuid() == 0 ? 0 : 4;
}
