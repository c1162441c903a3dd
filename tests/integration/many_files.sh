#!/bin/bash
# 10,000 files created in one directory through the mount are all listed,
# exactly, through the mount and in the source; seekdir/telldir stay
# consistent across the whole listing; unusual names (spaces, newlines,
# UTF-8, 255 bytes) survive; removing them all through the mount empties
# the source directory.
TIMEOUT=180
. "$(dirname "$0")/lib.sh"

txfs_mount
mkdir "$MNT/d"

seq -f 'file-%05g' 0 9999 >"$T/names"
(cd "$MNT/d" && xargs touch <"$T/names")

# Unusual names, created through the mount too.
long=$(printf 'L%.0s' $(seq 1 255))
odd=("with space" $'new\nline' "ünïcödé-名前" "-leading-dash" "$long"
	".hidden" "..dots")
for n in "${odd[@]}"; do
	printf '%s' "$n" >"$MNT/d/$n"
	printf '%s\0' "$n" >>"$T/names.odd"
done
expect_errno ENAMETOOLONG open "$MNT/d/${long}X" wronly,creat

# Prints the NUL-separated, sorted names in directory $1.
names_in() {
	find "$1" -mindepth 1 -maxdepth 1 -printf '%f\0' | LC_ALL=C sort -z
}
{
	tr '\n' '\0' <"$T/names"
	cat "$T/names.odd"
} | LC_ALL=C sort -z >"$T/expected"

names_in "$MNT/d" >"$T/listed.mnt"
names_in "$SRC/d" >"$T/listed.src"
cmp "$T/expected" "$T/listed.mnt" ||
	fail "listing through the mount differs: $(comm -3 <(tr '\0' '\n' \
		<"$T/expected") <(tr '\0' '\n' <"$T/listed.mnt") | head)"
cmp "$T/expected" "$T/listed.src" || fail "listing in the source differs"
assert_eq "$(ls -f -b "$MNT/d" | wc -l)" 10009 "entries seen by ls -f"
assert_eq "$(fsop dirseek "$MNT/d" 97)" 10009 "entries read with seekdir"
for n in "${odd[@]}"; do
	assert_eq "$(cat "$MNT/d/$n")" "$n" "content of an oddly named file"
done

# Remove everything through the mount.
find "$MNT/d" -mindepth 1 -delete
assert_eq "$(ls -A "$SRC/d" | wc -l)" 0 "files left in the source"
assert_eq "$(ls -A "$MNT/d" | wc -l)" 0 "files left through the mount"
rmdir "$MNT/d"
assert_missing "$SRC/d"

txfs_umount
