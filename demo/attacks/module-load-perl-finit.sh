#!/bin/bash
# Variant: finit_module on a file named like a driver, with parameters, from Perl. The file is
# text, not a module: the kernel rejects it.
. "$(dirname "$0")/../lib.sh"
need perl
[ "$(uname -m)" = x86_64 ] || { echo "scenario: x86_64 syscall numbers" >&2; exit 77; }
printf 'fluxtui evaluation: this is not a kernel module\n' > "$WORK/nvidia-uvm.ko"
perl -e '
open(my $fh, "<", $ARGV[0]) or die "$ARGV[0]: $!\n";
my $params = "uvm_debug=1";
my $rc = syscall(313, fileno($fh), $params, 0);   # finit_module
print "finit_module: ", ($rc == 0 ? "loaded?!" : "$!"), "\n";
' "$WORK/nvidia-uvm.ko"
