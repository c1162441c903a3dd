#!/bin/bash
# Hard links and symlinks through the mount.  Hard links: link counts seen
# through every name, one inode number for all names, content shared,
# unlinking one name keeps the others, EEXIST/EPERM errors.  Symlinks:
# relative, absolute, dangling, looping and long targets; readlink, lstat
# and following them.
TIMEOUT=60
. "$(dirname "$0")/lib.sh"

txfs_mount

ops() {
	mkdir -p dir/sub
	printf 'shared' >h1

	# Hard links.
	expect_ok link h1 h2
	expect_ok link h1 dir/sub/h3
	stat -c '%n nlink %h' h1 h2 dir/sub/h3
	[ "$(stat -c %i h1)" = "$(stat -c %i h2)" ] &&
		[ "$(stat -c %i h1)" = "$(stat -c %i dir/sub/h3)" ] ||
		fail "hard links report different inode numbers"
	printf ' more' >>h2
	assert_content h1 'shared more'
	assert_content dir/sub/h3 'shared more'
	expect_ok unlink h1
	stat -c '%n nlink %h' h2 dir/sub/h3
	assert_content h2 'shared more'
	expect_errno EEXIST link h2 dir/sub/h3
	expect_errno EPERM link dir dir2
	expect_errno ENOENT link missing x
	expect_errno ENOENT link h2 nodir/x

	# Symlinks: relative, absolute, dangling, into a directory.
	expect_ok symlink h2 rel
	expect_ok symlink ../../h2 dir/sub/up
	expect_ok symlink /etc/hostname abs
	expect_ok symlink does-not-exist dangling
	expect_ok symlink dir/sub dirlink
	fsop readlink rel
	fsop readlink dir/sub/up
	fsop readlink abs
	fsop readlink dangling
	assert_content rel 'shared more'
	assert_content dir/sub/up 'shared more'
	[ "$(cat abs)" = "$(cat /etc/hostname)" ] ||
		fail "absolute symlink does not reach /etc/hostname"
	expect_errno ENOENT open dangling rdonly
	fsop lstat dangling
	ls dirlink/
	expect_errno EINVAL readlink h2
	expect_errno EEXIST symlink x rel

	# Loops, and the longest target a symlink may have.
	expect_ok symlink loop2 loop1
	expect_ok symlink loop1 loop2
	expect_errno ELOOP open loop1 rdonly
	long=$(printf 'x%.0s' $(seq 1 4095))
	expect_ok symlink "$long" longlink
	[ "$(fsop readlink longlink)" = "$long" ] ||
		fail "4095-byte symlink target differs"
	stat -c 'longlink size %s' longlink

	# A hard link to a symlink is a second name of the link itself.
	ln -P rel rel.hard
	fsop readlink rel.hard
	stat -c '%n nlink %h' rel rel.hard

	# Writing through a symlink reaches the target; removing the
	# symlink leaves the target alone.
	printf ' end' >>rel
	assert_content h2 'shared more end'
	rm rel
	assert_content h2 'shared more end'
}

run_both ops

# Through the mount, all names of a hard link report one inode number
# and the link count of the source.
assert_eq "$(stat -c %h "$MNT/h2")" "$(stat -c %h "$SRC/h2")" "link count"

txfs_umount
