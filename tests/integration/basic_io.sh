#!/bin/bash
# Basic I/O through the mount behaves exactly as on a plain directory:
# create/read/write, open flags (O_TRUNC, O_APPEND, O_EXCL, O_DIRECTORY,
# O_NOFOLLOW, O_DIRECT), offsets and holes, mkdir/rmdir/unlink and their
# errors, unlinked-but-open files, fsync/fsyncdir, readdir (d_type,
# seekdir/telldir), access(2), shared mmap, exec of a binary, and statfs.
TIMEOUT=90
. "$(dirname "$0")/lib.sh"

txfs_mount

ops() {
	# Create, read, append, truncate.
	printf 'hello\n' >a
	cat a
	printf 'world\n' >>a
	cat a
	printf 'new' >a
	assert_content a new
	expect_ok write a wronly,trunc x
	assert_content a x
	expect_ok write a wronly,append yz
	assert_content a xyz

	# O_EXCL, O_CREAT modes (umask 022), O_DIRECTORY, O_NOFOLLOW.
	expect_errno EEXIST open a wronly,creat,excl
	expect_ok open b wronly,creat,excl 0640
	fsop lstat b
	expect_ok open c wronly,creat 0666
	fsop lstat c
	expect_errno ENOTDIR open a rdonly,directory
	expect_ok open . rdonly,directory
	ln -s a sl
	expect_errno ELOOP open sl rdonly,nofollow
	expect_ok open sl rdonly
	expect_ok open sl path,nofollow
	expect_errno ENOENT open missing rdonly
	expect_errno ENOENT open nodir/x wronly,creat
	expect_errno ENOTDIR open a/x wronly,creat
	expect_errno EISDIR open . wronly
	expect_errno EBADF write a rdonly x

	# Offsets: overwrite in the middle, write past the end, read ranges.
	expect_ok pwrite p 0 0123456789
	expect_ok pwrite p 5 abc
	assert_content p 01234abc89
	fsop pread p 3 4
	echo
	expect_ok pwrite p 20 end
	stat -c 'p size %s' p
	od -An -c p
	assert_eq "$(fsop pread p 23 10 | wc -c)" 0 "read past end of file"

	# Concurrent O_APPEND writers never overwrite each other.
	: >log
	fsop append log $'a-line\n' 300 >/dev/null &
	fsop append log $'b-line\n' 300 >/dev/null &
	wait
	stat -c 'log size %s' log
	LC_ALL=C sort log | uniq -c
	rm log

	# Writes in odd-sized blocks, read back in others.
	seq 1 40000 >pattern.src
	dd if=pattern.src of=pattern bs=4097 status=none
	dd if=pattern bs=65537 status=none | cmp - pattern.src
	rm pattern.src
	sha256sum pattern

	# Directories.
	mkdir d
	mkdir d/e
	expect_errno EEXIST mkdir d
	expect_errno ENOTEMPTY rmdir d
	expect_errno ENOTDIR rmdir a
	expect_errno EISDIR unlink d
	expect_errno ENOENT rmdir nothere
	expect_errno ENOENT mkdir nothere/x
	expect_ok rmdir d/e
	expect_ok mkdir d/f 0700
	fsop lstat d/f

	# Unlink.
	expect_ok unlink b
	expect_errno ENOENT unlink b
	assert_missing b

	# An unlinked file stays readable and writable through an open fd.
	printf 'keep' >u
	exec 5<>u
	rm u
	assert_missing u
	cat <&5
	echo
	printf 'more' >&5
	cat /proc/self/fd/5
	echo
	stat -L -c 'unlinked: nlink %h size %s' /proc/self/fd/5
	truncate -s 2 /proc/self/fd/5
	chmod 0600 /proc/self/fd/5
	stat -L -c 'unlinked: size %s mode %a' /proc/self/fd/5
	exec 5<&-

	# fsync, fdatasync, fsyncdir.
	expect_ok fsync a
	expect_ok fdatasync a
	expect_ok fsyncdir d
	expect_ok fsyncdir .

	# readdir: a listing of 300 names, seekdir/telldir consistent.
	mkdir many
	(cd many && touch $(seq -f 'n%03g' 1 300))
	fsop dirseek many
	ls -a many | LC_ALL=C sort | sha256sum
	ls -a d | LC_ALL=C sort

	# readdir reports each entry's type (d_type) as the source does.
	mkdir types
	(cd types && touch f && mkdir d && ln -s f l && mkfifo p)
	fsop readdir types

	# access(2) as root: x needs some x bit.
	chmod 0644 a
	expect_ok access a rw
	expect_errno EACCES access a x
	chmod 0755 a
	expect_ok access a rwx
	expect_errno ENOENT access nothere f

	# A shared writable mapping writes through to the file.
	printf '0123456789' >m
	expect_ok mmapwrite m 2 XY
	assert_content m 01XY456789

	# O_DIRECT reads and writes of aligned blocks.
	head -c 65536 /dev/urandom >direct.src
	dd if=direct.src of=direct bs=4096 oflag=direct status=none
	dd if=direct bs=4096 iflag=direct status=none | cmp - direct.src
	rm direct.src direct

	# A binary on the mount can be executed.
	cp /bin/true truebin
	./truebin
	echo "exec ok"
}

run_both ops

# statfs through the mount reports the source's file system.
for f in %b %S %s %c %l; do
	assert_eq "$(stat -f -c "$f" "$MNT")" "$(stat -f -c "$f" "$SRC")" \
		"statfs field $f of the mount"
done
assert_eq "$(df --output=size "$MNT" | tail -n 1)" \
	"$(df --output=size "$SRC" | tail -n 1)" "df size of the mount"

txfs_umount
