#!/bin/bash
# bench/commit.sh: what a commit costs, next to what the same bytes cost
# written and fsync'ed natively.  Part of `make bench`.
#
# usage: commit.sh BUILDDIR
#
# On a fresh SOURCE mounted by BUILDDIR/txfsd, and in a native directory on
# the same file system, it measures side by side:
#
#   rewrite N files  a transaction rewrites N existing 4 KiB files (4 KiB
#                    each, so each is copied up first) and is committed;
#                    natively, the same N files are rewritten, each is
#                    fsync'ed, then their directory is;
#   create N files   the same with N new 4 KiB files;
#   1 GiB file       a transaction changes one byte of a file of
#                    BENCH_COMMIT_MIB MiB (default 1024); its first write
#                    copies the file into a shadow (a reflink where the file
#                    system has one, else copy_file_range), and the commit
#                    fsyncs the shadow, writes the journal record, flips the
#                    view and renames the shadow into SOURCE -- no second
#                    copy of the bytes.  Natively: dd of the file's size with
#                    conv=fsync (the floor for making those bytes durable).
#
# for N in BENCH_COMMIT_FILES (default "1 100 10000").  The columns:
#
#   txfs commit ms   wall time of `txctl commit` (txctl's start included);
#   native fsync ms  write + fsync of each file + fsync of the directory,
#                    timed inside one process;
#   tx writes ms     the member's writes before the commit, copy-ups
#                    included (for the 1 GiB file: its one-byte write).
#
# The native and transactional runs alternate; each run starts with sync
# (the 1 GiB runs also drop the page cache, as root), so no run pays for
# another's dirty data; the shadows' data is still dirty when the commit
# starts, as it would be in use.  Times are wall-clock milliseconds,
# the best of BENCH_REPS runs (default 3), except that rows of more than
# 1,000 files run BENCH_COMMIT_LARGE_REPS times at most (default 1: one such
# run is already an aggregate of thousands of fsyncs, and the default run
# stays within a few minutes).  The small-file writer is an inline perl
# script (Fcntl, IO::Handle, Time::HiRes).
set -eu

BUILDDIR=${1:?usage: commit.sh BUILDDIR}
TXFSD=$BUILDDIR/txfsd
TXCTL=$BUILDDIR/txctl/txctl
MIB=${BENCH_COMMIT_MIB:-1024}
COUNTS=${BENCH_COMMIT_FILES:-1 100 10000}
REPS=${BENCH_REPS:-3}
LARGE_REPS=${BENCH_COMMIT_LARGE_REPS:-1}
T=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/txfs-commit.XXXXXX")
SRC=$T/src MNT=$T/mnt SOCK=$T/sock NAT=$T/native
mkdir -p "$SRC" "$MNT" "$NAT"

cleanup() {
	fusermount3 -u "$MNT" 2>/dev/null || fusermount3 -uz "$MNT" 2>/dev/null || true
	[ -n "${DPID:-}" ] && wait "$DPID" 2>/dev/null || true
	rm -rf "$T"
}
trap cleanup EXIT

die() {
	echo "commit.sh: $*" >&2
	exit 1
}

# Microseconds since the epoch.
us() { date +%s%6N; }
drop() { sync; [ "$(id -u)" = 0 ] && echo 3 >/proc/sys/vm/drop_caches || true; }
best() { sort -n | head -1; }

# writer MODE DIR N TAG SYNC: writes 4 KiB of TAG into DIR/f1..fN, each
# opened O_WRONLY (MODE rewrite) or O_CREAT|O_EXCL (MODE create); with SYNC
# 1 fsyncs each file and then DIR.  Prints the microseconds it took.
WRITER='
use strict;
use warnings;
use Fcntl qw(O_WRONLY O_CREAT O_EXCL O_RDONLY O_DIRECTORY);
use IO::Handle;
use Time::HiRes qw(clock_gettime CLOCK_MONOTONIC);
my ($mode, $dir, $n, $tag, $sync) = @ARGV;
my $buf = substr($tag x 4096, 0, 4096);
my $flags = $mode eq "create" ? O_WRONLY | O_CREAT | O_EXCL : O_WRONLY;
my $t0 = clock_gettime(CLOCK_MONOTONIC);
for my $i (1 .. $n) {
	my $p = "$dir/f$i";
	sysopen(my $fh, $p, $flags, 0644) or die "open $p: $!\n";
	my $w = syswrite($fh, $buf);
	die "write $p: " . ($! || "short write") . "\n"
	    unless defined $w && $w == 4096;
	if ($sync) { $fh->sync or die "fsync $p: $!\n"; }
	close($fh) or die "close $p: $!\n";
}
if ($sync) {
	sysopen(my $dh, $dir, O_RDONLY | O_DIRECTORY) or die "open $dir: $!\n";
	$dh->sync or die "fsync $dir: $!\n";
	close($dh);
}
printf "%d\n", (clock_gettime(CLOCK_MONOTONIC) - $t0) * 1e6;
'
writer() { perl -e "$WRITER" "$@"; }

"$TXFSD" -f --socket "$SOCK" "$SRC" "$MNT" 2>"$T/txfsd.log" &
DPID=$!
for _ in $(seq 100); do
	grep -q " $MNT fuse" /proc/mounts && [ -S "$SOCK" ] && break
	sleep 0.1
done
grep -q " $MNT fuse" /proc/mounts || die "txfsd did not mount $MNT"
ctl() { "$TXCTL" --socket "$SOCK" "$@"; }

# member MODE DIR N TAG: in a new transaction, a member writes the files
# (writer without fsync); prints "TXID MICROSECONDS".
member() {
	bash -c '
		id=$("$0" --socket "$1" begin --pid $$ --label bench) || exit 1
		t=$(perl -e "$2" "$3" "$4" "$5" "$6" 0) || exit 1
		echo "$id $t"' "$TXCTL" "$SOCK" "$WRITER" "$@"
}

# commit_us TXID: commits; prints the microseconds txctl took.
commit_us() {
	local t0
	t0=$(us)
	ctl commit "$1" >/dev/null || die "commit of transaction $1 failed"
	echo $(($(us) - t0))
}

# The base files: N 4 KiB files per count, in SOURCE and natively, and an
# empty directory per count and repetition for the new files (so that no
# run pays for removing the last one's).
for n in $COUNTS; do
	for top in "$SRC" "$NAT"; do
		mkdir -p "$top/rw$n"
		writer create "$top/rw$n" "$n" base 0 >/dev/null
		for rep in $(seq "$REPS"); do
			mkdir -p "$top/new$n.$rep"
		done
	done
done

# Results, by row key: one value per repetition, blank-separated.
declare -A r_commit r_native r_writes
for rep in $(seq "$REPS"); do
	for n in $COUNTS; do
		if [ "$n" -gt 1000 ] && [ "$rep" -gt "$LARGE_REPS" ]; then
			continue
		fi
		for mode in rewrite create; do
			key=$mode.$n
			d=rw$n
			[ "$mode" = rewrite ] || d=new$n.$rep
			sync
			t=$(writer "$mode" "$NAT/$d" "$n" "n$rep" 1)
			r_native[$key]+=" $t"
			sync
			tag=t$rep
			out=$(member "$mode" "$MNT/$d" "$n" "$tag") ||
				die "the member's $mode of $n files failed"
			r_writes[$key]+=" ${out#* }"
			r_commit[$key]+=" $(commit_us "${out% *}")"
			# The commit published the member's writes.
			[ "$(head -c ${#tag} "$SRC/$d/f$n")" = "$tag" ] ||
				die "$SRC/$d/f$n lacks the committed data"
		done
	done

	drop
	t0=$(us)
	dd if=/dev/zero of="$NAT/big" bs=1M count="$MIB" conv=fsync status=none
	r_native[big]+=" $(($(us) - t0))"
	rm -f "$NAT/big"

	# The file stays from one repetition to the next (the commit leaves
	# its shadow in its place).
	[ -f "$SRC/big" ] ||
		dd if=/dev/zero of="$SRC/big" bs=1M count="$MIB" conv=fsync \
			status=none
	drop
	# A member shell: begin binds it, the write copies up, commit publishes.
	out=$(bash -c '
		id=$("$0" --socket "$1" begin --pid $$ --label bench) || exit 1
		t0=$(date +%s%6N)
		printf x | dd of="$2/big" bs=1 count=1 seek=4096 conv=notrunc \
			status=none
		echo "$id $(($(date +%s%6N) - t0))"
	' "$TXCTL" "$SOCK" "$MNT") || die "the member's write to big failed"
	r_writes[big]+=" ${out#* }"
	r_commit[big]+=" $(commit_us "${out% *}")"
	[ "$(dd if="$SRC/big" bs=1 skip=4096 count=1 status=none)" = x ] ||
		die "$SRC/big does not hold the committed byte"
done

# runs KEY: how many values the row has.
runs() {
	# shellcheck disable=SC2086 # one value per word
	set -- ${r_commit[$1]}
	echo $#
}

# ms KEY ARRAY: the best of the row's values, in milliseconds.
ms() {
	local -n arr=$2
	# shellcheck disable=SC2086 # one value per word
	printf '%s\n' ${arr[$1]} | best | awk '{ printf "%.1f", $1 / 1000 }'
}

fstype=$(df --output=fstype "$T" | tail -n 1)
printf '\ncommit latency against native write + fsync (%s; best of runs)\n' \
	"$fstype"
printf '  %-24s %6s %12s %15s %16s %8s %13s %5s\n' what files bytes \
	"txfs commit ms" "native fsync ms" ratio "tx writes ms" runs
row() {
	local c nat
	c=$(ms "$1" r_commit)
	nat=$(ms "$1" r_native)
	printf '  %-24s %6s %12s %15s %16s %8s %13s %5s\n' "$2" "$3" "$4" \
		"$c" "$nat" "$(awk -v a="$c" -v b="$nat" \
		'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }')" \
		"$(ms "$1" r_writes)" "$(runs "$1")"
}
for mode in rewrite create; do
	for n in $COUNTS; do
		row "$mode.$n" "$mode 4 KiB files" "$n" $((n * 4096))
	done
done
row big "1 file of $MIB MiB" 1 $((MIB * 1024 * 1024))
echo "  (native: each file written, fsync'ed, then the directory fsync'ed;"
echo "   tx writes: the member's writes before the commit, copy-up included;"
echo "   the $MIB MiB file: one byte written in the transaction)"
