#!/bin/bash
# The state directory SOURCE/.txfs is invisible and unreachable through the
# mount: not listed, lookups fail with ENOENT, and it cannot be created,
# renamed onto, renamed away, removed or linked into; nothing changes in the
# source when that is tried.  A .txfs below the root is an ordinary name.
# With --state-dir elsewhere on the same file system, SOURCE/.txfs is not
# created.
TIMEOUT=60
. "$(dirname "$0")/lib.sh"
require_txfsd

printf 'x' >"$SRC/file"
mkdir "$SRC/sub"
txfs_mount

[ -d "$SRC/.txfs" ] || fail "txfsd did not create $SRC/.txfs"
ino=$(stat -c %i "$SRC/.txfs")
tree_snapshot "$SRC" >"$T/before"

assert_eq "$(ls -a "$MNT" | tr '\n' ' ')" ". .. file sub " "ls -a of the mount"
ls -a "$SRC" | grep -qx .txfs || fail "ls -a of the source lacks .txfs"
assert_eq "$(find "$MNT" -name .txfs)" "" "find through the mount"
assert_eq "$(fsop dirseek "$MNT")" 4 "entries read by readdir"

# With many entries around it, hiding .txfs keeps listings exact and
# seekdir/telldir consistent.
(cd "$SRC" && touch $(seq -f 'pad%04g' 1 600))
assert_eq "$(fsop dirseek "$MNT")" 604 "entries of a large root"
assert_eq "$(ls -A "$MNT" | LC_ALL=C sort)" \
	"$(ls -A "$SRC" | grep -vx .txfs | LC_ALL=C sort)" "large root listing"
(cd "$SRC" && rm pad*)

# Lookups.
expect_errno ENOENT lstat "$MNT/.txfs"
expect_errno ENOENT lstat "$MNT/sub/../.txfs"
expect_errno ENOENT lstat "$MNT/./.txfs"
expect_errno ENOENT open "$MNT/.txfs" rdonly
expect_errno ENOENT open "$MNT/.txfs" rdonly,directory
expect_errno ENOENT open "$MNT/.txfs" path
expect_errno ENOENT open "$MNT/.txfs/anything" rdonly
expect_errno ENOENT access "$MNT/.txfs" f
expect_errno ENOENT getxattr "$MNT/.txfs" user.x
expect_errno ENOENT readlink "$MNT/.txfs"
assert_fails ls "$MNT/.txfs"

# Creation in every form.
expect_errno 'EPERM|EEXIST' mkdir "$MNT/.txfs"
expect_errno 'EPERM|EEXIST' open "$MNT/.txfs" wronly,creat
expect_errno 'EPERM|EEXIST' open "$MNT/.txfs" wronly,creat,excl
expect_errno 'EPERM|EEXIST' symlink file "$MNT/.txfs"
expect_errno 'EPERM|EEXIST' mknod "$MNT/.txfs" fifo
expect_errno 'EPERM|EEXIST' mknod "$MNT/.txfs" sock
expect_errno 'EPERM|EEXIST' link "$MNT/file" "$MNT/.txfs"

# Renames onto it, of it, and exchanges with it.
expect_errno 'EPERM|EEXIST' rename "$MNT/file" "$MNT/.txfs"
expect_errno 'EPERM|EEXIST' rename "$MNT/sub" "$MNT/.txfs"
expect_errno 'EPERM|EEXIST' rename2 "$MNT/file" "$MNT/.txfs" noreplace
expect_errno 'EPERM|EEXIST|ENOENT' rename2 "$MNT/file" "$MNT/.txfs" exchange
expect_errno 'EPERM|EEXIST|ENOENT' rename2 "$MNT/sub" "$MNT/.txfs" exchange
expect_errno ENOENT rename "$MNT/.txfs" "$MNT/stolen"
expect_errno ENOENT rename "$MNT/.txfs" "$MNT/sub/stolen"

# Removal, and reaching into it.
expect_errno ENOENT rmdir "$MNT/.txfs"
expect_errno ENOENT unlink "$MNT/.txfs"
expect_errno ENOENT open "$MNT/.txfs/new" wronly,creat
expect_errno ENOENT mkdir "$MNT/.txfs/newdir"
expect_errno ENOENT link "$MNT/file" "$MNT/.txfs/file"
expect_errno ENOENT rename "$MNT/file" "$MNT/.txfs/file"
expect_errno ENOENT symlink x "$MNT/.txfs/link"

# Nothing changed in the source.
[ -d "$SRC/.txfs" ] || fail "$SRC/.txfs is no longer a directory"
assert_eq "$(stat -c %i "$SRC/.txfs")" "$ino" "inode of $SRC/.txfs"
tree_snapshot "$SRC" >"$T/after"
diff -u "$T/before" "$T/after" || fail "the source changed"
for n in new newdir file link stolen anything; do
	assert_missing "$SRC/.txfs/$n"
done
assert_missing "$SRC/stolen"
assert_content "$MNT/file" x

# The name is ordinary below the root.
expect_ok mkdir "$MNT/sub/.txfs"
[ -d "$SRC/sub/.txfs" ] || fail "sub/.txfs not created in the source"
ls -a "$MNT/sub" | grep -qx .txfs || fail "sub/.txfs not listed"
expect_ok rmdir "$MNT/sub/.txfs"

txfs_umount
[ -d "$SRC/.txfs" ] || fail "$SRC/.txfs vanished after unmount"

# --state-dir elsewhere on the same file system.
mkdir "$T/src2" "$T/mnt2" "$T/state"
printf 'two' >"$T/src2/file"
txfs_mount_at "$T/src2" "$T/mnt2" --state-dir "$T/state"
assert_content "$T/mnt2/file" two
printf 'written' >"$T/mnt2/new"
assert_content "$T/src2/new" written
assert_missing "$T/src2/.txfs"
[ -d "$T/state" ] || fail "the state directory is gone"
txfs_umount "$T/mnt2"
assert_missing "$T/src2/.txfs"
