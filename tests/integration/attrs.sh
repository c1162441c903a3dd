#!/bin/bash
# getattr and setattr through the mount: chmod (including the set-id and
# sticky bits), chown and lchown (which clears set-id bits), truncate and
# ftruncate, and utimensat with explicit times, UTIME_NOW and UTIME_OMIT,
# on files, directories and symlinks, as on a plain directory.
TIMEOUT=60
. "$(dirname "$0")/lib.sh"

txfs_mount

ops() {
	local before after

	printf 'data' >f
	mkdir d
	ln -s f sl

	# chmod.
	chmod 0600 f
	fsop lstat f
	chmod 4755 f
	fsop lstat f
	chmod 2755 f
	fsop lstat f
	chmod 1777 d
	fsop lstat d
	chmod 0 d
	fsop lstat d
	chmod 0755 d
	expect_ok chmod sl 0640
	fsop lstat f
	fsop lstat sl

	# chown of a set-id file clears the set-id bits.
	chmod 6755 f
	chown 1234:5678 f
	fsop lstat f
	chown 0:0 d
	chown 42:43 d
	fsop lstat d
	# chown -h changes the link itself; plain chown follows it.
	chown -h 7:8 sl
	fsop lstat sl
	fsop lstat f
	chown 9:10 sl
	fsop lstat sl
	fsop lstat f
	expect_ok lchown f -1 77
	fsop lstat f

	# Truncate up (zero-filled) and down, by path and by descriptor.
	chmod 0644 f
	truncate -s 10 f
	od -An -c f
	truncate -s 2 f
	assert_content f da
	expect_ok truncate f 0
	stat -c 'size %s' f
	printf '0123456789' >f
	expect_ok truncate f 4
	assert_content f 0123
	expect_errno EISDIR truncate d 0
	expect_errno EINVAL truncate f -1
	printf 'abcdef' >g
	exec 5<>g
	truncate -s 3 /proc/self/fd/5
	exec 5>&-
	assert_content g abc

	# Explicit times with nanoseconds; UTIME_OMIT keeps a time.
	expect_ok utimens f 1000000000.123456789 1200000000.5
	stat -c 'times %.9X %.9Y' f
	expect_ok utimens f omit 1300000000
	stat -c 'times %.9X %.9Y' f
	expect_ok utimens f 1400000000 omit
	stat -c 'times %.9X %.9Y' f
	expect_ok utimens d 1500000000.000000001 1500000000.999999999
	stat -c 'times %.9X %.9Y' d

	# UTIME_NOW sets the current time, leaving the omitted one.
	before=$(date +%s)
	expect_ok utimens f now omit
	after=$(date +%s)
	[ "$(stat -c %X f)" -ge "$before" ] && [ "$(stat -c %X f)" -le "$after" ] ||
		fail "UTIME_NOW atime $(stat -c %X f) not in [$before, $after]"
	stat -c 'mtime %.9Y' f
	expect_ok utimens f 1600000000 1600000000
	before=$(date +%s)
	expect_ok utimens f omit now
	after=$(date +%s)
	[ "$(stat -c %Y f)" -ge "$before" ] && [ "$(stat -c %Y f)" -le "$after" ] ||
		fail "UTIME_NOW mtime $(stat -c %Y f) not in [$before, $after]"
	stat -c 'atime %.9X' f

	# Times on a symlink itself, and through it.
	expect_ok utimens f 100 200
	expect_ok utimens sl 300 400 nofollow
	stat -c 'link times %.9X %.9Y' sl
	stat -c 'target times %.9X %.9Y' f
	expect_ok utimens sl 500 600
	stat -c 'link mtime %.9Y' sl
	stat -c 'target times %.9X %.9Y' f

	# A write updates mtime (to "now"), size follows the data.
	expect_ok utimens f 100 200
	printf 'xyz' >>f
	[ "$(stat -c %Y f)" -gt 200 ] || fail "write did not update mtime"
	stat -c 'size %s' f
}

run_both ops

# The root of the mount is the source directory itself.
assert_eq "$(stat -c '%a %u %g %h' "$MNT")" "$(stat -c '%a %u %g %h' "$SRC")" \
	"attributes of the mount root"
chmod 0711 "$MNT"
assert_eq "$(stat -c %a "$SRC")" 711 "mode of the source after chmod"
touch -d @1500000000 "$MNT"
assert_eq "$(stat -c %Y "$SRC")" 1500000000 "mtime of the source after touch"
chmod 0755 "$MNT"

# What the mount reports matches the source object by object, times too.
for p in f g d sl; do
	assert_eq "$(stat -c '%F %a %u %g %h %s %.9Y' "$MNT/$p")" \
		"$(stat -c '%F %a %u %g %h %s %.9Y' "$SRC/$p")" "stat of $p"
done

txfs_umount
