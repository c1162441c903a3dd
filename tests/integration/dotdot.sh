#!/bin/bash
# ".." at the root of the mount leads to the mount point's real parent, not
# to the source's parent (the two differ here): by path, by openat(rootfd,
# ".."), by readdir of MNT/.., and from a working directory inside the mount.
# Inside the mount ".." stays inside.
TIMEOUT=60
. "$(dirname "$0")/lib.sh"

mkdir -p "$T/a/src/sub" "$T/b/mnt"
printf 'a' >"$T/a/marker-a"
printf 'b' >"$T/b/marker-b"
printf 'inside' >"$T/a/src/inside"
M=$T/b/mnt
txfs_mount_at "$T/a/src" "$M"

parent=$(fsop devino "$T/b")
assert_ne "$parent" "$(fsop devino "$T/a")" "the two parents"

assert_eq "$(fsop openat "$M" ..)" "$parent" "openat(rootfd, \"..\")"
assert_eq "$(fsop devino "$M/..")" "$parent" "stat of MNT/.."
assert_eq "$(ls -a "$M/.." | tr '\n' ' ')" ". .. marker-b mnt " \
	"readdir of MNT/.."
assert_content "$M/../marker-b" b
assert_missing "$M/../marker-a"
assert_eq "$(cd "$M" && cd .. && pwd -P)" "$T/b" "cd .. from the root"
assert_eq "$(cd "$M/sub" && fsop openat . ../..)" "$parent" \
	"openat from a subdirectory up past the root"
assert_eq "$(realpath "$M/sub/../..")" "$T/b" "realpath up past the root"

# Inside the mount, ".." stays inside.
assert_eq "$(fsop openat "$M/sub" ..)" "$(fsop devino "$M")" \
	"openat(subfd, \"..\")"
assert_eq "$(ls "$M/sub/.." | tr '\n' ' ')" "inside sub " "readdir of sub/.."
assert_content "$M/sub/../inside" inside

txfs_umount "$M"
