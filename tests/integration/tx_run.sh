#!/bin/bash
# The txctl transaction verbs behave as documented: run commits on success,
# aborts on failure (passing the command's status on), with --abort-always,
# and when txctl is killed; it reports conflicts with status 3, forwards
# SIGTERM and exports TXFS_TXID; begin prints an id; list, list --json and
# status show an open transaction; unknown ids give status 4.
TIMEOUT=60
. "$(dirname "$0")/lib.sh"
require_txfsd
require_txctl

for f in ok fail always conflict term killed; do
	printf 'base' >"$SRC/$f"
done
txfs_mount

# assert_not_listed TXID: txctl list does not show TXID.
assert_not_listed() {
	txctl list >"$T/list"
	if grep -qE "^$1[[:space:]]" "$T/list"; then
		fail "transaction $1 is still listed: $(cat "$T/list")"
	fi
}

# --- commit on success, abort on failure ------------------------------------

expect_status 0 txctl run -- true
open=$(txctl list --json |
	python3 -c 'import json, sys; print(len(json.load(sys.stdin)))')
assert_eq "$open" 0 "open transactions after run -- true"

expect_status 0 txctl run -- sh -c 'printf ok >"$MNT/ok"'
assert_content "$SRC/ok" ok

expect_status 7 txctl run -- sh -c 'printf changed >"$MNT/fail"; exit 7'
assert_content "$MNT/fail" base
assert_content "$SRC/fail" base

expect_status 0 txctl run --abort-always -- \
	sh -c 'printf changed >"$MNT/always"; cat "$MNT/always"'
assert_eq "$(cat "$T/out")" changed "what the command saw"
assert_content "$MNT/always" base
assert_content "$SRC/always" base
assert_no_tx_state

# A command killed by a signal: 128+N, aborted.
expect_status 137 txctl run -- \
	sh -c 'printf changed >"$MNT/fail"; kill -KILL $$'
assert_content "$SRC/fail" base

# TXFS_TXID names the transaction, which is open while the command runs.
expect_status 0 txctl run --label runlabel -- \
	sh -c 'echo "$TXFS_TXID"; "$TXCTL" -m "$MNT" status "$TXFS_TXID"'
id=$(head -n 1 "$T/out")
assert_match "$id" '^[1-9][0-9]*$' "TXFS_TXID"
grep -qE "^state: *open\$" "$T/out" || fail "status in run: $(cat "$T/out")"
grep -qE "^label: *runlabel\$" "$T/out" ||
	fail "status in run lacks the label: $(cat "$T/out")"
assert_not_listed "$id"

# --- a conflict -------------------------------------------------------------

# ("$TXCTL" itself, not the txctl function, whose failure in a background
# job would count as the scenario's.)
"$TXCTL" -m "$MNT" run -- sh -c 'printf mine >"$MNT/conflict"; : >"$T/wrote";
	while [ ! -e "$T/go" ]; do sleep 0.05; done' >"$T/run.out" 2>&1 &
run=$!
stop_at_cleanup "$run"
wait_for 30 test -e "$T/wrote" || fail "the command never wrote"
printf 'theirs' >"$MNT/conflict"
: >"$T/go"
rc=0
wait "$run" || rc=$?
assert_eq "$rc" 3 "run's exit status on a conflict"
grep -qE "(^|[[:space:]:])($MNT)?/conflict\$" "$T/run.out" ||
	fail "run does not name the conflict: $(cat "$T/run.out")"
assert_content "$SRC/conflict" theirs

# --- SIGTERM is passed on ---------------------------------------------------

# ($! must be txctl's pid.)
"$TXCTL" -m "$MNT" run -- bash -c '
	trap "printf trapped >\"\$MNT/term\"; : >\"\$T/marker\"; exit 0" TERM
	: >"$T/ready"
	while :; do sleep 0.05; done' &
run=$!
stop_at_cleanup "$run"
wait_for 30 test -e "$T/ready" || fail "the command never got ready"
kill -TERM "$run"
rc=0
wait "$run" || rc=$?
assert_exists "$T/marker"
assert_eq "$rc" 0 "run's status after the command handled SIGTERM"
assert_content "$SRC/term" trapped

# --- kill -9 of txctl aborts ------------------------------------------------

# (In a subshell whose stderr takes bash's report of the killed txctl; the
# command records its parent, txctl.)
rm -f "$T/ready"
(
	"$TXCTL" -m "$MNT" run -- bash -c 'printf killed >"$MNT/killed"
		echo "$TXFS_TXID $$ $PPID" >"$T/ids"; : >"$T/ready"
		exec sleep 60' || true
) 2>"$T/killed.err" &
run=$!
stop_at_cleanup "$run"
wait_for 30 test -e "$T/ready" || fail "the command never got ready"
read -r id cmd txctl_pid <"$T/ids"
# The command outlives txctl: kill it at the end if the scenario does not.
cmd_left=$cmd
at_cleanup '[ -z "$cmd_left" ] || kill "$cmd_left" 2>/dev/null'
txctl status "$id" >/dev/null || fail "the transaction is not open"
kill -KILL "$txctl_pid"
wait "$run"
wait_for 10 eval '! txctl list | grep -qE "^${id}[[:space:]]"' ||
	fail "transaction $id still open after kill -9 of txctl"
expect_status 4 txctl status "$id"
assert_content "$MNT/killed" base
assert_content "$SRC/killed" base
kill "$cmd"
wait_gone "$cmd" 10 || fail "the command survived"
# shellcheck disable=SC2034 # (the cleanup hook reads it)
cmd_left=''

# --- begin, list, status, abort by id ---------------------------------------

sleep 60 &
sleeper=$!
stop_at_cleanup "$sleeper"
id=$(txctl begin --pid "$sleeper" --label "my label")
assert_match "$id" '^[1-9][0-9]*$' "txctl begin's output"
txctl list >"$T/list"
cat "$T/list"
sp='[[:space:]]'
grep -qE "^$id$sp.*$sp$sleeper$sp+my label$sp" "$T/list" ||
	fail "txctl list does not show $id: $(cat "$T/list")"
txctl list --json >"$T/list.json"
python3 -m json.tool "$T/list.json" >/dev/null ||
	fail "txctl list --json is not JSON: $(cat "$T/list.json")"
python3 - "$T/list.json" "$id" "$sleeper" <<'EOF' || fail "list --json"
import json, sys
txs = [t for t in json.load(open(sys.argv[1])) if t["txid"] == int(sys.argv[2])]
assert len(txs) == 1, txs
t = txs[0]
assert t["label"] == "my label", t
assert t["leader"] == int(sys.argv[3]), t
assert t["state"] == "open", t
assert t["uid"] == 0, t
for k in ("started", "age", "changes", "members"):
    assert isinstance(t[k], int), (k, t)
EOF
txctl status "$id" >"$T/status"
grep -qE "^label: *my label\$" "$T/status" ||
	fail "txctl status $id: $(cat "$T/status")"
grep -qE "^state: *open\$" "$T/status" ||
	fail "txctl status $id: $(cat "$T/status")"
txctl status "$id" --json >"$T/status.json"
python3 -m json.tool "$T/status.json" >/dev/null ||
	fail "txctl status --json is not JSON: $(cat "$T/status.json")"

expect_status 0 txctl abort "$id"
assert_not_listed "$id"
kill "$sleeper"
wait "$sleeper" || true

# Unknown transactions: status 4.
for verb in commit abort status; do
	expect_status 4 txctl "$verb" "$id"
	expect_status 4 txctl "$verb" 999999999
done
# Without an id, a caller in no transaction has none to commit or abort.
expect_status 4 txctl commit
expect_status 4 txctl abort
# Usage errors: status 2.
expect_status 2 txctl commit notanumber
expect_status 2 txctl run
assert_no_tx_state

txfs_umount
