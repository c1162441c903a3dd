#!/bin/bash
# Name conflicts: of two transactions creating one name the second commit
# exits 3 naming the path, and so does a transaction that removes a file
# rewritten meanwhile, renames a file renamed or rewritten meanwhile or
# creates a name created meanwhile by a non-member, leaving nothing of
# itself; different names in one directory, and a file changed before a
# transaction removed it, commit.
TIMEOUT=60
. "$(dirname "$0")/lib.sh"
require_txfsd
require_txctl

mkdir "$SRC/dir"
printf 'base\n' >"$SRC/victim"
printf 'base\n' >"$SRC/victim2"
printf 'base\n' >"$SRC/ren"
printf 'base\n' >"$SRC/ren2"
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
	assert_no_tx_state
}

# in_tx IDFILE COMMAND…: runs the shell COMMAND in a new transaction (its
# leader exits; the transaction stays open) and prints the id.
in_tx() {
	local file=$1
	shift
	tx_leader "$file" bash -c "set -e; cd \"\$MNT\"; $*"
	wait "$TX_LEADER" || fail "the transaction's work failed: $*"
	cat "$file"
}

# --- two transactions create the same name ----------------------------------

txa=$(in_tx "$T/txa" 'printf A >same; printf a >a-only')
txb=$(in_tx "$T/txb" 'printf B >same; printf b >b-only')
assert_missing "$MNT/same"
expect_status 0 txctl commit "$txa"
assert_content "$SRC/same" A
expect_status 3 txctl commit "$txb"
cat "$T/err"
assert_conflict_names same
assert_tx_gone "$txb"
assert_content "$SRC/same" A
assert_content "$MNT/same" A
assert_content "$SRC/a-only" a
assert_missing "$SRC/b-only"
assert_missing "$MNT/b-only"

# --- different names in one directory ---------------------------------------

txc=$(in_tx "$T/txc" 'printf one >dir/one; mkdir dir/onedir')
txd=$(in_tx "$T/txd" 'printf two >dir/two; ln -s two dir/twolink')
expect_status 0 txctl commit "$txd"
expect_status 0 txctl commit "$txc"
assert_content "$SRC/dir/one" one
assert_content "$SRC/dir/two" two
assert_eq "$(readlink "$SRC/dir/twolink")" two "dir/twolink"
[ -d "$SRC/dir/onedir" ] || fail "no dir/onedir after both commits"
assert_eq "$(ls "$MNT/dir" | tr '\n' ' ')" "one onedir two twolink " \
	"ls of dir after both commits"
assert_no_tx_state

# --- a non-member rewrites a file the transaction removed -------------------

txe=$(in_tx "$T/txe" 'rm victim; printf e >e-only')
assert_content "$MNT/victim" base
printf 'rewritten\n' >"$MNT/victim"
expect_status 3 txctl commit "$txe"
assert_conflict_names victim
assert_tx_gone "$txe"
assert_content "$SRC/victim" rewritten
assert_missing "$SRC/e-only"

# Changed before the transaction removed it: no conflict.
tx_leader "$T/txf" bash -c '
	while [ ! -e "$T/rewrote2" ]; do sleep 0.05; done
	rm "$MNT/victim2"'
leader=$TX_LEADER
txf=$(tx_wait_id "$T/txf")
printf 'rewritten\n' >"$MNT/victim2"
: >"$T/rewrote2"
wait "$leader" || fail "the removal of victim2 failed"
expect_status 0 txctl commit "$txf"
assert_missing "$SRC/victim2"
assert_missing "$MNT/victim2"

# --- a non-member renames a file the transaction renamed --------------------

txg=$(in_tx "$T/txg" 'mv ren ren.tx; printf g >g-only')
mv "$MNT/ren" "$MNT/ren.out"
expect_status 3 txctl commit "$txg"
assert_conflict_names ren
assert_tx_gone "$txg"
assert_content "$SRC/ren.out" base
assert_missing "$SRC/ren"
assert_missing "$SRC/ren.tx"
assert_missing "$SRC/g-only"

# A non-member rewrites a file the transaction renamed: a conflict too.
txg2=$(in_tx "$T/txg2" 'mv ren2 ren2.tx')
printf 'rewritten\n' >>"$MNT/ren2"
expect_status 3 txctl commit "$txg2"
assert_conflict_names ren2
assert_tx_gone "$txg2"
assert_content "$SRC/ren2" "base
rewritten"
assert_missing "$SRC/ren2.tx"

# --- a non-member creates a name the transaction created --------------------

txh=$(in_tx "$T/txh" 'printf tx >fresh; mkdir freshdir; printf h >h-only')
printf 'outsider\n' >"$MNT/fresh"
expect_status 3 txctl commit "$txh"
assert_conflict_names fresh
assert_tx_gone "$txh"
assert_content "$SRC/fresh" outsider
assert_content "$MNT/fresh" outsider
assert_missing "$SRC/freshdir"
assert_missing "$SRC/h-only"

# (The same with a directory created outside over a name the transaction
# created as a file.)
txi=$(in_tx "$T/txi" 'printf tx >fresh2')
mkdir "$MNT/fresh2"
expect_status 3 txctl commit "$txi"
assert_conflict_names fresh2
assert_tx_gone "$txi"
[ -d "$SRC/fresh2" ] || fail "$SRC/fresh2 is not the outsider's directory"

txfs_umount
