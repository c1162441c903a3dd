#!/bin/bash
# Sparse files through the mount: holes stay holes (allocated blocks as on
# a plain directory), lseek SEEK_DATA/SEEK_HOLE find them, fallocate
# allocates, keeps the size, punches holes and zeroes ranges, and
# copy_file_range copies whole files and ranges.
TIMEOUT=60
. "$(dirname "$0")/lib.sh"

txfs_mount

ops() {
	# Data at 0 and at 1 MiB, a hole between, a hole to the 4 MiB end.
	expect_ok pwrite sp 0 head
	expect_ok pwrite sp 1048576 middle
	truncate -s 4194304 sp
	stat -c 'sp size %s blocks %b' sp
	fsop seek sp data 0
	fsop seek sp hole 0
	fsop seek sp data 4096
	fsop seek sp hole 1048576
	expect_errno ENXIO seek sp data 1052672
	fsop seek sp hole 4194303
	expect_errno ENXIO seek sp data 4194304
	expect_errno ENXIO seek sp hole 4194305
	fsop pread sp 1048576 6
	echo
	assert_eq "$(fsop pread sp 8192 16 | tr -d '\0' | wc -c)" 0 "hole bytes"

	# A file extended by truncate is all hole.
	truncate -s 64M huge
	stat -c 'huge size %s blocks %b' huge
	fsop seek huge hole 0
	expect_errno ENXIO seek huge data 0

	# fallocate: allocate (extends), keep size, punch, zero range.
	: >fa
	expect_ok fallocate fa 0 0 8192
	stat -c 'fa size %s blocks %b' fa
	expect_ok fallocate fa keep 8192 8192
	stat -c 'fa size %s blocks %b' fa
	head -c 16384 /dev/zero | tr '\0' 'D' >pu
	expect_ok fallocate pu punch,keep 4096 4096
	stat -c 'pu size %s blocks %b' pu
	fsop seek pu hole 0
	fsop seek pu data 4096
	od -An -c pu | uniq
	expect_errno EOPNOTSUPP fallocate pu punch 0 4096
	head -c 1000 /dev/zero | tr '\0' 'Z' >zr
	expect_ok fallocate zr zero,keep 100 200
	od -An -c zr | uniq
	stat -c 'zr size %s' zr
	expect_ok fallocate zr zero 900 300
	stat -c 'zr size %s' zr

	# copy_file_range: the whole file, then a range between offsets.
	seq 1 200000 >cfsrc
	fsop cfr cfsrc cfdst "$(stat -c %s cfsrc)"
	cmp cfsrc cfdst
	printf 'XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX' >cfpart
	fsop cfr cfsrc cfpart 10 7 20
	cat cfpart
	echo
	fsop cfr sp cfsparse 4194304
	cmp sp cfsparse
}

run_both ops

# The data is in the source file, holes included.
assert_eq "$(stat -c %b "$SRC/sp")" "$(stat -c %b "$REF/sp")" \
	"allocated blocks of the sparse file in the source"

txfs_umount
