#!/bin/bash
# On a full file system a transaction fails cleanly with ENOSPC, on copy-up
# and on commit, stays open and consistent (it can be aborted, or retried and
# committed once space is freed), and nothing committed earlier is lost.
TIMEOUT=150
. "$(dirname "$0")/lib.sh"
require_txfsd
require_txctl

# --- a small file system for SOURCE and its state directory ------------------

# SOURCE and SOURCE/.txfs live on a small file system of their own: a
# loop-mounted ext4 image when loop devices work (txfsd then copies on the
# first write, ext4 having no reflink), else a size-limited tmpfs.
# TXFS_SMALL_FS=tmpfs forces the tmpfs.
SMALL=$T/small
mkdir "$SMALL"
FSKIND=
if [ "${TXFS_SMALL_FS:-}" != tmpfs ] && losetup -f >/dev/null 2>&1 &&
	truncate -s 64M "$T/small.img" &&
	mkfs.ext4 -q -F -m 0 -b 4096 "$T/small.img" &&
	mount -o loop "$T/small.img" "$SMALL" 2>"$T/mount.err"; then
	FSKIND="ext4 on a loop device ($(mount_source "$SMALL"))"
elif mount -t tmpfs -o size=32m,mode=755 txfs-enospc "$SMALL"; then
	FSKIND="tmpfs of 32 MiB"
	[ ! -s "$T/mount.err" ] ||
		echo "# the loop mount failed: $(cat "$T/mount.err")"
else
	echo "SKIP: can mount neither a loop-mounted ext4 image nor a tmpfs"
	exit 77
fi
echo "# small file system: $FSKIND"

# Unmounts txfsd first (it holds the small file system open), then the
# small file system; a loop device set up by mount -o loop goes with it.
small_cleanup() {
	if is_fuse_mounted "$MNT"; then
		fusermount3 -u "$MNT" 2>/dev/null || fusermount3 -uz "$MNT"
		[ -z "$DAEMON_PID" ] || wait_gone "$DAEMON_PID" "$MOUNT_WAIT"
	fi
	umount "$SMALL" 2>/dev/null || umount -l "$SMALL"
}
at_cleanup small_cleanup

SRC=$SMALL/src
mkdir -m 755 "$SRC"
export SRC

# avail: bytes free on the small file system (root may use them all: the
# ext4 image has no reserved blocks).
avail() {
	local a s
	read -r a s < <(stat -f -c '%a %S' "$SMALL")
	echo $((a * s))
}

# fill_leaving NAME BYTES: a filler file outside SOURCE that leaves about
# BYTES free.
fill_leaving() {
	local n=$(($(avail) - $2))
	[ "$n" -gt 0 ] || fail "cannot leave $2 bytes free: only $(avail) are"
	fallocate -l "$n" "$SMALL/$1"
}

# fill_all NAME: fills the small file system to its last block.
fill_all() {
	local n=$(($(avail) - 65536))
	if [ "$n" -gt 0 ]; then
		fallocate -l "$n" "$SMALL/$1"
	fi
	# Top up block by block until nothing more fits (again if the file
	# system gives back a reservation once the data is flushed).
	for _ in 1 2 3 4 5; do
		dd if=/dev/zero of="$SMALL/$1.top" bs=4096 oflag=append \
			conv=notrunc status=none 2>/dev/null || true
		sync -f "$SMALL"
		[ "$(avail)" != 0 ] || break
	done
	assert_eq "$(avail)" 0 "bytes free after filling"
}

# check_log LOG: the daemon (which exited 0: txfs_umount checks) reports no
# crash, and every error in its log is about the full disk.
check_log() {
	if grep -E 'Assertion|Sanitizer|runtime error|Segmentation|crit:' \
		"$1" >&2; then
		fail "the daemon log $1 reports a crash"
	fi
	if grep -E '(error|warning):' "$1" |
		grep -Ev 'No space left on device|disk is full' >&2; then
		fail "the daemon log $1 has errors other than ENOSPC"
	fi
}

# --- SOURCE -----------------------------------------------------------------

BIG_MIB=12
head -c "${BIG_MIB}M" /dev/urandom >"$SRC/big"
printf 'keep me\n' >"$SRC/keep.txt"
mkdir "$SRC/many"
for i in $(seq -w 1 80); do
	printf 'old %s\n' "$i" >"$SRC/many/file-$i"
done
printf 'small\n' >"$SRC/small.txt"
cp "$SRC/big" "$REF/big"
txfs_mount

# --- (3, first half) a transaction committed before the disk fills -----------

committed_work() {
	printf 'committed before the disk filled\n' >"$MNT/committed.txt"
	printf 'changed by the first transaction\n' >"$MNT/keep.txt"
}
tx_leader "$T/tx.first" committed_work
wait "$TX_LEADER" || fail "the first transaction's writes failed"
txctl commit "$(cat "$T/tx.first")" >/dev/null
assert_content "$SRC/committed.txt" "committed before the disk filled"
assert_content "$SRC/keep.txt" "changed by the first transaction"
# What SOURCE holds from now on, unless a later transaction commits.
tree_snapshot "$SRC" >"$T/snap.committed"

# --- (1) copy-up does not fit ------------------------------------------------

fill_leaving filler $((4 * 1024 * 1024))
echo "# filled: $(avail) bytes free, $BIG_MIB MiB file to copy up"
[ "$(avail)" -lt $((BIG_MIB * 1024 * 1024)) ] ||
	fail "the filler leaves room for a copy of big"

# A member's first write to big copies it up: that must fail with ENOSPC,
# and the partial copy must not keep the space.
copyup_fails() {
	local before
	before=$(avail)
	expect_errno ENOSPC pwrite "$MNT/big" 4096 NEW
	[ "$(avail)" -ge $((before - 1024 * 1024)) ] ||
		fail "the failed copy-up keeps $((before - $(avail))) bytes"
	# The member still sees the base, and the daemon still answers.
	cmp "$MNT/big" "$REF/big" || fail "the member's big changed"
	assert_content "$MNT/keep.txt" "changed by the first transaction"
}
tx_leader "$T/tx.abort" copyup_fails
wait "$TX_LEADER" || fail "the copy-up did not fail with ENOSPC"
tx=$(cat "$T/tx.abort")
expect_status 0 txctl abort "$tx"
tree_snapshot "$SRC" >"$T/snap.now"
diff -u "$T/snap.committed" "$T/snap.now" >&2 ||
	fail "SOURCE changed after the aborted copy-up"
cmp "$SRC/big" "$REF/big" || fail "big changed after the aborted copy-up"
assert_no_tx_state

# The same failure, then the write is retried once space is freed.
tx_leader "$T/tx.retry" copyup_fails
wait "$TX_LEADER" || fail "the copy-up did not fail with ENOSPC"
tx=$(cat "$T/tx.retry")
rm "$SMALL/filler"
(
	txctl join "$tx" --pid "$BASHPID" >/dev/null &&
		expect_ok pwrite "$MNT/big" 4096 NEW
) || fail "the retried write failed"
printf 'NEW' | dd of="$REF/big" bs=1 seek=4096 conv=notrunc status=none
cmp "$SRC/big" "$REF/big" >/dev/null 2>&1 &&
	fail "SOURCE holds the write before the commit"
expect_status 0 txctl commit "$tx"
cmp "$SRC/big" "$REF/big" || fail "big does not hold the committed write"
assert_no_tx_state
tree_snapshot "$SRC" >"$T/snap.committed"

# --- (2) the commit does not fit ----------------------------------------------

# many_work TAG COUNT: rewrites the first COUNT files in many/ and writes
# many/new-file, each with TAG.  (txfsd flushes a commit of up to 64
# changes file by file, a larger one with one syncfs: both are tried.)
many_work() {
	local i
	for i in $(seq -w 1 "$2"); do
		printf '%s %s\n' "$1" "$i" >"$MNT/many/file-$i"
	done
	printf '%s\n' "$1" >"$MNT/many/new-file"
}

# A transaction whose shadows fit, then a disk full to the last block:
# the commit must fail, and the transaction stay open.
tx_leader "$T/tx.full" many_work full 40
wait "$TX_LEADER" || fail "the writes of the transaction failed"
tx=$(cat "$T/tx.full")
fill_all filler
expect_status 1 txctl commit "$tx"
echo "# txctl commit on a full disk: exit 1: $(cat "$T/err")"
assert_match "$(cat "$T/err")" "No space left on device" "txctl's message"
assert_match "$(cat "$T/err")" "transaction $tx: .*still open" \
	"txctl's message"
# Nothing of it reached SOURCE; the daemon still serves; it is still open.
tree_snapshot "$SRC" >"$T/snap.now"
diff -u "$T/snap.committed" "$T/snap.now" >&2 ||
	fail "SOURCE changed after the failed commit"
stat "$MNT" >/dev/null || fail "cannot stat the mount after the failed commit"
assert_content "$MNT/many/file-01" "old 01"
expect_status 0 txctl status "$tx"
assert_match "$(grep '^state:' "$T/out")" 'open' \
	"state of the transaction after its failed commit"
# A new transaction needs a directory in the state directory: on a full
# disk, begin may fail, but only with ENOSPC and a message saying so.
rc=0
txctl run -- cat "$MNT/small.txt" >"$T/out" 2>"$T/err" || rc=$?
case $rc in
0) assert_content "$T/out" small ;;
1)
	echo "# txctl run on a full disk: exit 1: $(cat "$T/err")"
	assert_match "$(cat "$T/err")" "No space left on device" \
		"txctl run's message on a full disk"
	;;
*) fail "txctl run on a full disk exited with status $rc: $(cat "$T/err")" ;;
esac

# Space freed: another small transaction commits, and so does the first.
rm -f "$SMALL/filler" "$SMALL/filler.top"
small_work() {
	printf 'small tx\n' >"$MNT/small.txt"
}
tx_leader "$T/tx.small" small_work
wait "$TX_LEADER" || fail "the small transaction's write failed"
expect_status 0 txctl commit "$(cat "$T/tx.small")"
assert_content "$SRC/small.txt" "small tx"
expect_status 0 txctl commit "$tx"
assert_content "$SRC/many/file-01" "full 01"
assert_content "$SRC/many/file-40" "full 40"
assert_content "$SRC/many/file-41" "old 41"
assert_content "$SRC/many/new-file" full
assert_no_tx_state
tree_snapshot "$SRC" >"$T/snap.committed"

# A commit that fails on a full disk can also be aborted.
tx_leader "$T/tx.full2" many_work aborted 80
wait "$TX_LEADER" || fail "the writes of the transaction failed"
tx=$(cat "$T/tx.full2")
fill_all filler
expect_status 1 txctl commit "$tx"
assert_match "$(cat "$T/err")" "No space left on device" "txctl's message"
expect_status 0 txctl abort "$tx"
rm -f "$SMALL/filler" "$SMALL/filler.top"
tree_snapshot "$SRC" >"$T/snap.now"
diff -u "$T/snap.committed" "$T/snap.now" >&2 ||
	fail "SOURCE changed after the failed and aborted commit"
assert_no_tx_state

# --- (3, second half) everything committed survives a remount ----------------

assert_content "$SRC/committed.txt" "committed before the disk filled"
txfs_umount
check_log "$DAEMON_LOG"
txfs_mount
tree_snapshot "$SRC" >"$T/snap.now"
diff -u "$T/snap.committed" "$T/snap.now" >&2 ||
	fail "SOURCE changed across the remount"
tree_compare "$SRC" "$MNT"
assert_content "$MNT/committed.txt" "committed before the disk filled"
assert_content "$MNT/keep.txt" "changed by the first transaction"
cmp "$MNT/big" "$REF/big" || fail "big changed across the remount"
assert_no_tx_state
txfs_umount
check_log "$DAEMON_LOG"
