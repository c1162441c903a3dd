#!/bin/bash
# The daemon's life cycle: the mount shows fsname=SOURCE and type fuse.txfs;
# "fusermount3 -u", SIGTERM and SIGINT each unmount and make the daemon exit
# with status 0 leaving no process behind; a lazy unmount while a file is
# open keeps serving that file and the daemon exits once it is closed; a
# new daemon starts on the same source after one was killed; and without
# -f the daemon detaches (its parent exits 0 only once the mount is up,
# without holding the caller's output open) and exits on unmount.
TIMEOUT=120
. "$(dirname "$0")/lib.sh"

# no_session_left PID: no process remains in the daemon's session.
no_session_left() {
	! ps -e -o sid= | awk -v s="$1" '$1 == s { found = 1 } END { exit !found }'
}

# stopped_cleanly PID: the daemon exited 0 and left nothing behind.
stopped_cleanly() {
	local pid=$1 rc=0
	wait_gone "$pid" "$MOUNT_WAIT" || fail "daemon $pid did not exit"
	wait "$pid" || rc=$?
	txfs_forget_daemon "$MNT"
	assert_eq "$rc" 0 "exit status of the daemon"
	! is_fuse_mounted "$MNT" || fail "$MNT is still mounted"
	no_session_left "$pid" || fail "processes of daemon $pid remain"
}

printf 'data' >"$SRC/file"

# fsname and type.
txfs_mount
if is_txfsd; then
	assert_eq "$(mount_fstype "$MNT")" fuse.txfs "file-system type"
	assert_eq "$(mount_source "$MNT")" "$SRC" "fsname"
fi

# fusermount3 -u.
pid=$DAEMON_PID
fusermount3 -u "$MNT"
stopped_cleanly "$pid"
assert_content "$MNT/../src/file" data
assert_eq "$(ls -A "$MNT")" "" "the bare mount point after unmount"

# SIGTERM and SIGINT.
for sig in TERM INT; do
	txfs_mount
	pid=$DAEMON_PID
	assert_content "$MNT/file" data
	kill -s "$sig" "$pid"
	stopped_cleanly "$pid"
done

# A lazy unmount while a file is open.
txfs_mount
pid=$DAEMON_PID
exec 7<"$MNT/file"
fusermount3 -uz "$MNT"
! is_fuse_mounted "$MNT" || fail "$MNT still mounted after a lazy unmount"
assert_eq "$(cat <&7)" data "read from a lazily unmounted file"
pid_alive "$pid" || fail "daemon exited while a file was still open"
exec 7<&-
stopped_cleanly "$pid"

# After the daemon is killed (SIGKILL), a lazy unmount clears the dead
# mount and a new daemon serves the same source and state directory.
txfs_mount
pid=$DAEMON_PID
kill -KILL "$pid"
wait_gone "$pid" "$MOUNT_WAIT" || fail "daemon survived SIGKILL"
wait "$pid" || true
txfs_forget_daemon "$MNT"
expect_errno ENOTCONN lstat "$MNT/file"
fusermount3 -uz "$MNT"
txfs_mount
assert_content "$MNT/file" data
txfs_umount

# Daemon mode.
if is_txfsd; then
	rc=0
	timeout 60 "$TXFSD" "$SRC" "$MNT" >"$T/parent.out" 2>&1 || rc=$?
	assert_eq "$rc" 0 \
		"exit status of the daemonizing parent ($(cat "$T/parent.out"))"
	is_fuse_mounted "$MNT" || fail "no mount when the parent exited"
	pid=$(pids_running "$TXFSD" "$SRC" "$MNT")
	[ -n "$pid" ] || fail "cannot find the daemonized txfsd"
	[ "$(wc -w <<<"$pid")" = 1 ] || fail "several daemons: $pid"
	txfs_register_daemon "$pid" "$MNT" "$T/parent.out"
	for fd in /proc/"$pid"/fd/*; do
		[ "$(readlink "$fd")" != "$T/parent.out" ] ||
			fail "the daemon keeps its caller's output open"
	done
	assert_content "$MNT/file" data
	printf 'daemon' >"$MNT/new"
	assert_content "$SRC/new" daemon
	fusermount3 -u "$MNT"
	wait_gone "$pid" "$MOUNT_WAIT" || fail "daemonized txfsd did not exit"
	txfs_forget_daemon "$MNT"
	! is_fuse_mounted "$MNT" || fail "$MNT is still mounted"
fi
