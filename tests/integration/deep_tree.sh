#!/bin/bash
# A tree 100 directories deep is created, walked and removed through the
# mount as on a plain directory; and one whose paths are longer than
# PATH_MAX (100 levels of 60-byte names, reached by relative lookups) works
# too, since the daemon must not depend on full path names.
TIMEOUT=120
. "$(dirname "$0")/lib.sh"

txfs_mount

ops() {
	local p=. i
	for ((i = 1; i <= 100; i++)); do
		p=$p/d$i
	done
	mkdir -p "$p"
	printf 'bottom' >"$p/file"
	ln -s ../../../d98 "$p/up"
	find . | wc -l
	find . -type d | wc -l
	assert_content "$p/file" bottom
	ls "$p/up"
	mv d1/d2/d3 d1/moved
	find . -name file
	rm -rf d1
	ls -A
}

run_both ops

# Paths longer than PATH_MAX: build level by level with relative names.
name=$(printf 'n%.0s' $(seq 1 60))
(
	cd "$MNT"
	for ((i = 1; i <= 100; i++)); do
		mkdir "$name"
		cd "$name"
	done
	printf 'deep' >leaf
)
assert_eq "$(find "$MNT/$name" -type d | wc -l)" 100 \
	"directories in the long tree through the mount"
assert_eq "$(find "$SRC/$name" -type d | wc -l)" 100 \
	"directories in the long tree in the source"
assert_eq "$(find "$MNT/$name" -name leaf -execdir cat {} \;)" deep \
	"leaf of the long tree"
assert_eq "$(find "$MNT/$name" -printf '%d\n' | sort -n | tail -n 1)" 100 \
	"depth of the long tree"
rm -rf "$MNT/$name"
assert_missing "$SRC/$name"
assert_eq "$(ls -A "$MNT")" "" "mount empty after removal"

txfs_umount
