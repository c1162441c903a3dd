#!/bin/bash
# SOURCE and MOUNTPOINT may be any path: with spaces, commas, backslashes,
# UTF-8, and relative to the working directory (also when daemonizing,
# which changes directory).  The mount works, mountinfo shows fsname=SOURCE
# (canonical), and txctl status finds the daemon and reports the paths.
TIMEOUT=90
. "$(dirname "$0")/lib.sh"

for name in "with space" "com,ma" 'back\slash' "ünïcödé" "a=b"; do
	s="$T/src $name"
	m="$T/mnt $name"
	mkdir "$s" "$m"
	printf '%s' "$name" >"$s/f"
	txfs_mount_at "$s" "$m"
	assert_content "$m/f" "$name"
	printf 'through' >"$m/g"
	assert_content "$s/g" through
	if is_txfsd; then
		assert_eq "$(mount_source "$m")" "$s" "fsname of '$name'"
		"$TXCTL" -m "$m" status >"$T/status" ||
			fail "txctl status for '$name' failed"
		grep -qxF "source:       $s" "$T/status" ||
			fail "txctl status for '$name': $(cat "$T/status")"
	fi
	txfs_umount "$m"
done

# Relative paths, in the foreground and daemonizing.
mkdir "$T/rel src" "$T/rel mnt"
printf 'relative' >"$T/rel src/f"
cd "$T"
txfs_mount_at "rel src" "./rel mnt"
assert_content "$T/rel mnt/f" relative
if is_txfsd; then
	assert_eq "$(mount_source "$T/rel mnt")" "$T/rel src" "relative fsname"
fi
txfs_umount "$T/rel mnt"
if is_txfsd; then
	timeout 60 "$TXFSD" "rel src" "rel mnt" >"$T/parent.out" 2>&1 ||
		fail "daemonizing with relative paths: $(cat "$T/parent.out")"
	pid=$(pids_running "$TXFSD" "rel src" "rel mnt")
	[ -n "$pid" ] || fail "cannot find the daemonized txfsd"
	txfs_register_daemon "$pid" "$T/rel mnt" "$T/parent.out"
	is_fuse_mounted "$T/rel mnt" || fail "no mount at $T/rel mnt"
	assert_content "$T/rel mnt/f" relative
	printf 'daemon' >"$T/rel mnt/g"
	assert_content "$T/rel src/g" daemon
	assert_eq "$(mount_source "$T/rel mnt")" "$T/rel src" "fsname"
	fusermount3 -u "$T/rel mnt"
	wait_gone "$pid" "$MOUNT_WAIT" || fail "daemonized txfsd did not exit"
	txfs_forget_daemon "$T/rel mnt"
fi
cd /
