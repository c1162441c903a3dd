#!/bin/bash
# A file system mounted inside the source (a tmpfs at SOURCE/sub) is served
# through the mount like the rest: its files are visible, readable and
# writable, statfs below it reports it, and renames and links between it
# and the source fail with EXDEV as they do outside the mount.
TIMEOUT=60
. "$(dirname "$0")/lib.sh"

mkdir "$SRC/sub"
mount -t tmpfs -o size=16m txfs-test "$SRC/sub"
at_cleanup "umount -l '$SRC/sub' 2>/dev/null"
printf 'on ext4' >"$SRC/a"
printf 'on tmpfs' >"$SRC/sub/b"
mkdir "$SRC/sub/dir"

txfs_mount

assert_content "$MNT/sub/b" 'on tmpfs'
assert_eq "$(ls "$MNT/sub" | tr '\n' ' ')" "b dir " "listing of the submount"
printf 'written' >"$MNT/sub/dir/c"
assert_content "$SRC/sub/dir/c" written
expect_ok rename "$MNT/sub/dir/c" "$MNT/sub/c2"
assert_content "$SRC/sub/c2" written
expect_errno EXDEV rename "$MNT/a" "$MNT/sub/a"
expect_errno EXDEV rename "$MNT/sub/b" "$MNT/b"
expect_errno EXDEV link "$MNT/a" "$MNT/sub/a"
assert_eq "$(stat -f -c '%b %S' "$MNT/sub")" "$(stat -f -c '%b %S' "$SRC/sub")" \
	"statfs below the submount"
assert_eq "$(stat -f -c '%b %S' "$MNT")" "$(stat -f -c '%b %S' "$SRC")" \
	"statfs above the submount"
mv "$MNT/a" "$MNT/sub/a"
assert_content "$SRC/sub/a" 'on ext4'
assert_missing "$SRC/a"
rm -r "$MNT/sub/dir"
assert_missing "$SRC/sub/dir"

txfs_umount
umount "$SRC/sub"
