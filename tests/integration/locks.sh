#!/bin/bash
# Locks between processes through the mount.  POSIX record locks: a write
# lock held by one process makes F_SETLK of an overlapping range fail with
# EAGAIN in another, F_GETLK names the holder, disjoint ranges and shared
# read locks coexist, and closing or exiting releases.  flock(2): LOCK_EX
# conflicts with LOCK_EX|LOCK_NB and LOCK_SH|LOCK_NB (EWOULDBLOCK), shared
# locks coexist, and locks belong to the open file description.
TIMEOUT=60
. "$(dirname "$0")/lib.sh"

txfs_mount
F=$MNT/locked
printf 'lock me\n' >"$F"
HOLDER=
# hold KIND ARGS…: starts "fsop KIND FILE ARGS… hold=RELEASE" in the
# background and waits until it holds its lock; release lets it go.
hold() {
	local kind=$1
	shift
	rm -f "$T/release" "$T/hold.out"
	"$FSOP" "$kind" "$F" "$@" "hold=$T/release" >"$T/hold.out" &
	HOLDER=$!
	wait_for 10 grep -qs locked "$T/hold.out" ||
		fail "holder did not take its lock: $(cat "$T/hold.out")"
}
release() {
	: >"$T/release"
	wait "$HOLDER" || fail "lock holder exited with status $?"
	HOLDER=
}
at_cleanup ': >"$T/release"; [ -z "$HOLDER" ] || wait $HOLDER'

# A write lock on bytes 0-99 blocks overlapping locks of another process.
hold lock wr 0 100
expect_errno EAGAIN lock "$F" wr 50 10
expect_errno EAGAIN lock "$F" rd 0 1
expect_errno EAGAIN lock "$F" wr 0 0
expect_ok lock "$F" wr 100 50
assert_eq "$(fsop getlk "$F" wr 10 5)" "wr $HOLDER 0 100" "F_GETLK"
assert_eq "$(fsop getlk "$F" wr 200 5)" unlocked "F_GETLK on a free range"
release
expect_ok lock "$F" wr 50 10

# Read locks are shared; they block writers.
hold lock rd 0 0
expect_ok lock "$F" rd 0 0
expect_errno EAGAIN lock "$F" wr 1000 1
release

# A blocked F_SETLKW waiter gets the lock once the holder releases it.
hold lock wr 0 0
"$FSOP" lock "$F" wr 0 0 wait >"$T/waiter.out" &
waiter=$!
release
wait "$waiter" || fail "F_SETLKW waiter failed: $(cat "$T/waiter.out")"
assert_eq "$(cat "$T/waiter.out")" ok "F_SETLKW result"

# flock: exclusive against exclusive and shared, non-blocking.
# (EWOULDBLOCK and EAGAIN are the same errno on Linux.)
hold flock ex
expect_errno EAGAIN flock "$F" ex nb
expect_errno EAGAIN flock "$F" sh nb
release
expect_ok flock "$F" ex nb

hold flock sh
expect_ok flock "$F" sh nb
expect_errno EAGAIN flock "$F" ex nb
release

# flock locks belong to open file descriptions, even in one process.
expect_errno EAGAIN flock2 "$F"

# POSIX locks and flock locks do not interact.
hold flock ex
expect_ok lock "$F" wr 0 0
release

txfs_umount
