#!/bin/bash
# Variant: Perl makes the memory file with the raw syscall, names it like a system daemon
# (a name with "/"), and executes it through /proc/self/fd instead of fexecve.
. "$(dirname "$0")/../lib.sh"
need perl
[ "$(uname -m)" = x86_64 ] || { echo "scenario: x86_64 syscall numbers" >&2; exit 77; }
perl -e '
my $name = "/usr/sbin/sshd";
my $fd = syscall(319, $name, 0);   # memfd_create
die "memfd_create: $!\n" if $fd < 0;
open(my $mem, ">&=", $fd) or die "fd: $!\n";
open(my $src, "<", "/bin/true") or die "/bin/true: $!\n";
binmode $src; binmode $mem; local $/; my $data = <$src>; close $src;
print {$mem} $data; $mem->flush;
exec { "/proc/self/fd/$fd" } "sshd", "-D" or die "exec: $!\n";
'
