#!/bin/bash
# Variant: Perl instead of Python, and the SSH private key as well as the AWS keys.
. "$(dirname "$0")/../lib.sh"
need perl
perl -e '
for my $f ("$ENV{HOME}/.ssh/id_ed25519", "$ENV{HOME}/.aws/credentials") {
    if (open(my $fh, "<", $f)) { local $/; my $d = <$fh>; print "read ", length($d), " bytes of $f\n"; }
    else { print "refused: $f: $!\n"; }
}'
