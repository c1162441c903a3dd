#!/bin/bash
# Abort leaves no trace: after a transaction changed data, sizes, modes,
# owners, times, xattrs and allocations of several files and was aborted,
# the source is identical down to inode numbers, times and xattrs and the
# state directory holds nothing of it; the same changes committed are
# exactly what the source holds afterwards.
TIMEOUT=90
. "$(dirname "$0")/lib.sh"
require_txfsd
require_txctl

BASE_TIME=1100000000
export TZ=UTC0 # for the times stat -c %y prints

# make_base DIR: the files the transactions change, and one they do not.
make_base() {
	(
		cd "$1"
		seq 1 2000 >data.txt
		seq 1 3000 >trunc.txt
		printf 'short' >grow.txt
		printf 'mode' >mode.txt
		chmod 0640 mode.txt
		printf 'owner' >owner.txt
		printf 'times' >times.txt
		printf 'xattrs' >xattr.txt
		setfattr -n user.keep -v one xattr.txt
		setfattr -n user.gone -v two xattr.txt
		head -c 65536 /dev/zero | tr '\0' f >falloc.bin
		printf 'many' >multi.txt
		setfattr -n user.multi -v base multi.txt
		mkdir sub
		seq 1 500 >sub/deep.txt
		printf 'untouched' >untouched.txt
		find . -exec touch -h -d "@$BASE_TIME" {} +
	)
}

# changes: the transaction's work, on relative paths.
changes() {
	# Data: overwrite in the middle, then append.
	printf 'XYZ' | dd of=data.txt bs=1 seek=100 conv=notrunc status=none
	echo appended >>data.txt
	# Sizes: shrink one file, grow another with a hole.
	truncate -s 100 trunc.txt
	truncate -s 50000 grow.txt
	# Metadata only.
	chmod 4751 mode.txt
	chown nobody:nogroup owner.txt
	touch -m -d @1234567890.123456789 times.txt
	touch -a -d @1234500000 times.txt
	setfattr -n user.new -v three xattr.txt
	setfattr -n user.keep -v changed xattr.txt
	setfattr -x user.gone xattr.txt
	# Allocation: extend, punch a hole, zero a range.
	"$FSOP" fallocate falloc.bin 0 65536 65536 >/dev/null
	"$FSOP" fallocate falloc.bin punch,keep 4096 8192 >/dev/null
	"$FSOP" fallocate falloc.bin zero 20000 1000 >/dev/null
	# Everything on one file, and a file in a subdirectory.
	printf 'MANY' | dd of=multi.txt conv=notrunc status=none
	chmod 0600 multi.txt
	chown nobody:nogroup multi.txt
	setfattr -n user.multi -v changed multi.txt
	setfattr -n user.added -v yes multi.txt
	touch -m -d @1200000000 multi.txt
	echo more >>sub/deep.txt
	chmod 0700 sub/deep.txt
}

# listing DIR: everything about every entry below DIR (the state directory
# left out): a find listing with inode, mode, owner, size, blocks, links
# and times, content hashes and all extended attributes.
listing() {
	(
		cd "$1"
		find . -path ./.txfs -prune -o -printf '%p %y ino=%i mode=%m' \
			-printf ' uid=%U gid=%G size=%s blocks=%b nlink=%n' \
			-printf ' mtime=%T@ ctime=%C@\n' | LC_ALL=C sort
		find . -path ./.txfs -prune -o -type f -print0 |
			LC_ALL=C sort -z | xargs -0 sha256sum --
		find . -path ./.txfs -prune -o -print0 | LC_ALL=C sort -z |
			xargs -0 getfattr -h -d -m - -e hex \
				--absolute-names -- 2>/dev/null
	)
}

# assert_listing DIR SAVED WHAT: DIR's listing equals the SAVED one.
assert_listing() {
	listing "$1" >"$T/listing.now"
	if ! diff -u "$2" "$T/listing.now" >&2; then
		fail "$3: $1 is not as before the transaction"
	fi
}

# member_changes: runs in the transaction; checks the changes are visible
# to the member exactly as on the plain reference directory.
member_changes() {
	cd "$MNT"
	changes
	# (Before the snapshot reads the file: relatime would update it.)
	assert_eq "$(stat -c %X times.txt)" 1234500000 \
		"member: atime of times.txt"
	tree_snapshot "$MNT" >"$T/snap.member"
	if ! diff -u "$T/snap.ref" "$T/snap.member" >&2; then
		fail "the member's view differs from the changed reference"
	fi
	assert_eq "$(stat -c '%Y %y' times.txt)" \
		"1234567890 2009-02-13 23:31:30.123456789 +0000" \
		"member: mtime of times.txt"
}

make_base "$SRC"
make_base "$REF"
(cd "$REF" && changes)
tree_snapshot "$REF" >"$T/snap.ref"
txfs_mount
listing "$SRC" >"$T/listing.src"
listing "$MNT" >"$T/listing.mnt"
echo "# source listing: $(sha256sum <"$T/listing.src" | cut -c 1-16)…," \
	"$(wc -l <"$T/listing.src") lines"

# --- abort ------------------------------------------------------------------

tx_leader "$T/txid" member_changes
wait "$TX_LEADER" || fail "the member's changes failed"
tx=$(cat "$T/txid")
txctl status "$tx" >"$T/status"
cat "$T/status"
[ -d "$SRC/.txfs/tx-$tx" ] ||
	echo "# note: no $SRC/.txfs/tx-$tx while the transaction is open"

# While it is open, nothing of it shows outside, in the mount or the source.
assert_listing "$SRC" "$T/listing.src" "source, transaction open"
assert_listing "$MNT" "$T/listing.mnt" "mount, transaction open"

txctl abort "$tx"
assert_listing "$SRC" "$T/listing.src" "source after abort"
assert_listing "$MNT" "$T/listing.mnt" "mount after abort"
assert_no_tx_state
expect_status 4 txctl status "$tx"

# --- the same changes, committed --------------------------------------------

tx_leader "$T/txid2" member_changes
wait "$TX_LEADER" || fail "the member's changes failed (second time)"
tx=$(cat "$T/txid2")
txctl commit "$tx"
tree_compare "$REF" "$SRC"
tree_compare "$REF" "$MNT"
assert_no_tx_state
for d in "$SRC" "$MNT"; do
	assert_eq "$(stat -c %Y "$d/times.txt")" 1234567890 \
		"mtime of $d/times.txt"
	assert_eq "$(stat -c %y "$d/times.txt")" \
		"2009-02-13 23:31:30.123456789 +0000" "mtime of $d/times.txt"
	assert_eq "$(stat -c %Y "$d/multi.txt")" 1200000000 \
		"mtime of $d/multi.txt"
	for f in data.txt trunc.txt grow.txt falloc.bin sub/deep.txt; do
		(($(stat -c %Y "$d/$f") > BASE_TIME)) ||
			fail "the commit left the mtime of $d/$f unchanged"
	done
	for f in mode.txt owner.txt xattr.txt untouched.txt; do
		assert_eq "$(stat -c %Y "$d/$f")" "$BASE_TIME" "mtime of $d/$f"
	done
done
# What no transaction touched is untouched, down to the inode.  (Not the
# directories: publishing a file by rename(2) updates its directory's
# mtime, as a rename of a new version into place would.)
grep -E '^\./untouched\.txt ' "$T/listing.src" >"$T/untouched.before"
listing "$SRC" | grep -E '^\./untouched\.txt ' >"$T/untouched.after"
diff -u "$T/untouched.before" "$T/untouched.after" >&2 ||
	fail "the commit changed what the transaction did not touch"

txfs_umount
