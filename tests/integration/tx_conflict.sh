#!/bin/bash
# First committer wins: of two transactions changing the same file (each
# seeing only its own content) the first commit succeeds and the second
# exits 3 naming the path, leaving nothing of it; a non-member write to a
# file a transaction changed makes that commit conflict; transactions
# changing different files, or a file only after another's commit, both
# commit.
TIMEOUT=60
. "$(dirname "$0")/lib.sh"
require_txfsd
require_txctl

printf 'base' >"$SRC/contested"
printf 'base' >"$SRC/outside-written"
printf 'base' >"$SRC/first"
printf 'base' >"$SRC/second"
printf 'base' >"$SRC/later"
txfs_mount

# assert_conflict_names PATH: txctl's output ($T/out, $T/err) names PATH,
# relative to the mount ("/PATH") or absolute.
assert_conflict_names() {
	grep -qE "(^|[[:space:]:])($MNT)?/$1\$" "$T/out" "$T/err" ||
		fail "the conflict report does not name /$1:" \
			"$(cat "$T/out" "$T/err")"
}

# assert_tx_gone TXID: TXID is not listed, and nothing of it is left.
assert_tx_gone() {
	txctl list >"$T/list"
	if grep -qE "^$1[[:space:]]" "$T/list"; then
		fail "transaction $1 is still listed: $(cat "$T/list")"
	fi
	expect_status 4 txctl status "$1"
	assert_missing "$SRC/.txfs/tx-$1"
}

# writer NAME CONTENT OTHER: changes NAME in its transaction, then, once
# the writer of OTHER has written too, checks it still sees its own content.
writer() {
	printf '%s' "$2" >"$MNT/$1"
	assert_content "$MNT/$1" "$2"
	: >"$T/wrote.$2"
	wait_for 30 test -e "$T/wrote.$3" || fail "$2: the other never wrote"
	assert_content "$MNT/$1" "$2"
}

# --- two transactions, one file ---------------------------------------------

tx_leader "$T/tx1" writer contested one two
w1=$TX_LEADER
tx_leader "$T/tx2" writer contested two one
w2=$TX_LEADER
wait "$w1" || fail "the first writer failed"
wait "$w2" || fail "the second writer failed"
tx1=$(cat "$T/tx1")
tx2=$(cat "$T/tx2")
assert_content "$MNT/contested" base

expect_status 0 txctl commit "$tx1"
assert_content "$MNT/contested" one
expect_status 3 txctl commit "$tx2"
cat "$T/err"
assert_conflict_names contested
assert_content "$MNT/contested" one
assert_content "$SRC/contested" one
assert_tx_gone "$tx2"
assert_no_tx_state

# --- a non-member writes what a transaction changed -------------------------

member() {
	printf 'member' >"$MNT/outside-written"
}
tx_leader "$T/tx3" member
wait "$TX_LEADER" || fail "the member failed"
tx3=$(cat "$T/tx3")
printf 'outsider' >"$MNT/outside-written"
expect_status 3 txctl commit "$tx3"
assert_conflict_names outside-written
assert_content "$MNT/outside-written" outsider
assert_content "$SRC/outside-written" outsider
assert_tx_gone "$tx3"

# --- different files: no conflict -------------------------------------------

tx_leader "$T/tx4" writer first four five
w4=$TX_LEADER
tx_leader "$T/tx5" writer second five four
w5=$TX_LEADER
wait "$w4" || fail "the writer of first failed"
wait "$w5" || fail "the writer of second failed"
tx4=$(cat "$T/tx4")
tx5=$(cat "$T/tx5")
expect_status 0 txctl commit "$tx5"
expect_status 0 txctl commit "$tx4"
assert_content "$SRC/first" four
assert_content "$SRC/second" five
assert_content "$MNT/first" four
assert_content "$MNT/second" five

# --- a file first touched after another transaction committed it ------------
#
# The transaction begins before the other commits, but changes the file
# only afterwards: it copies the committed content and does not conflict.

append() {
	wait_for 30 test -e "$T/go.$1" || fail "no go for $1"
	printf '+%s' "$1" >>"$MNT/later"
}
tx_leader "$T/tx6" append six
w6=$TX_LEADER
tx6=$(tx_wait_id "$T/tx6")
tx_leader "$T/tx7" append seven
w7=$TX_LEADER
: >"$T/go.seven"
wait "$w7" || fail "the appender seven failed"
expect_status 0 txctl commit "$(cat "$T/tx7")"
: >"$T/go.six"
wait "$w6" || fail "the appender six failed"
expect_status 0 txctl commit "$tx6"
assert_content "$SRC/later" 'base+seven+six'
assert_content "$MNT/later" 'base+seven+six'
assert_no_tx_state

txfs_umount
