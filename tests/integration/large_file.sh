#!/bin/bash
# A 100 MiB file written through the mount reads back identically through
# the mount and in the source (by checksum and byte by byte, with large
# and small reads); an unaligned overwrite in the middle and a write at an
# offset beyond 4 GiB land where they should.
TIMEOUT=180
. "$(dirname "$0")/lib.sh"

txfs_mount

head -c 100M /dev/urandom >"$T/big.orig"
want=$(sha256sum <"$T/big.orig" | cut -c1-64)

dd if="$T/big.orig" of="$MNT/big" bs=1M status=none
assert_eq "$(stat -c %s "$MNT/big")" 104857600 "size through the mount"
assert_eq "$(stat -c %s "$SRC/big")" 104857600 "size in the source"
assert_eq "$(sha256sum <"$MNT/big" | cut -c1-64)" "$want" \
	"checksum read through the mount"
assert_eq "$(sha256sum <"$SRC/big" | cut -c1-64)" "$want" \
	"checksum in the source"
dd if="$MNT/big" bs=4k status=none | cmp - "$T/big.orig" ||
	fail "4 KiB reads through the mount differ"

# Reads at odd offsets match the original.
for off in 1 65535 4194305 104857000; do
	assert_eq "$(fsop pread "$MNT/big" "$off" 600 | sha256sum)" \
		"$(dd if="$T/big.orig" bs=1 skip="$off" count=600 \
			status=none | sha256sum)" "600 bytes at offset $off"
done

# An unaligned 1 MiB overwrite in the middle, through the mount.
head -c 1M /dev/urandom >"$T/patch"
dd if="$T/patch" of="$MNT/big" bs=64k seek=50000001 oflag=seek_bytes \
	conv=notrunc status=none
dd if="$T/patch" of="$T/big.orig" bs=64k seek=50000001 oflag=seek_bytes \
	conv=notrunc status=none
cmp "$SRC/big" "$T/big.orig" || fail "overwrite differs in the source"
cmp "$MNT/big" "$T/big.orig" || fail "overwrite differs through the mount"

# 64-bit offsets: a write beyond 4 GiB makes a sparse 5 GiB file.
expect_ok pwrite "$MNT/far" 5368709120 tail
assert_eq "$(stat -c %s "$SRC/far")" 5368709124 "size of the far file"
assert_eq "$(fsop pread "$MNT/far" 5368709120 4)" tail "far data"
assert_eq "$(fsop pread "$SRC/far" 5368709120 4)" tail "far data in source"

txfs_umount
