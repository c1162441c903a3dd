#!/bin/bash
# mknod through the mount creates fifos, unix sockets, character and block
# devices and regular files with the right type, mode and device number;
# a fifo carries data from a writer to a reader through the mount, and a
# socket bound inside the mount accepts a connection made by its path.
TIMEOUT=60
. "$(dirname "$0")/lib.sh"

txfs_mount

ops() {
	expect_ok mknod fifo1 fifo 0644
	mkfifo -m 0600 fifo2
	expect_ok mknod sock1 sock 0755
	expect_ok mknod null chr 0666 1 3
	expect_ok mknod loop blk 0660 7 0
	expect_ok mknod regular reg 0600
	for n in fifo1 fifo2 sock1 null loop regular; do
		printf '%s: ' "$n"
		fsop lstat "$n"
	done
	expect_errno EEXIST mknod fifo1 fifo
	expect_errno ENOENT mknod nodir/fifo fifo

	# A writer and a reader meet in the fifo.
	(printf 'through the fifo\n' >fifo1) &
	cat fifo1
	wait $!

	# bind() creates the socket; connect() by path reaches the listener.
	fsop sockpair sock2
	fsop lstat sock2

	# Special files can be renamed, linked and removed like any other.
	mv fifo2 fifo3
	ln null null2
	stat -c '%n nlink %h' null null2
	rm sock1 loop
}

run_both ops

txfs_umount
