#!/bin/bash
# A commit is atomic to readers: over 200 commits that each set files A and
# B to the same new counter value, outside readers reading A then B, or B
# then A, never find the second file older than the first.
TIMEOUT=120
. "$(dirname "$0")/lib.sh"
require_txfsd
require_txctl

COMMITS=200

echo 0 >"$SRC/A"
echo 0 >"$SRC/B"
txfs_mount

# reader FIRST SECOND: reads FIRST then SECOND until the writer is done,
# and records each violation: a value that is not a number, a file going
# back in time, or SECOND older than FIRST (read before it).  Prints the
# number of read pairs.
reader() {
	local first=$1 second=$2 a b last_a=0 last_b=0 n=0
	: >"$T/violations.$first$second"
	while [ ! -e "$T/writer.done" ]; do
		a=
		b=
		read -r a <"$MNT/$first" || true
		read -r b <"$MNT/$second" || true
		n=$((n + 1))
		if ! [[ $a =~ ^[0-9]+$ && $b =~ ^[0-9]+$ ]]; then
			echo "read $n: $first='$a' $second='$b'"
		elif ((b < a)); then
			echo "read $n: $first=$a then $second=$b"
		elif ((a < last_a || b < last_b)); then
			echo "read $n: went back from $last_a/$last_b to $a/$b"
		else
			last_a=$a
			last_b=$b
		fi
	done >>"$T/violations.$first$second"
	echo "$n"
}

reader A B >"$T/reads.AB" &
ab=$!
reader B A >"$T/reads.BA" &
ba=$!
at_cleanup ': >"$T/writer.done"; wait $ab $ba'

for ((i = 1; i <= COMMITS; i++)); do
	txctl run -- sh -c 'echo "$1" >"$MNT/A" && echo "$1" >"$MNT/B"' \
		sh "$i" || fail "commit $i failed"
done
: >"$T/writer.done"
wait "$ab" || fail "reader A-then-B failed"
wait "$ba" || fail "reader B-then-A failed"

echo "# $(cat "$T/reads.AB") A-then-B and $(cat "$T/reads.BA") B-then-A" \
	"read pairs during $COMMITS commits"
for v in "$T/violations.AB" "$T/violations.BA"; do
	if [ -s "$v" ]; then
		head -n 20 "$v" >&2
		fail "$(wc -l <"$v") atomicity violations ($(basename "$v"))"
	fi
done
(($(cat "$T/reads.AB") > 0 && $(cat "$T/reads.BA") > 0)) ||
	fail "a reader did no reads"

for f in A B; do
	assert_content "$MNT/$f" "$COMMITS"
	assert_content "$SRC/$f" "$COMMITS"
done
assert_no_tx_state

txfs_umount
