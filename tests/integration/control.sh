#!/bin/bash
# The control socket and "txctl status": status reports source, mount
# point, state directory, daemon pid, uptime and version; the socket is
# mode 0600; malformed requests (garbage, binary bytes, bad syntax,
# unknown verbs, an oversized line) get an error reply and the daemon keeps
# serving both the socket and the file system, also with many idle and
# half-sent connections open; --socket puts the socket elsewhere; with no
# daemon, txctl exits 1 with a clear message.
TIMEOUT=90
. "$(dirname "$0")/lib.sh"
require_txfsd

[ -x "$TXCTL" ] || fail "no txctl at $TXCTL"
mkdir "$SRC/sub"
printf 'content' >"$SRC/file"
txfs_mount

# daemon_socket PID: the path of the unix socket the daemon listens on.
daemon_socket() {
	local fd link inode
	for fd in /proc/"$1"/fd/*; do
		link=$(readlink "$fd") || continue
		case $link in
		socket:*)
			inode=${link#socket:[}
			inode=${inode%]}
			awk -v i="$inode" '$7 == i && NF >= 8 { print $8 }' \
				/proc/net/unix
			;;
		esac
	done | grep '\.sock$' | head -n 1
}

# still_serving: txctl status and file operations both work.
still_serving() {
	pid_alive "$DAEMON_PID" || fail "the daemon died"
	"$TXCTL" -m "$MNT" status >"$T/status.again" ||
		fail "txctl status failed after $1"
	grep -q "^daemon pid: *$DAEMON_PID\$" "$T/status.again" ||
		fail "txctl status after $1: $(cat "$T/status.again")"
	printf '%s' "$1" >"$MNT/sub/after"
	assert_content "$SRC/sub/after" "$1"
	assert_content "$MNT/file" content
}

# --- txctl status ------------------------------------------------------------

"$TXCTL" -m "$MNT" status >"$T/status" || fail "txctl status failed"
cat "$T/status"
field() {
	sed -n "s/^$1: *//p" "$T/status"
}
assert_eq "$(field source)" "$SRC" "status: source"
assert_eq "$(field 'mount point')" "$MNT" "status: mount point"
assert_eq "$(field 'state dir')" "$SRC/.txfs" "status: state dir"
assert_eq "$(field 'daemon pid')" "$DAEMON_PID" "status: daemon pid"
assert_match "$(field uptime)" '^([0-9]+[dhm] )*[0-9]+s$' "status: uptime"
version=$(field version)
version=${version%% *}
assert_match "$version" '^[0-9]+\.[0-9]+' "status: version"
"$TXFSD" --version | grep -qF "$version" ||
	fail "txfsd --version does not show $version"

# From a directory inside the mount, -m names any path in it.
"$TXCTL" -m "$MNT/sub" status >/dev/null ||
	echo "# note: txctl -m with a path inside the mount is not supported"

sock=$(daemon_socket "$DAEMON_PID")
[ -S "$sock" ] || fail "cannot find the daemon's control socket ($sock)"
echo "# control socket: $sock"
assert_eq "$(stat -c %a "$sock")" 600 "mode of the control socket"
if grep -q '^socket:' "$T/status"; then
	assert_eq "$(field socket)" "$sock" "status: socket"
fi

# A well-formed request, twice on one connection: two complete replies.
fsop sock "$sock" 'status\nstatus\n' >"$T/reply"
assert_eq "$(grep -c '^ok$' "$T/reply")" 2 "replies to two requests"
grep -q "^pid=$DAEMON_PID\$" "$T/reply" || fail "raw status lacks pid"

# --- malformed requests ------------------------------------------------------

# malformed DATA: the reply to DATA is an error, and all still works.
malformed() {
	local reply
	reply=$(fsop sock "$sock" "$1") ||
		fail "no reply to malformed request '$1': $reply"
	assert_match "$reply" '^err [A-Z0-9]+' "reply to '$1'"
	echo "# '$1' -> $(head -n 1 <<<"$reply")"
	still_serving "malformed request $1"
}
malformed 'garbage\n'
malformed '\n'
malformed 'STATUS\n'
malformed 'nosuchverb\n'
malformed 'status novalue\n'
malformed 'status key=%zz\n'
malformed 'status =value\n'
malformed 'status Key=1\n'
malformed '\x00\x01\x02\xff\xfe\n'
malformed 'status key=\x01\x02\n'
malformed "$(printf 'a%.0s' $(seq 1 40))\n"
malformed "status $(printf 'k%d=v ' $(seq 1 100))\n"

# An oversized line (over the 64 KiB limit).
reply=$(fsop sockfill "$sock" 200000) ||
	fail "no reply to an oversized request: $reply"
assert_match "$reply" '^err [A-Z0-9]+' "reply to an oversized request"
still_serving "an oversized request"

# Unfinished requests, and connections closed half-way.
fsop sock "$sock" 'stat' shut >/dev/null || true
still_serving "a request cut short"
fsop sock "$sock" '' shut >/dev/null || true
still_serving "an empty connection"

# Many idle and half-sent connections do not block other clients.
"$FSOP" sockmany "$sock" 100 "$T/let-go" >"$T/many.out" &
idle=$!
"$FSOP" sockmany "$sock" 100 "$T/let-go" 'status key=' >"$T/half.out" &
half=$!
at_cleanup ': >"$T/let-go"; wait $idle $half'
wait_for 30 grep -qs 'held 100' "$T/many.out" ||
	fail "idle connections: $(cat "$T/many.out")"
wait_for 30 grep -qs 'held 100' "$T/half.out" ||
	fail "half-sent connections: $(cat "$T/half.out")"
still_serving "200 open connections"
: >"$T/let-go"
wait "$idle" "$half"
still_serving "200 connections closed"

txfs_umount

# --- with no daemon ------------------------------------------------------------

rc=0
"$TXCTL" -m "$MNT" status >"$T/out" 2>"$T/err" || rc=$?
assert_eq "$rc" 1 "txctl status exit status with no daemon"
assert_eq "$(wc -l <"$T/err")" 1 "lines of txctl's error message"
assert_match "$(cat "$T/err")" '^txctl: ' "txctl's error message"
echo "# no daemon: $(cat "$T/err")"
[ -e "$sock" ] && echo "# note: the daemon left its socket $sock behind"

# --- --socket --------------------------------------------------------------------

txfs_mount --socket "$T/ctl.sock"
[ -S "$T/ctl.sock" ] || fail "no socket at $T/ctl.sock"
assert_eq "$(stat -c %a "$T/ctl.sock")" 600 "mode of the --socket socket"
"$TXCTL" -S "$T/ctl.sock" status >"$T/status" ||
	fail "txctl -S $T/ctl.sock status failed"
assert_eq "$(field 'daemon pid')" "$DAEMON_PID" "status via --socket"
txfs_umount
rc=0
"$TXCTL" -S "$T/ctl.sock" status >"$T/out" 2>"$T/err" || rc=$?
assert_eq "$rc" 1 "txctl -S status exit status with no daemon"
assert_match "$(cat "$T/err")" '^txctl: ' "txctl's error message"
