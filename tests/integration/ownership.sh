#!/bin/bash
# Objects an unprivileged user creates through the mount (files, O_EXCL
# files, directories, symlinks, fifos, hard links' targets) belong to that
# user and group in the source, as on a plain file system, and the owner
# may change their attributes; a set-group-id directory passes its group
# on; the creating user's umask applies.
TIMEOUT=60
. "$(dirname "$0")/lib.sh"

cp "$FSOP" "$T/fsop"
chmod 755 "$T/fsop"
FSOP=$T/fsop
nobody_uid=$(id -u nobody)
nogroup_gid=$(getent group nogroup | cut -d: -f3)

txfs_mount -o allow_other,default_permissions

mkdir "$MNT/tmp" "$MNT/sgid"
chmod 1777 "$MNT/tmp"
chown 0:4242 "$MNT/sgid"
chmod 2777 "$MNT/sgid"

export FSOP_AS_NOBODY=1
expect_ok open "$MNT/tmp/file" wronly,creat 0640
expect_ok open "$MNT/tmp/excl" wronly,creat,excl 0600
expect_ok mkdir "$MNT/tmp/dir" 0750
expect_ok symlink file "$MNT/tmp/link"
expect_ok mknod "$MNT/tmp/fifo" fifo 0644
expect_ok link "$MNT/tmp/file" "$MNT/tmp/file.hard"
expect_ok open "$MNT/sgid/file" wronly,creat 0644
expect_ok mkdir "$MNT/sgid/dir" 0755

# The owner may change the attributes of what it created.
expect_ok chmod "$MNT/tmp/file" 0604
expect_ok truncate "$MNT/tmp/file" 3
expect_ok utimens "$MNT/tmp/file" 100 200
expect_ok setxattr "$MNT/tmp/file" user.mine yes
expect_ok lchown "$MNT/tmp/file" -1 -1
expect_errno EPERM lchown "$MNT/tmp/file" 0 -1
unset FSOP_AS_NOBODY
as_nobody sh -c "umask 077 && echo x > '$MNT/tmp/umasked'"
assert_eq "$(stat -c '%a %s %Y' "$SRC/tmp/file")" "604 3 200" \
	"attributes nobody set on its file"
chmod 0640 "$SRC/tmp/file"

owner() {
	stat -c '%u:%g' "$1"
}
for n in file excl dir link fifo file.hard umasked; do
	assert_eq "$(owner "$SRC/tmp/$n")" "$nobody_uid:$nogroup_gid" \
		"owner of $n in the source"
	assert_eq "$(owner "$MNT/tmp/$n")" "$nobody_uid:$nogroup_gid" \
		"owner of $n through the mount"
done
assert_eq "$(stat -c %a "$SRC/tmp/file")" 640 "mode of a new file"
assert_eq "$(stat -c %a "$SRC/tmp/dir")" 750 "mode of a new directory"
assert_eq "$(stat -c %a "$SRC/tmp/umasked")" 600 "mode under umask 077"

# The set-group-id directory gives new objects its group, and new
# directories inherit the bit.
assert_eq "$(owner "$SRC/sgid/file")" "$nobody_uid:4242" "group from sgid dir"
assert_eq "$(owner "$SRC/sgid/dir")" "$nobody_uid:4242" \
	"group of a directory in an sgid dir"
assert_eq "$(stat -c %a "$SRC/sgid/dir")" 2755 "sgid bit inherited"

# Root still creates root-owned objects.
printf 'r' >"$MNT/tmp/rootmade"
assert_eq "$(owner "$SRC/tmp/rootmade")" 0:0 "owner of root's new file"

txfs_umount
