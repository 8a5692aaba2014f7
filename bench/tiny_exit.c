/* The cheapest program to exec (bench_lossless.py): no libc, one exit_group. */
void _start(void)
{
    __asm__ volatile("mov $231, %eax\n\txor %edi, %edi\n\tsyscall");
}
