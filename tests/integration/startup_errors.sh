#!/bin/bash
# Start-up errors: a missing or non-directory SOURCE or MOUNTPOINT, a
# MOUNTPOINT that already is a txfs mount, a state directory another daemon
# uses, no usable /dev/fuse, a state directory on another file system, and
# an unwritable state directory each make txfsd print exactly one line
# "txfsd: …" on stderr and exit non-zero, in the foreground and when
# daemonizing, without mounting anything or leaving a process behind.  Bad
# usage fails; --help and --version work.
TIMEOUT=120
. "$(dirname "$0")/lib.sh"
require_txfsd

# no_txfsd_with ARGS…: no process runs "txfsd ARGS…".
no_txfsd_with() {
	[ -z "$(pids_running "$TXFSD" "$@")" ]
}

# startup_error WHAT MOUNTPOINT [PREFIX-COMMAND… --] TXFSD-ARGS…: runs
# txfsd with -f and again without, and checks each run fails properly.
startup_error() {
	local what=$1 mnt=$2 mode rc lines prefix=()
	shift 2
	if [ "${1:-}" = unshare ]; then
		while [ "$1" != -- ]; do
			prefix+=("$1")
			shift
		done
		shift
	fi
	for mode in -f daemon; do
		local args=("$@")
		[ "$mode" = -f ] && args=(-f "$@")
		rc=0
		timeout 30 "${prefix[@]}" "$TXFSD" "${args[@]}" \
			>"$T/out" 2>"$T/err" </dev/null || rc=$?
		[ "$rc" != 124 ] ||
			fail "$what ($mode): txfsd did not exit within 30s"
		[ "$rc" != 0 ] || fail "$what ($mode): txfsd exited 0"
		[ ! -s "$T/out" ] ||
			fail "$what ($mode): txfsd wrote to stdout: $(cat "$T/out")"
		lines=$(wc -l <"$T/err")
		[ "$lines" = 1 ] ||
			fail "$what ($mode): $lines lines on stderr: $(cat "$T/err")"
		assert_match "$(cat "$T/err")" '^txfsd: [^ ]' \
			"$what ($mode): the error line"
		! is_fuse_mounted "$mnt" ||
			fail "$what ($mode): something is mounted at $mnt"
		wait_for 10 no_txfsd_with "${args[@]}" ||
			fail "$what ($mode): a txfsd process remains"
		echo "# $what ($mode, status $rc): $(cat "$T/err")"
	done
}

# SOURCE.
startup_error "missing source" "$MNT" "$T/nonexistent" "$MNT"
printf 'x' >"$T/regular"
startup_error "source is a file" "$MNT" "$T/regular" "$MNT"

# MOUNTPOINT.
startup_error "missing mount point" "$T/nomnt" "$SRC" "$T/nomnt"
startup_error "mount point is a file" "$T/regular" "$SRC" "$T/regular"

# MOUNTPOINT already a txfs mount: refused, and the first mount is intact.
printf 'first' >"$SRC/file"
txfs_mount
mkdir "$T/src2"
startup_error "mount point already a txfs mount" "$T/none" "$T/src2" "$MNT"
assert_content "$MNT/file" first
assert_eq "$(awk -v m="$MNT" '$5 == m' /proc/self/mountinfo | wc -l)" 1 \
	"mounts stacked at $MNT"

# A second daemon on the same source (so the same state directory), at
# another mount point, is refused while the first one runs.
mkdir "$T/mnt2"
startup_error "state directory in use" "$T/mnt2" "$SRC" "$T/mnt2"
assert_content "$MNT/file" first
txfs_umount
rm -rf "$SRC/.txfs"

# No usable /dev/fuse: /dev/null bound over it in a private namespace.
startup_error "no /dev/fuse" "$MNT" unshare -m --propagation private \
	sh -c 'mount --bind /dev/null /dev/fuse && exec "$0" "$@"' -- \
	"$SRC" "$MNT"

# A state directory on another file system (tmpfs).
shm=$(mktemp -d /dev/shm/txfs-test.XXXXXX)
at_cleanup "rm -rf '$shm'"
startup_error "state directory on tmpfs" "$MNT" --state-dir "$shm" \
	"$SRC" "$MNT"
mkdir "$SRC/.txfs"
mount -t tmpfs txfs-test "$SRC/.txfs"
at_cleanup "umount '$SRC/.txfs' 2>/dev/null"
startup_error "SOURCE/.txfs is a tmpfs" "$MNT" "$SRC" "$MNT"
umount "$SRC/.txfs"
rmdir "$SRC/.txfs"

# Unwritable state directories.
printf 'not a directory' >"$SRC/.txfs"
startup_error "SOURCE/.txfs is a file" "$MNT" "$SRC" "$MNT"
assert_content "$SRC/.txfs" 'not a directory'
rm "$SRC/.txfs"
mkdir "$T/rw" "$T/ro"
mount --bind -o ro "$T/rw" "$T/ro"
at_cleanup "umount '$T/ro' 2>/dev/null"
[ "$(stat -c %d "$T/ro")" = "$(stat -c %d "$SRC")" ] ||
	fail "the read-only bind mount has another device number"
startup_error "read-only state directory" "$MNT" --state-dir "$T/ro" \
	"$SRC" "$MNT"
mkdir "$T/ro-src"
mount --bind -o ro "$SRC" "$T/ro-src"
at_cleanup "umount '$T/ro-src' 2>/dev/null"
startup_error "read-only source" "$MNT" "$T/ro-src" "$MNT"
umount "$T/ro-src"
umount "$T/ro"

# Bad usage fails without mounting.
for args in "" "$SRC" "--no-such-option $SRC $MNT" "--threads 0 $SRC $MNT" \
	"--threads abc $SRC $MNT" "$SRC $MNT extra"; do
	rc=0
	# shellcheck disable=SC2086
	timeout 30 "$TXFSD" -f $args >"$T/out" 2>"$T/err" </dev/null || rc=$?
	[ "$rc" != 0 ] && [ "$rc" != 124 ] ||
		fail "txfsd -f $args: status $rc"
	[ -s "$T/err" ] || fail "txfsd -f $args: no message on stderr"
	! is_fuse_mounted "$MNT" || fail "txfsd -f $args mounted $MNT"
done

# --help and --version.
"$TXFSD" --help >"$T/out"
grep -q -- --state-dir "$T/out" || fail "--help does not mention --state-dir"
"$TXFSD" --version >"$T/out"
assert_match "$(cat "$T/out")" '[0-9]+\.[0-9]+' "--version output"

# Nothing was mounted or created along the way.
assert_eq "$(ls -A "$MNT")" "" "the mount point"
