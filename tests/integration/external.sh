#!/bin/bash
# Changes made directly in the source while it is mounted (creation,
# content, attributes, renames, removal) are what the mount shows on the
# next access when the kernel may not cache (--cache-timeout 0; txfsd(8)
# documents that with a timeout they show after at most that long); and
# when the source reuses the inode number of an object the kernel still
# holds (pinned with inotify), the new object is served as itself: a nodeid
# never stands for two objects.
TIMEOUT=60
. "$(dirname "$0")/lib.sh"

# A small descriptor cache lets the source free (and reuse) inodes that
# the daemon saw recently.
mkdir "$SRC/churn"
for ((i = 0; i < 200; i++)); do
	printf '%d' "$i" >"$SRC/churn/$i"
done
if is_txfsd; then
	txfs_mount --cache-timeout 0 --fd-cache 64
else
	txfs_mount -o timeout=0
fi

# Creation and content.
printf 'ext' >"$SRC/e1"
assert_content "$MNT/e1" ext
ls "$MNT" | grep -qx e1 || fail "e1 not listed through the mount"
printf 'EXT' >"$SRC/e1"
assert_content "$MNT/e1" EXT
printf 'a longer content' >"$SRC/e1"
assert_content "$MNT/e1" 'a longer content'
assert_eq "$(stat -c %s "$MNT/e1")" 16 "size after an outside write"
printf 'x' >"$SRC/e1"
assert_content "$MNT/e1" x

# Attributes.
chmod 0600 "$SRC/e1"
assert_eq "$(stat -c %a "$MNT/e1")" 600 "mode after an outside chmod"
touch -d @1234567890 "$SRC/e1"
assert_eq "$(stat -c %Y "$MNT/e1")" 1234567890 "mtime after an outside touch"
setfattr -n user.outside -v 1 "$SRC/e1"
assert_eq "$(fsop getxattr "$MNT/e1" user.outside)" 1 "outside xattr"

# Names.
mv "$SRC/e1" "$SRC/e2"
expect_errno ENOENT lstat "$MNT/e1"
assert_content "$MNT/e2" x
mkdir "$SRC/dir"
printf 'in dir' >"$SRC/dir/f"
assert_content "$MNT/dir/f" 'in dir'
mv "$SRC/dir" "$SRC/dir2"
assert_content "$MNT/dir2/f" 'in dir'
expect_errno ENOENT lstat "$MNT/dir/f"
rm "$SRC/e2"
expect_errno ENOENT lstat "$MNT/e2"
rm -r "$SRC/dir2"
expect_errno ENOENT lstat "$MNT/dir2"
assert_eq "$(ls -A "$MNT")" churn "listing after outside removals"

# Inode-number reuse while the kernel still holds the old object.
# pin_start PATH: keeps PATH's inode referenced until pin_stop.
PINNER=
pin_start() {
	echo "$1" >"$T/pinlist"
	rm -f "$T/unpin" "$T/pin.out"
	"$FSOP" pin "$T/pinlist" "$T/unpin" >"$T/pin.out" &
	PINNER=$!
	wait_for 10 grep -qs pinned "$T/pin.out" ||
		fail "cannot pin $1: $(cat "$T/pin.out")"
}
pin_stop() {
	: >"$T/unpin"
	wait "$PINNER"
	PINNER=
}
at_cleanup ': >"$T/unpin"; [ -z "$PINNER" ] || wait $PINNER'

# churn: touches 200 other objects, evicting cached descriptors.
churn() {
	cat "$MNT"/churn/* >/dev/null
}

# reused OLD NEW: true when NEW got OLD's inode number.
reused() {
	[ "$(stat -c %i "$2")" = "$1" ]
}

# reuse_case KIND: makes an object through the mount, pins it, lets the
# daemon's descriptor cache forget it, removes it in the source and makes
# a new object of the same type, until the source reuses the inode number
# (10 tries); then checks the new object through the mount.
reuse_case() {
	local kind=$1 try old new
	for ((try = 0; try < 10; try++)); do
		new=$kind-new-$try
		case $kind in
		file | mounted-file) printf 'old' >"$MNT/$kind-$try" ;;
		dir) mkdir "$MNT/$kind-$try" ;;
		esac
		old=$(stat -c %i "$SRC/$kind-$try")
		pin_start "$MNT/$kind-$try"
		churn
		rm -r "$SRC/$kind-$try"
		case $kind in
		file) printf 'new file' >"$SRC/$new" ;;
		mounted-file) printf 'new file' >"$MNT/$new" ;;
		dir) mkdir "$SRC/$new" ;;
		esac
		if reused "$old" "$SRC/$new"; then
			break
		fi
		pin_stop
	done
	if [ "$try" = 10 ]; then
		echo "# note: no inode reuse for $kind in 10 tries; skipped"
		return 0
	fi
	echo "# $kind: $new reuses inode $old of a pinned object"
	case $kind in
	file | mounted-file)
		assert_content "$MNT/$new" 'new file'
		printf ' appended' >>"$MNT/$new"
		assert_content "$SRC/$new" 'new file appended'
		assert_eq "$(stat -c %s "$MNT/$new")" 17 "size of $new"
		;;
	dir)
		printf 'inside' >"$MNT/$new/f"
		assert_content "$SRC/$new/f" inside
		assert_eq "$(ls "$MNT/$new")" f "listing of $new"
		;;
	esac
	pin_stop
}

reuse_case file
reuse_case mounted-file
reuse_case dir

txfs_umount
