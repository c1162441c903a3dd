#!/bin/bash
# Mounting in place (SOURCE == MOUNTPOINT): the files already in the
# directory are visible through the mount, changes made through it go to
# the covered directory at once (seen through a descriptor opened before
# the mount) and are there after unmounting; the state directory is in the
# covered directory but not visible through the mount.
TIMEOUT=60
. "$(dirname "$0")/lib.sh"

D=$T/inplace
mkdir -p "$D/dir"
printf 'pre-existing' >"$D/pre"
printf 'nested' >"$D/dir/nested"
ln -s pre "$D/link"
setfattr -n user.kept -v yes "$D/pre"
cp -a "$D" "$REF/inplace"
exec 7<"$D"
at_cleanup 'exec 7<&-'

txfs_mount_at "$D" "$D"

# What was there is visible, unchanged.
tree_compare "$REF/inplace" "$D"
if is_txfsd; then
	ls -a "$D" | grep -qx .txfs && fail ".txfs is listed through the mount"
	expect_errno ENOENT lstat "$D/.txfs"
fi

# Changes through the mount reach the covered directory immediately.
printf ' and more' >>"$D/pre"
printf 'new' >"$D/new"
rm "$D/dir/nested"
mkdir "$D/made"
mv "$D/link" "$D/link2"
assert_content /proc/self/fd/7/new new
assert_content /proc/self/fd/7/pre 'pre-existing and more'
assert_missing /proc/self/fd/7/dir/nested
[ -d /proc/self/fd/7/made ] || fail "made is not in the covered directory"
assert_eq "$(readlink /proc/self/fd/7/link2)" pre "moved symlink"

txfs_umount "$D"

# After unmounting, the directory holds the changes and the state directory.
assert_content "$D/pre" 'pre-existing and more'
assert_content "$D/new" new
assert_missing "$D/dir/nested"
[ -d "$D/made" ] || fail "made is missing after unmount"
assert_eq "$(getfattr --only-values -n user.kept "$D/pre")" yes "xattr kept"
if is_txfsd; then
	[ -d "$D/.txfs" ] || fail "no state directory $D/.txfs"
fi
