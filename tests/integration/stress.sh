#!/bin/bash
# Concurrent namespace and data operations through the mount: four
# processes race creates, writes, renames, exchanges, links, symlinks,
# unlinks, mkdir/rmdir, truncates, chmods and readdirs on the same few
# names, on a daemon with its default threads and on one with a single
# thread.  No operation may fail with an errno a race does not explain
# (ESTALE, EIO, ENOTCONN, …); afterwards the mount shows exactly what the
# source holds, every object is readable through the mount, and the whole
# tree can be removed.
TIMEOUT=120
. "$(dirname "$0")/lib.sh"

WORKERS=4
OPS=${STRESS_OPS:-3000}

txfs_mount
mkdir "$MNT/s"

for round in 1 2; do
	# The second round runs on a daemon with a single worker thread.
	if [ "$round" = 2 ] && is_txfsd; then
		txfs_umount
		txfs_mount --threads 1
	fi
	pids=()
	for ((w = 1; w <= WORKERS; w++)); do
		"$FSOP" stress "$MNT/s" "$((round * 100 + w))" "$OPS" \
			>"$T/worker.$w" 2>&1 &
		pids+=($!)
	done
	for ((w = 1; w <= WORKERS; w++)); do
		wait "${pids[$((w - 1))]}" ||
			fail "worker $w (round $round): $(cat "$T/worker.$w")"
		echo "# round $round worker $w: $(cat "$T/worker.$w")"
	done
	pid_alive "$DAEMON_PID" || fail "the daemon died"

	# The mount and the source agree, and everything is reachable.
	tree_compare "$SRC/s" "$MNT/s"
	find "$MNT/s" -type f -exec cat {} + >/dev/null ||
		fail "cannot read every file through the mount"
	find "$MNT/s" -type d -exec ls {} + >/dev/null ||
		fail "cannot list every directory through the mount"
	find "$MNT/s" -type l -exec readlink {} + >/dev/null ||
		fail "cannot read every symlink through the mount"
done

rm -rf "$MNT/s"
assert_missing "$SRC/s"
assert_eq "$(ls -A "$MNT")" "" "mount after removing everything"

txfs_umount
