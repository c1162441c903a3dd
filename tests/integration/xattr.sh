#!/bin/bash
# Extended attributes through the mount: set, get, list and remove in the
# user.* and trusted.* namespaces, XATTR_CREATE/XATTR_REPLACE, ENODATA for
# missing names, size queries and ERANGE, large values, directories and
# symlinks; they land on the source objects.
TIMEOUT=60
. "$(dirname "$0")/lib.sh"

txfs_mount

ops() {
	printf 'x' >f
	mkdir d
	ln -s f sl

	expect_ok setxattr f user.alpha one
	expect_ok setxattr f user.beta two
	expect_ok setxattr f trusted.gamma three
	fsop getxattr f user.alpha
	fsop getxattr f trusted.gamma
	fsop listxattr f
	expect_errno ENODATA getxattr f user.missing
	expect_errno ENODATA removexattr f user.missing

	# Flags.
	expect_errno EEXIST setxattr f user.alpha again create
	expect_ok setxattr f user.alpha replaced replace
	fsop getxattr f user.alpha
	expect_errno ENODATA setxattr f user.new value replace
	expect_ok setxattr f user.new value create
	fsop getxattr f user.new

	# Size queries and too-small buffers.
	fsop getxattr f user.alpha 0
	expect_errno ERANGE getxattr f user.alpha 3
	fsop listxattr f 0
	expect_errno ERANGE listxattr f 4

	# An empty value and a large value.
	expect_ok setxattr f user.empty ''
	fsop getxattr f user.empty 0
	big=$(head -c 3000 /dev/zero | tr '\0' 'v')
	expect_ok setxattr f user.big "$big"
	[ "$(fsop getxattr f user.big)" = "$big" ] ||
		fail "large xattr value differs"
	fsop getxattr f user.big 0

	# Remove.
	expect_ok removexattr f user.beta
	expect_errno ENODATA getxattr f user.beta
	fsop listxattr f

	# Directories; symlinks refuse user.* (EPERM on the link itself),
	# but calls through them reach the target.
	expect_ok setxattr d user.dir yes
	fsop getxattr d user.dir
	expect_errno EPERM setxattr sl user.link no
	setfattr -n user.via -v link sl
	fsop getxattr f user.via

	# Names outside the known namespaces are refused.
	expect_errno EOPNOTSUPP setxattr f bogus.name x

	# getfattr/setfattr as a user would run them.
	setfattr -n user.tool -v 0x0102ff f
	getfattr -e hex -n user.tool f
}

run_both ops

# The attributes are on the source objects, and the mount shows them too.
assert_eq "$(fsop getxattr "$SRC/f" user.alpha)" replaced "source xattr"
assert_eq "$(fsop listxattr "$MNT/f")" "$(fsop listxattr "$SRC/f")" \
	"xattr names through the mount"

txfs_umount
