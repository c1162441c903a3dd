#!/bin/bash
# Transactions belong to their owner: another uid cannot commit, abort,
# inspect, list or join root's transaction, nor bind root's processes into
# a transaction, while it can run a transaction of its own, which root
# may inspect and abort.
TIMEOUT=60
. "$(dirname "$0")/lib.sh"
require_txfsd
require_txctl
if [ "$(id -u)" != 0 ]; then
	echo "SKIP: $TEST_NAME needs root (to act as root and as nobody)"
	exit 77
fi

printf 'base' >"$SRC/rootfile"
printf 'base' >"$SRC/nobodyfile"
chown nobody:nogroup "$SRC/nobodyfile"
# nobody needs a txctl it can execute, and a socket it can connect to (the
# daemon makes it 0600; the scenario opens it up on purpose).
cp "$TXCTL" "$T/txctl"
chmod 755 "$T/txctl"
txfs_mount -o allow_other --socket "$T/ctl.sock"
chmod 666 "$T/ctl.sock"

# rtx / ntx ARGS…: txctl as root / as nobody.
rtx() {
	"$TXCTL" -S "$T/ctl.sock" "$@"
}
ntx() {
	as_nobody "$T/txctl" -S "$T/ctl.sock" "$@"
}

# denied COMMAND…: COMMAND exits 1 saying that permission was refused.
denied() {
	expect_status 1 "$@"
	grep -qiE 'permi|owner|belongs|not permitted' "$T/err" ||
		fail "'$*' does not say why it failed: $(cat "$T/err")"
	echo "# $*: $(cat "$T/err")"
}

# listed AS TXID: true when TXID is in txctl list --json run by AS.
listed() {
	"$1" list --json >"$T/list.json"
	python3 -c 'import json, sys
sys.exit(0 if any(t["txid"] == int(sys.argv[2])
                  for t in json.load(open(sys.argv[1]))) else 1)' \
		"$T/list.json" "$2"
}

# Root's transaction, with a change to rootfile.
sleep 60 &
rs=$!
stop_at_cleanup "$rs"
tx=$(rtx begin --pid "$rs" --label rootonly)
(
	rtx join "$tx" --pid "$BASHPID"
	printf 'root-tx' >"$MNT/rootfile"
) &
wait $! || fail "root's member could not write"

# nobody_sleeper: starts a process of nobody's, sets ns to its pid.
nobody_sleeper() {
	# (setpriv itself, not the as_nobody function: $! must be the
	# process that becomes the sleep.)
	setpriv --reuid=nobody --regid=nogroup --clear-groups -- sleep 60 &
	ns=$!
	stop_at_cleanup "$ns"
	wait_for 10 eval '[ "$(stat -c %u "/proc/$ns")" = 65534 ]' ||
		fail "process $ns did not become nobody's"
}
nobody_sleeper

# --- nobody and root's transaction ------------------------------------------

denied ntx commit "$tx"
denied ntx abort "$tx"
denied ntx status "$tx"
denied ntx join "$tx" --pid "$ns"
! listed ntx "$tx" || fail "nobody's txctl list shows root's transaction"
assert_eq "$(ntx list --json | tr -d ' \n')" '[]' "nobody's list"
ntx list >"$T/list"
if grep -qE "^${tx}[[:space:]]" "$T/list"; then
	fail "nobody's txctl list shows root's transaction: $(cat "$T/list")"
fi

# nobody cannot make a process of root's the leader of a transaction.
sleep 60 &
rs2=$!
stop_at_cleanup "$rs2"
denied ntx begin --pid "$rs2"

# Root's transaction is intact.
listed rtx "$tx" || fail "root's transaction is gone"
rtx status "$tx" >"$T/status"
grep -qE '^state: *open$' "$T/status" || fail "root's transaction is not open"
assert_content "$MNT/rootfile" base
assert_content "$SRC/rootfile" base

# --- nobody's own transaction -----------------------------------------------

ntx_id=$(ntx begin --pid "$ns" --label nobodys)
assert_match "$ntx_id" '^[1-9][0-9]*$' "nobody's txctl begin"
listed ntx "$ntx_id" || fail "nobody's list lacks its own transaction"
listed rtx "$ntx_id" || fail "root's list lacks nobody's transaction"
! listed ntx "$tx" || fail "nobody's list shows root's transaction"
# nobody cannot bind a process of root's into its own transaction either;
# the message blames the process, not nobody's ownership.
denied ntx join "$ntx_id" --pid "$rs2"
grep -q "$rs2" "$T/err" ||
	fail "refusing to bind root's process $rs2 into nobody's own" \
		"transaction, txctl says: $(cat "$T/err")"

# A member of nobody's transaction writes privately; nobody commits.
as_nobody bash -c '"$T/txctl" -S "$T/ctl.sock" join "$1" --pid $$ &&
	printf "nobody-tx" >"$MNT/nobodyfile" && cat "$MNT/nobodyfile"' \
	bash "$ntx_id" >"$T/member.out" ||
	fail "nobody's member failed: $(cat "$T/member.out")"
assert_content "$T/member.out" nobody-tx
assert_content "$MNT/nobodyfile" base
rtx status "$ntx_id" >"$T/status" || fail "root cannot inspect nobody's tx"
grep -q '/nobodyfile' "$T/status" ||
	fail "status of nobody's transaction lacks its change:" \
		"$(cat "$T/status")"
ntx commit "$ntx_id" || fail "nobody cannot commit its own transaction"
assert_content "$SRC/nobodyfile" nobody-tx

# Root may abort a transaction of nobody's.
kill "$ns"
wait "$ns" || true
nobody_sleeper
ntx_id=$(ntx begin --pid "$ns")
rtx abort "$ntx_id" || fail "root cannot abort nobody's transaction"
! listed rtx "$ntx_id" || fail "the aborted transaction is still listed"

# Root's own transaction commits as usual after all that.
rtx commit "$tx"
assert_content "$SRC/rootfile" root-tx
assert_no_tx_state

txfs_umount
