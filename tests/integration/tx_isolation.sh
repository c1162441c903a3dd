#!/bin/bash
# A member's uncommitted rewrites of a file (1,000 of them, each changing
# content and size) are never visible to a non-member reading and stat'ing
# it in a tight loop, the member always reads its own last write, and after
# an abort everyone sees the untouched base.
TIMEOUT=90
. "$(dirname "$0")/lib.sh"
require_txfsd
require_txctl

REWRITES=1000
BASE_MTIME=1000000000

# The base: 1000 bytes, an mtime far in the past.  Every member version
# is 7 or 4103 bytes, so neither its content nor its size can pass for
# the base.
head -c 1000 /dev/zero | tr '\0' b >"$SRC/f"
touch -d "@$BASE_MTIME" "$SRC/f"
base=$(cat "$SRC/f")
base_stat="1000 $BASE_MTIME"
pad=$(head -c 4096 /dev/zero | tr '\0' x)
txfs_mount
assert_eq "$(stat -c '%s %Y' "$MNT/f")" "$base_stat" "base size and mtime"

# version I: what the member writes in rewrite I, into $v (no fork).
version() {
	if (($1 % 2)); then
		printf -v v 'm%06d' "$1"
	else
		printf -v v 'm%06d%s' "$1" "$pad"
	fi
}

# The member: rewrites f, checking after each rewrite that it reads back
# what it wrote (every tenth time also its size and a fresh mtime).
member() {
	local i want got
	cd "$MNT"
	for ((i = 1; i <= REWRITES; i++)); do
		version "$i"
		want=$v
		printf '%s' "$want" >f
		got=
		read -r -d '' got <f || true
		[ "$got" = "$want" ] ||
			fail "member: rewrite $i reads back '${got:0:20}…'"
		if ((i % 10 == 0)); then
			assert_eq "$(stat -c %s f)" "${#want}" \
				"member: size after rewrite $i"
			(($(stat -c %Y f) > BASE_MTIME)) ||
				fail "member: mtime not updated by rewrite $i"
		fi
		if ((i == 1)); then
			: >"$T/started"
		fi
	done
	version "$REWRITES"
	assert_content f "$v"
	# A child of the leader reads the last write too.
	assert_eq "$(cat f)" "$v" "a child's view"
	: >"$T/done"
}

tx_leader "$T/txid" member
leader=$TX_LEADER

# The outside reader: content by cat, size and mtime by stat.
wait_for 30 test -e "$T/started" || fail "the member never started writing"
reads=0
while [ ! -e "$T/done" ] && pid_alive "$leader"; do
	got=$(cat "$MNT/f")
	[ "$got" = "$base" ] ||
		fail "non-member read '${got:0:20}…' after $reads reads"
	got=$(stat -c '%s %Y' "$MNT/f")
	[ "$got" = "$base_stat" ] ||
		fail "non-member saw size and mtime '$got' after $reads reads"
	reads=$((reads + 1))
done
wait "$leader" || fail "the member failed"
echo "# $reads outside reads during $REWRITES member rewrites"
((reads > 0)) || fail "no outside read overlapped the member's rewrites"
tx=$(cat "$T/txid")

# Still open: outside sees the base, and a process joining later sees the
# transaction's last write.
assert_content "$MNT/f" "$base"
assert_eq "$(stat -c '%s %Y' "$MNT/f")" "$base_stat" "outside, tx open"
version "$REWRITES"
(
	txctl join "$tx" --pid "$BASHPID"
	assert_content "$MNT/f" "$v"
) &
wait $! || fail "a joined process does not see the transaction's write"

txctl abort "$tx"
assert_content "$MNT/f" "$base"
assert_eq "$(stat -c '%s %Y' "$MNT/f")" "$base_stat" "mount after abort"
assert_content "$SRC/f" "$base"
assert_eq "$(stat -c '%s %Y' "$SRC/f")" "$base_stat" "source after abort"
assert_no_tx_state

txfs_umount
