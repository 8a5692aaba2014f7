#!/bin/bash
# Perl renames 300 files of the work directory to random hexadecimal names (T1486): no
# telltale suffix.
. "$(dirname "$0")/../lib.sh"
need perl
mkdir -p data/a data/b
for i in $(seq 150); do echo "a $i" > "data/a/a$i.csv"; echo "b $i" > "data/b/b$i.odt"; done
perl -e '
for my $f (glob("data/*/*")) {
    my ($dir) = $f =~ m{^(.*)/};
    my $new = sprintf("%s/%08x%08x", $dir, int(rand(2**32)), int(rand(2**32)));
    rename($f, $new) or die "rename $f: $!";
}
print "renamed\n";'
