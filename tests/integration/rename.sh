#!/bin/bash
# rename(2) and renameat2(2) through the mount: plain, over an existing
# file, directories (empty, non-empty, into themselves), across
# directories, RENAME_NOREPLACE and RENAME_EXCHANGE for files and
# directories, hard-linked names, and that objects keep their identity:
# open descriptors and working directories follow a renamed directory.
TIMEOUT=60
. "$(dirname "$0")/lib.sh"

txfs_mount

ops() {
	mkdir -p a/sub b e
	printf 'one' >a/f1
	printf 'two' >a/f2
	printf 'sub' >a/sub/s

	# Plain, and over an existing target (its old content is gone).
	expect_ok rename a/f1 a/g1
	assert_missing a/f1
	assert_content a/g1 one
	printf 'victim' >a/v
	ln a/v a/v.link
	expect_ok rename a/f2 a/v
	assert_content a/v two
	assert_content a/v.link victim
	stat -c 'v.link nlink %h' a/v.link

	# Across directories.
	expect_ok rename a/g1 b/g1
	assert_content b/g1 one
	assert_missing a/g1

	# Directories: plain, across, over an empty one, not over a full one.
	expect_ok rename a/sub a/sub2
	assert_content a/sub2/s sub
	expect_ok rename a/sub2 b/sub
	assert_content b/sub/s sub
	mkdir b/empty
	expect_ok rename b/sub b/empty
	assert_content b/empty/s sub
	mkdir b/full
	printf 'x' >b/full/x
	expect_errno 'ENOTEMPTY|EEXIST' rename b/empty b/full
	expect_errno EISDIR rename a/v b/full
	expect_errno ENOTDIR rename b/full a/v
	expect_errno EINVAL rename b b/full/inside
	expect_errno ENOENT rename a/none a/other
	expect_errno ENOENT rename a/v nodir/v

	# Renaming a name onto itself, or onto another link of the same
	# inode, changes nothing.
	expect_ok rename a/v a/v
	ln a/v a/v2
	expect_ok rename a/v a/v2
	assert_content a/v two
	assert_content a/v2 two
	stat -c 'v nlink %h' a/v

	# RENAME_NOREPLACE.
	printf 'keep' >e/k
	printf 'new' >e/n
	expect_errno EEXIST rename2 e/n e/k noreplace
	assert_content e/k keep
	assert_content e/n new
	expect_ok rename2 e/n e/m noreplace
	assert_missing e/n
	assert_content e/m new

	# RENAME_EXCHANGE: files, directories, a file with a directory.
	expect_ok rename2 e/k e/m exchange
	assert_content e/k new
	assert_content e/m keep
	mkdir -p e/d1 e/d2
	printf '1' >e/d1/in1
	printf '2' >e/d2/in2
	expect_ok rename2 e/d1 e/d2 exchange
	assert_content e/d1/in2 2
	assert_content e/d2/in1 1
	expect_ok rename2 e/k e/d1 exchange
	assert_content e/d1 new
	assert_content e/k/in2 2
	expect_ok rename2 e/k b/g1 exchange
	assert_content e/k one
	assert_content b/g1/in2 2
	expect_errno ENOENT rename2 e/m e/none exchange
}

run_both ops

# Identity follows renames: a descriptor opened before keeps working and a
# process whose working directory is inside a renamed directory creates
# its files in the renamed place.
mkdir -p "$MNT/top/mid/low"
printf 'old' >"$MNT/top/mid/low/file"
exec 7<"$MNT/top/mid/low/file"
(
	cd "$MNT/top/mid"
	mv "$MNT/top" "$MNT/moved"
	printf 'made after the rename' >low/new
	[ "$(cat low/file)" = old ] || fail "relative read after rename"
	[ "$(pwd -P)" = "$MNT/moved/mid" ] ||
		fail "working directory is $(pwd -P), not $MNT/moved/mid"
)
assert_eq "$(cat <&7)" old "read through a descriptor opened before rename"
exec 7<&-
assert_content "$SRC/moved/mid/low/new" "made after the rename"
assert_content "$MNT/moved/mid/low/new" "made after the rename"
assert_missing "$SRC/top"
assert_missing "$MNT/top"

# A name renamed away and recreated is a new object.
printf 'first' >"$MNT/cycle"
exec 7<"$MNT/cycle"
mv "$MNT/cycle" "$MNT/cycle.old"
printf 'second' >"$MNT/cycle"
assert_eq "$(cat <&7)" first "descriptor on the renamed object"
exec 7<&-
assert_content "$MNT/cycle" second
assert_content "$MNT/cycle.old" first

txfs_umount
