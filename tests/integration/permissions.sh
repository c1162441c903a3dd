#!/bin/bash
# Permission checks for an unprivileged user through a mount made with
# -o allow_other,default_permissions: nobody reads a 0644 root file but
# cannot write it, cannot read a 0600 one, cannot create in a 0755 root
# directory, can create in a 1777 one but cannot remove or rename root's
# file there, and cannot chmod, chown or set times on root's files; a
# write by nobody clears the set-user-id bit.  allow_other without
# default_permissions enforces the same permission bits, and without
# allow_other the user cannot reach the mount at all.
TIMEOUT=60
. "$(dirname "$0")/lib.sh"

# The helper must be reachable by nobody.
cp "$FSOP" "$T/fsop"
chmod 755 "$T/fsop"
FSOP=$T/fsop

txfs_mount -o allow_other,default_permissions

printf 'public' >"$MNT/pub"
chmod 0644 "$MNT/pub"
printf 'secret' >"$MNT/priv"
chmod 0600 "$MNT/priv"
mkdir -m 0755 "$MNT/rootdir"
mkdir "$MNT/tmp"
chmod 1777 "$MNT/tmp"
printf 'root' >"$MNT/tmp/rootfile"
chmod 0666 "$MNT/tmp/rootfile"
printf 'group' >"$MNT/grp-read"
chown 0:nogroup "$MNT/grp-read"
chmod 0640 "$MNT/grp-read"
printf 'other' >"$MNT/grp-denied"
chown 0:nogroup "$MNT/grp-denied"
chmod 0604 "$MNT/grp-denied"

as_nobody test -r "$MNT/pub" || fail "nobody cannot reach the mount"
assert_eq "$(as_nobody cat "$MNT/pub")" public "nobody reading pub"

export FSOP_AS_NOBODY=1
expect_ok open "$MNT/pub" rdonly
expect_errno EACCES open "$MNT/pub" wronly
expect_errno EACCES open "$MNT/pub" rdwr
expect_errno EACCES truncate "$MNT/pub" 0
expect_errno EACCES open "$MNT/priv" rdonly
expect_errno EACCES access "$MNT/priv" r
expect_ok access "$MNT/pub" r
expect_errno EACCES access "$MNT/pub" w
expect_errno EACCES open "$MNT/rootdir/new" wronly,creat
expect_errno EACCES mkdir "$MNT/rootdir/newdir"
expect_errno EACCES symlink x "$MNT/rootdir/newlink"
expect_errno EACCES mknod "$MNT/rootdir/fifo" fifo
expect_errno EACCES rename "$MNT/pub" "$MNT/rootdir/pub"
expect_errno EACCES unlink "$MNT/pub"

# The group class decides for a member of the file's group, even when the
# other class would allow more.
expect_ok open "$MNT/grp-read" rdonly
expect_errno EACCES open "$MNT/grp-denied" rdonly

# A sticky, world-writable directory.
expect_ok open "$MNT/tmp/mine" wronly,creat 0644
expect_ok mkdir "$MNT/tmp/mydir"
expect_ok write "$MNT/tmp/rootfile" wronly "changed"
expect_errno EPERM unlink "$MNT/tmp/rootfile"
expect_errno EPERM rename "$MNT/tmp/rootfile" "$MNT/tmp/stolen"
expect_ok rename "$MNT/tmp/mine" "$MNT/tmp/mine2"
expect_ok unlink "$MNT/tmp/mine2"
expect_ok rmdir "$MNT/tmp/mydir"

# Attributes of someone else's file.
expect_errno EPERM chmod "$MNT/pub" 0666
expect_errno EPERM lchown "$MNT/pub" 65534 65534
expect_errno EPERM utimens "$MNT/pub" 100 100
expect_errno EACCES utimens "$MNT/pub" now now
expect_errno EACCES setxattr "$MNT/pub" user.x y
expect_ok utimens "$MNT/tmp/rootfile" now now

# A write by someone else clears the set-user-id bit.
unset FSOP_AS_NOBODY
printf 'suid' >"$MNT/tmp/suid"
chmod 4777 "$MNT/tmp/suid"
FSOP_AS_NOBODY=1 expect_ok write "$MNT/tmp/suid" wronly,append "!"
assert_eq "$(stat -c %a "$SRC/tmp/suid")" 777 "mode after a write by nobody"
assert_content "$SRC/tmp/suid" 'suid!'

# Nothing the refused calls asked for happened in the source.
assert_content "$SRC/pub" public
assert_content "$SRC/tmp/rootfile" changed
assert_eq "$(stat -c '%a %u' "$SRC/pub")" "644 0" "pub after refused calls"
assert_eq "$(ls -A "$SRC/rootdir")" "" "root directory after refused calls"
assert_missing "$SRC/tmp/stolen"

txfs_umount

# allow_other alone must not let users bypass the permission bits.
txfs_mount -o allow_other
FSOP_AS_NOBODY=1 expect_errno EACCES open "$MNT/priv" rdonly
FSOP_AS_NOBODY=1 expect_errno EACCES open "$MNT/pub" wronly
FSOP_AS_NOBODY=1 expect_errno EACCES open "$MNT/rootdir/new" wronly,creat
FSOP_AS_NOBODY=1 expect_errno EPERM chmod "$MNT/pub" 0666
assert_eq "$(as_nobody cat "$MNT/pub")" public "nobody reading pub"
txfs_umount

# Without allow_other, only the mounting user gets in.
txfs_mount
assert_content "$MNT/pub" public
FSOP_AS_NOBODY=1 expect_errno EACCES lstat "$MNT"
FSOP_AS_NOBODY=1 expect_errno EACCES lstat "$MNT/pub"
assert_fails as_nobody ls "$MNT"
assert_fails as_nobody cat "$MNT/pub"
txfs_umount
