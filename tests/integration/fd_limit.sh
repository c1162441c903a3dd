#!/bin/bash
# More live objects than the open-file limit allows: 25,000 files are kept
# referenced by the kernel at once (an inotify watch on each pins its
# inode, so no FORGET arrives whatever the entry timeouts), then all are
# stat'ed and read through the mount and more are created.  The daemon
# must keep serving — it must not need a descriptor per object — and
# must not leak descriptors for files opened and closed.
TIMEOUT=300
. "$(dirname "$0")/lib.sh"

NDIRS=5
PERDIR=5000
NFILES=$((NDIRS * PERDIR))
limit=$(ulimit -Hn)
[ "$NFILES" -gt "$limit" ] ||
	echo "# note: the hard open-file limit $limit is not below $NFILES"

# The files are made in the source before mounting, which is quick; each
# holds its own name.
for ((d = 0; d < NDIRS; d++)); do
	mkdir "$SRC/d$d"
	for ((i = 0; i < PERDIR; i++)); do
		printf 'd%d/f%d\n' "$d" "$i" >"$SRC/d$d/f$i"
	done
done
want_bytes=$(cat "$SRC"/d*/f* | wc -c)
want_sum=$(cd "$SRC" && find . -type f -print0 | LC_ALL=C sort -z |
	xargs -0 cat | sha256sum)

txfs_mount

find "$MNT" -type f >"$T/list"
assert_eq "$(wc -l <"$T/list")" "$NFILES" "files found through the mount"

"$FSOP" pin "$T/list" "$T/unpin" >"$T/pin.out" &
pinner=$!
at_cleanup ': >"$T/unpin"; wait $pinner'
pinning_done() {
	grep -qs pinned "$T/pin.out" || ! pid_alive "$pinner"
}
wait_for 200 pinning_done || true
assert_eq "$(cat "$T/pin.out")" "pinned $NFILES" "inodes pinned"

# Every file stat'ed and read while all of them are referenced.
assert_eq "$(find "$MNT" -type f -printf '%s\n' |
	awk '{ s += $1 } END { print s }')" "$want_bytes" "sum of sizes"
assert_eq "$(cd "$MNT" && find . -type f -print0 | LC_ALL=C sort -z |
	xargs -0 cat | sha256sum)" "$want_sum" "content of all files"

# New files can still be created, written and read.
mkdir "$MNT/new"
for ((i = 0; i < 500; i++)); do
	printf 'new %d\n' "$i" >"$MNT/new/n$i"
done
assert_eq "$(cat "$MNT"/new/n* | wc -l)" 500 "lines in the new files"
assert_eq "$(cat "$SRC/new/n499")" "new 499" "a new file in the source"

pid_alive "$DAEMON_PID" || fail "the daemon died"
if is_txfsd; then
	fds=$(ls "/proc/$DAEMON_PID/fd" | wc -l)
	echo "# daemon holds $fds descriptors for $NFILES pinned files"
	[ "$fds" -lt "$limit" ] || fail "daemon holds $fds descriptors"
fi

: >"$T/unpin"
wait "$pinner"
txfs_umount

# Opening and closing files leaks no descriptor: with a 64-entry
# descriptor cache, a second pass over 5,000 files leaves the daemon with
# no more descriptors than the first (worker threads, which the first pass
# starts, hold a few each).
# The kernel sends RELEASE asynchronously after close(2), so a count taken
# right after a pass can include files still being released: count once
# the number has stopped changing.
steady_fds() {
	local prev=-1 cur same=0 i
	for i in $(seq 50); do
		cur=$(ls "/proc/$DAEMON_PID/fd" | wc -l)
		if [ "$cur" = "$prev" ]; then
			same=$((same + 1))
			[ "$same" -ge 3 ] && break
		else
			same=0
		fi
		prev=$cur
		sleep 0.1
	done
	echo "$cur"
}

if is_txfsd; then
	want_bytes=$(cat "$SRC"/d0/* | wc -c)
	txfs_mount --fd-cache 64
	base=$(steady_fds)
	for pass in 1 2; do
		(cd "$MNT/d0" && find . -type f -print0 | xargs -0 cat | wc -c) \
			>"$T/bytes"
		assert_eq "$(cat "$T/bytes")" "$want_bytes" "bytes read again"
		fds[$pass]=$(steady_fds)
	done
	echo "# descriptors: $base after mounting," \
		"${fds[1]} and ${fds[2]} after each pass"
	[ "${fds[1]}" -le $((base + 64 + 64)) ] ||
		fail "daemon holds ${fds[1]} descriptors (started with $base)"
	[ "${fds[2]}" -le $((fds[1] + 8)) ] ||
		fail "descriptors grew from ${fds[1]} to ${fds[2]}"
	txfs_umount
fi
