# tests/integration/lib.sh: the harness every integration scenario sources.
#
# A scenario is one bash script, tests/integration/NAME.sh, that starts with
#
#	#!/bin/bash
#	# One sentence saying what the scenario proves.
#	TIMEOUT=60	# optional: seconds before the watchdog kills it
#	. "$(dirname "$0")/lib.sh"
#
# and then mounts txfsd with txfs_mount, works through $MNT, and asserts.
#
# What the harness gives a scenario:
#   - exit 77 (automake SKIP) when /dev/fuse is missing or cannot be opened;
#   - a private directory $T (mode 0755, so that "nobody" can traverse it)
#     holding $SRC (the source), $MNT (the mount point) and $REF (a plain
#     directory to repeat operations on for comparison);
#   - a watchdog that, after $TIMEOUT seconds (times $TXFS_TIMEOUT_SCALE,
#     for sanitizer builds), kills the daemons, lazily unmounts and ends the
#     scenario as a failure;
#   - an EXIT trap that always unmounts (fusermount3 -u, then -uz), stops
#     and reaps every daemon (a daemon that exits non-zero fails the test),
#     prints the daemon logs when the scenario failed, and removes $T;
#   - helpers: txfs_mount, txfs_mount_at, txfs_umount, fail, the assert_*
#     and expect_* functions, tree_snapshot/tree_compare, run_both, and
#     stop_at_cleanup (kills a background job left running at the end);
#   - for crash scenarios, the helpers in the "crashes" section at the end;
#   - for transactions: require_txctl (which also exports TXCTL, FSOP, MNT,
#     SRC and T for child shells), txctl (runs $TXCTL -m $MNT), expect_status
#     (a command's exit status, its output kept in $T/out and $T/err),
#     tx_leader/tx_wait_id (a background subshell that begins a transaction
#     with itself as leader) and assert_no_tx_state (the state directory
#     holds nothing of any transaction).
#
# Environment: make check exports TXFSD, TXCTL, FSOP and TESTS_SRCDIR.  Run
# by hand, the harness looks for the programs in the current directory (a
# build directory) and then next to the sources, and compiles tests/fsop.c
# itself if it finds no fsop.  TXFS_DEBUG=1 runs the daemon with -d.
# TXFS_REFERENCE=/path/to/passthrough_ll runs the scenarios against libfuse's
# passthrough_ll instead (to validate the tests themselves); scenarios that
# test txfsd-only behaviour skip themselves then (require_txfsd).

if [ -z "${BASH_VERSION:-}" ]; then
	echo "lib.sh: the integration scenarios need bash" >&2
	exit 99
fi

set -eEu -o pipefail
shopt -s inherit_errexit
umask 022

TEST_NAME=$(basename "$0" .sh)
TIMEOUT=${TIMEOUT:-120}
TIMEOUT=$((TIMEOUT * ${TXFS_TIMEOUT_SCALE:-1}))
MOUNT_WAIT=$((20 * ${TXFS_TIMEOUT_SCALE:-1}))

_lib_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TESTS_SRCDIR=${TESTS_SRCDIR:-$(dirname "$_lib_dir")}

# Finds a built program: $1 relative to a build directory.
_find_program() {
	local cand
	for cand in "$PWD/$1" "$TESTS_SRCDIR/../$1"; do
		if [ -x "$cand" ]; then
			echo "$cand"
			return 0
		fi
	done
	echo "$PWD/$1"
}

TXFSD=${TXFSD:-$(_find_program txfsd)}
TXCTL=${TXCTL:-$(_find_program txctl/txctl)}
FSOP=${FSOP:-$(_find_program tests/fsop)}
TXFS_REFERENCE=${TXFS_REFERENCE:-}

echo "# $TEST_NAME: $(date '+%F %T'), timeout ${TIMEOUT}s"

# --- skip when there is no usable FUSE device --------------------------------

if [ ! -c /dev/fuse ] || ! (exec 9<>/dev/fuse) 2>/dev/null; then
	echo "SKIP: /dev/fuse is missing or cannot be opened"
	exit 77
fi

# --- the scenario's private directories --------------------------------------

T=$(mktemp -d "${TMPDIR:-/tmp}/txfs-$TEST_NAME.XXXXXX")
chmod 755 "$T"
SRC=$T/src
MNT=$T/mnt
REF=$T/ref
mkdir -m 755 "$SRC" "$MNT" "$REF"
: >"$T/.daemons"

# Daemons started by this scenario, by index: pid, mount point, log file,
# and whether the pid is our child (so its exit status can be collected).
DAEMON_PIDS=()
DAEMON_MNTS=()
DAEMON_LOGS=()
DAEMON_CHILD=()
DAEMON_PID=
DAEMON_LOG=
DAEMON_STATUS=
_cleanup_hooks=()

# --- failure reporting --------------------------------------------------------

# Prints where the scenario is: "script:line" of each caller outside lib.sh.
_where() {
	local i=1 frame out=
	while frame=$(caller $i); do
		# shellcheck disable=SC2086 # "line function file" splits
		set -- $frame
		case $3 in
		*/lib.sh) ;;
		*) out="$out $(basename "$3"):$1" ;;
		esac
		i=$((i + 1))
	done
	echo "${out# }"
}

# fail MESSAGE: reports a failed expectation and ends the scenario.
fail() {
	echo "FAIL: $* (at $(_where))" >&2
	: >"$T/.failed"
	exit 1
}

# Reports the command that failed under set -e.
_on_err() {
	local rc=$1 cmd=$2
	echo "FAIL: command exited with status $rc: $cmd (at $(_where))" >&2
	: >"$T/.failed" 2>/dev/null || true
}
trap '_on_err $? "$BASH_COMMAND"' ERR

# at_cleanup COMMAND: runs COMMAND (with eval) when the scenario ends,
# before the daemons are stopped; last registered runs first.
at_cleanup() {
	_cleanup_hooks=("$1" "${_cleanup_hooks[@]}")
}

# stop_at_cleanup PID: when the scenario ends, kills background job PID
# and waits for it, if it is still a job of this shell (so that a pid
# recycled after the scenario reaped the job is never hit).
stop_at_cleanup() {
	at_cleanup "_stop_job $1"
}
_stop_job() {
	if jobs -p | grep -qx "$1"; then
		kill "$1" 2>/dev/null
		wait "$1" 2>/dev/null
	fi
	return 0
}

# --- processes -----------------------------------------------------------

# pid_alive PID: true while PID exists and is not a zombie.
pid_alive() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	stat=${stat##*) }
	[ "${stat%% *}" != Z ]
}

# wait_gone PID SECONDS: waits until PID is gone (or a zombie).
wait_gone() {
	local pid=$1 i
	for ((i = 0; i < $2 * 20; i++)); do
		pid_alive "$pid" || return 0
		sleep 0.05
	done
	! pid_alive "$pid"
}

# Prints the pids of every descendant of $1.
_descendants() {
	local child
	for child in $(ps -o pid= --ppid "$1" 2>/dev/null); do
		echo "$child"
		_descendants "$child"
	done
}

# wait_for SECONDS COMMAND…: polls COMMAND until it succeeds; false on timeout.
wait_for() {
	local secs=$1 i
	shift
	for ((i = 0; i < secs * 20 * ${TXFS_TIMEOUT_SCALE:-1}; i++)); do
		if "$@"; then
			return 0
		fi
		sleep 0.05
	done
	return 1
}

# --- mounts --------------------------------------------------------------

# mountinfo_escape PATH: PATH as /proc/self/mountinfo spells it.
mountinfo_escape() {
	local s=${1//\\/\\134}
	s=${s// /\\040}
	s=${s//$'\t'/\\011}
	s=${s//$'\n'/\\012}
	printf '%s' "$s"
}

# mountinfo_unescape FIELD: decodes the octal escapes of a mountinfo field.
mountinfo_unescape() {
	local s=$1 out=
	while [[ $s =~ ^([^\\]*)\\([0-7]{3})(.*)$ ]]; do
		# shellcheck disable=SC2059 # the format is the escape itself
		out+=${BASH_REMATCH[1]}$(printf "\\${BASH_REMATCH[2]}")
		s=${BASH_REMATCH[3]}
	done
	printf '%s' "$out$s"
}

# _mount_field DIR N: prints field N after the " - " separator of the
# topmost mount at DIR (1: type, 2: source).
_mount_field() {
	# (awk -v would decode the backslashes; the environment does not.)
	MI_PATH=$(mountinfo_escape "$1") awk -v n="$2" '
	$5 == ENVIRON["MI_PATH"] {
		for (i = 7; i <= NF; i++) if ($i == "-") { f = $(i + n); break }
	} END { if (f != "") print f }' /proc/self/mountinfo
}

# mount_fstype DIR: prints the file-system type of the topmost mount at DIR.
mount_fstype() {
	_mount_field "$1" 1
}

# mount_source DIR: prints the mount source (fsname) of the mount at DIR.
mount_source() {
	mountinfo_unescape "$(_mount_field "$1" 2)"
}

# is_fuse_mounted DIR: true when a FUSE file system is mounted at DIR.
is_fuse_mounted() {
	case $(mount_fstype "$1") in
	fuse | fuse.*) return 0 ;;
	*) return 1 ;;
	esac
}

# Unmounts DIR however it can: fusermount3 -u, then -uz, then umount -l.
_force_umount() {
	fusermount3 -u "$1" 2>/dev/null || fusermount3 -uz "$1" 2>/dev/null ||
		umount -l "$1" 2>/dev/null || true
}

# is_txfsd: true unless the scenarios run against the reference daemon.
is_txfsd() {
	[ -z "$TXFS_REFERENCE" ]
}

# require_txfsd: skips the scenario when it runs against the reference.
require_txfsd() {
	if ! is_txfsd; then
		echo "SKIP: $TEST_NAME tests txfsd-only behaviour"
		exit 77
	fi
}

# Builds the daemon command line for SOURCE MOUNTPOINT [txfsd options…]
# into the array _cmd.
_daemon_cmd() {
	local src=$1 mnt=$2 fg=-f
	shift 2
	if [ "${TXFS_DEBUG:-0}" = 1 ]; then
		fg=-d
	fi
	if is_txfsd; then
		_cmd=("$TXFSD" "$fg" "$@" "$src" "$mnt")
		return
	fi
	# passthrough_ll takes the source as an option and has no state
	# directory, socket or thread options.
	src=${src//\\/\\\\}
	_cmd=("$TXFS_REFERENCE" "$fg" -o "source=${src//,/\\,},xattr")
	while [ $# -gt 0 ]; do
		case $1 in
		-o)
			_cmd+=(-o "$2")
			shift 2
			;;
		-f | -d) shift ;;
		*)
			echo "SKIP: option $1 is txfsd-only"
			exit 77
			;;
		esac
	done
	_cmd+=("$mnt")
}

# txfs_mount_at SOURCE MOUNTPOINT [txfsd options…]: starts the daemon in
# the foreground, in the background of the scenario and in a session of its
# own, and waits until its mount is in /proc/self/mountinfo.  Sets
# DAEMON_PID and DAEMON_LOG.
# _daemon_start MNT: starts the daemon command _daemon_cmd built, logging
# to the next daemon.N.log, and registers it (for the cleanup trap) as the
# daemon of the canonical mount point MNT.
_daemon_start() {
	DAEMON_LOG=$T/daemon.${#DAEMON_PIDS[@]}.log
	# Background jobs of a non-interactive shell start with SIGINT and
	# SIGQUIT ignored, and a daemon rightly keeps ignored signals
	# ignored; reset them so that the daemon sees what a user would send.
	env --default-signal=INT,QUIT setsid "${_cmd[@]}" >"$DAEMON_LOG" 2>&1 &
	DAEMON_PID=$!
	DAEMON_PIDS+=("$DAEMON_PID")
	DAEMON_MNTS+=("$1")
	DAEMON_LOGS+=("$DAEMON_LOG")
	DAEMON_CHILD+=(1)
	echo "$DAEMON_PID $1" >>"$T/.daemons"
}

txfs_mount_at() {
	local src=$1 mnt i fstype
	# The daemon gets the paths as given; the harness tracks the mount
	# point by its canonical name, as mountinfo shows it.
	mnt=$(realpath -m -- "$2")
	_daemon_cmd "$src" "$2" "${@:3}"
	echo "# mount: ${_cmd[*]}"
	_daemon_start "$mnt"
	for ((i = 0; i < MOUNT_WAIT * 20; i++)); do
		if is_fuse_mounted "$mnt"; then
			break
		fi
		if ! pid_alive "$DAEMON_PID"; then
			wait "$DAEMON_PID" && DAEMON_STATUS=0 || DAEMON_STATUS=$?
			fail "daemon exited with status $DAEMON_STATUS" \
				"before mounting $mnt"
		fi
		sleep 0.05
	done
	is_fuse_mounted "$mnt" ||
		fail "no mount at $mnt after ${MOUNT_WAIT}s"
	fstype=$(mount_fstype "$mnt")
	if is_txfsd && [ "$fstype" != fuse.txfs ]; then
		fail "mount at $mnt has type $fstype, not fuse.txfs"
	fi
	# The first access waits for the FUSE handshake to finish.
	stat "$mnt" >/dev/null || fail "cannot stat the new mount $mnt"
}

# pids_running ARGV…: prints the pids of processes whose command line is
# exactly ARGV (compared as a whole, without starting a process per pid).
pids_running() {
	local f args want
	want=$(printf '%s\n' "$@")
	for f in /proc/[0-9]*/cmdline; do
		mapfile -d "" -t args 2>/dev/null <"$f" || continue
		[ "${#args[@]}" = $# ] || continue
		if [ "$(printf '%s\n' "${args[@]}")" = "$want" ]; then
			f=${f#/proc/}
			echo "${f%/cmdline}"
		fi
	done
}

# txfs_mount [txfsd options…]: mounts $SRC on $MNT.
txfs_mount() {
	txfs_mount_at "$SRC" "$MNT" "$@"
}

# _daemon_index MOUNTPOINT: prints the index of the live daemon for it.
_daemon_index() {
	local i
	for ((i = ${#DAEMON_PIDS[@]} - 1; i >= 0; i--)); do
		if [ "${DAEMON_MNTS[$i]}" = "$1" ] &&
			[ -n "${DAEMON_PIDS[$i]}" ]; then
			echo "$i"
			return 0
		fi
	done
	return 1
}

# Waits for daemon number $1 to exit and collects its status into
# DAEMON_STATUS ("unknown" when it is not our child); false on timeout.
_reap_daemon() {
	local i=$1 pid=${DAEMON_PIDS[$1]}
	wait_gone "$pid" "$MOUNT_WAIT" || return 1
	DAEMON_STATUS=unknown
	if [ "${DAEMON_CHILD[$i]}" = 1 ]; then
		wait "$pid" && DAEMON_STATUS=0 || DAEMON_STATUS=$?
	fi
	DAEMON_PIDS[i]=
	return 0
}

# txfs_forget_daemon MOUNTPOINT: marks its daemon as gone after the
# scenario reaped it itself (for example after kill and wait).
txfs_forget_daemon() {
	local i
	i=$(_daemon_index "$1") || return 0
	DAEMON_PIDS[i]=
}

# txfs_register_daemon PID MOUNTPOINT LOG: adopts a daemon the scenario
# started itself (daemon mode), so cleanup stops it.
txfs_register_daemon() {
	DAEMON_PIDS+=("$1")
	DAEMON_MNTS+=("$2")
	DAEMON_LOGS+=("$3")
	DAEMON_CHILD+=(0)
	echo "$1 $2" >>"$T/.daemons"
}

# txfs_umount [MOUNTPOINT]: unmounts with fusermount3 -u and requires the
# daemon to exit with status 0 and the mount to be gone.
txfs_umount() {
	local mnt=${1:-$MNT} i
	i=$(_daemon_index "$mnt") || fail "no daemon is serving $mnt"
	fusermount3 -u "$mnt" || fail "fusermount3 -u $mnt failed"
	_reap_daemon "$i" ||
		fail "daemon ${DAEMON_PIDS[$i]} still runs ${MOUNT_WAIT}s" \
			"after unmounting $mnt"
	if [ "$DAEMON_STATUS" != 0 ] && [ "$DAEMON_STATUS" != unknown ]; then
		fail "daemon exited with status $DAEMON_STATUS after unmount"
	fi
	! is_fuse_mounted "$mnt" || fail "$mnt is still mounted"
}

# --- watchdog and cleanup ------------------------------------------------------

# Kills everything the scenario started after a timeout.  Runs in the
# watchdog subshell; the daemons are read from $T/.daemons.
_watchdog_fire() {
	local pid mnt
	echo "FAIL: $TEST_NAME timed out after ${TIMEOUT}s" >&2
	: >"$T/.failed"
	: >"$T/.timeout"
	while read -r pid mnt; do
		kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" \
			2>/dev/null || true
		_force_umount "$mnt"
	done <"$T/.daemons"
	for pid in $(_descendants "$_script_pid"); do
		[ "$pid" = "$BASHPID" ] || kill -TERM "$pid" 2>/dev/null || true
	done
	kill -TERM "$_script_pid" 2>/dev/null || true
	_watchdog_sleep 15
	if pid_alive "$_script_pid"; then
		for pid in $(_descendants "$_script_pid"); do
			[ "$pid" = "$BASHPID" ] || kill -KILL "$pid" 2>/dev/null
		done
		kill -KILL "$_script_pid" 2>/dev/null || true
		echo "watchdog: killed the scenario; $T is left behind" >&2
	fi
}

# Sleeps in the background so that the watchdog's TERM trap (cleanup
# stopping it) runs at once and takes the sleep with it.
_watchdog_sleep() {
	sleep "$1" &
	_sleep=$!
	wait "$_sleep"
}

_script_pid=$$
(
	trap - ERR
	set +e
	_sleep=
	trap 'kill $_sleep 2>/dev/null; exit 0' TERM
	_watchdog_sleep "$TIMEOUT"
	_watchdog_fire
) </dev/null &
_watchdog=$!

trap 'echo "terminated by a signal" >&2; : >"$T/.failed"; exit 1' TERM INT HUP

# Prints every mount point at or below $T, deepest first.
_mounts_below_t() {
	local m
	MI_PATH=$(mountinfo_escape "$T") awk '
	$5 == ENVIRON["MI_PATH"] || index($5, ENVIRON["MI_PATH"] "/") == 1 {
		print $5
	}' /proc/self/mountinfo | sort -r | while IFS= read -r m; do
		mountinfo_unescape "$m"
		echo
	done
}

_cleanup() {
	local rc=$? i pid hook m
	set +eE
	trap - ERR
	if [ -e "$T/.failed" ] && [ "$rc" = 0 ]; then
		rc=1
	fi
	kill "$_watchdog" 2>/dev/null
	wait "$_watchdog" 2>/dev/null
	for hook in "${_cleanup_hooks[@]}"; do
		eval "$hook" || true
	done
	for ((i = 0; i < ${#DAEMON_PIDS[@]}; i++)); do
		pid=${DAEMON_PIDS[$i]}
		[ -n "$pid" ] || continue
		if ! pid_alive "$pid"; then
			_reap_daemon "$i"
			continue
		fi
		_force_umount "${DAEMON_MNTS[$i]}"
		if ! _reap_daemon "$i"; then
			echo "cleanup: daemon $pid ignored the unmount;" \
				"killing it" >&2
			kill -KILL -- "-$pid" 2>/dev/null ||
				kill -KILL "$pid" 2>/dev/null
			_reap_daemon "$i"
			[ "$rc" = 0 ] && rc=1
		elif [ "$DAEMON_STATUS" != 0 ] &&
			[ "$DAEMON_STATUS" != unknown ] && [ "$rc" = 0 ]; then
			echo "FAIL: daemon for ${DAEMON_MNTS[$i]} exited with" \
				"status $DAEMON_STATUS on unmount" >&2
			rc=1
		fi
	done
	_mounts_below_t | while IFS= read -r m; do
		echo "cleanup: unmounting leftover mount $m" >&2
		_force_umount "$m"
	done
	if [ "$rc" != 0 ] && [ "$rc" != 77 ]; then
		for ((i = 0; i < ${#DAEMON_LOGS[@]}; i++)); do
			echo "--- daemon log ${DAEMON_LOGS[$i]}" \
				"(${DAEMON_MNTS[$i]}) ---" >&2
			tail -n 200 "${DAEMON_LOGS[$i]}" >&2 2>/dev/null
		done
	fi
	if [ -z "$(_mounts_below_t)" ]; then
		rm -rf --one-file-system "$T"
	else
		echo "cleanup: mounts remain below $T; leaving it" >&2
	fi
	case $rc in
	0) echo "PASS: $TEST_NAME" ;;
	77) ;;
	*) echo "FAIL: $TEST_NAME (status $rc)" ;;
	esac
	exit "$rc"
}
trap _cleanup EXIT

# --- helper programs -----------------------------------------------------------

if [ ! -x "$FSOP" ]; then
	FSOP=$T/fsop
	${CC:-cc} -std=gnu11 -O2 -o "$FSOP" "$TESTS_SRCDIR/fsop.c" ||
		fail "cannot build $FSOP from $TESTS_SRCDIR/fsop.c"
fi
if is_txfsd && [ ! -x "$TXFSD" ]; then
	fail "no txfsd at $TXFSD (set TXFSD or run from a build directory)"
fi

# fsop ARGS…: runs the helper; a usage or set-up error (status 2) fails.
# With FSOP_AS_NOBODY=1 (e.g. "FSOP_AS_NOBODY=1 expect_errno EACCES …") the
# helper runs as nobody:nogroup; $FSOP must then be reachable by nobody.
fsop() {
	local rc=0
	if [ "${FSOP_AS_NOBODY:-0}" = 1 ]; then
		as_nobody "$FSOP" "$@" || rc=$?
	else
		"$FSOP" "$@" || rc=$?
	fi
	if [ "$rc" = 2 ]; then
		fail "fsop $* could not run (status 2)"
	fi
	return "$rc"
}

# --- assertions ------------------------------------------------------------

# assert_eq ACTUAL EXPECTED [WHAT]
assert_eq() {
	if [ "$1" != "$2" ]; then
		fail "${3:-value}: expected '$2', got '$1'"
	fi
}

# assert_ne ACTUAL UNEXPECTED [WHAT]
assert_ne() {
	if [ "$1" = "$2" ]; then
		fail "${3:-value}: did not expect '$2'"
	fi
}

# assert_match STRING EXTENDED-REGEX [WHAT]
assert_match() {
	if ! [[ $1 =~ $2 ]]; then
		fail "${3:-value}: '$1' does not match /$2/"
	fi
}

# assert_exists PATH / assert_missing PATH (neither follows a last symlink).
assert_exists() {
	[ -e "$1" ] || [ -L "$1" ] || fail "$1 does not exist"
}
assert_missing() {
	if [ -e "$1" ] || [ -L "$1" ]; then
		fail "$1 exists"
	fi
}

# assert_content FILE STRING: FILE holds exactly STRING.
assert_content() {
	local got
	got=$(cat -- "$1") || fail "cannot read $1"
	assert_eq "$got" "$2" "content of $1"
}

# assert_same_file A B: A and B have the same bytes.
assert_same_file() {
	cmp -- "$1" "$2" || fail "$1 and $2 differ"
}

# expect_ok FSOP-ARGS…: the fsop call succeeds; its output is printed.
expect_ok() {
	local out rc=0
	out=$(fsop "$@") || rc=$?
	if [ "$rc" != 0 ]; then
		fail "fsop $* failed: $out"
	fi
	if [ -n "$out" ] && [ "$out" != ok ]; then
		printf '%s\n' "$out"
	fi
}

# expect_errno ERRNO[|ERRNO…] FSOP-ARGS…: the call fails with that errno.
expect_errno() {
	local want=$1 out rc=0
	shift
	out=$(fsop "$@") || rc=$?
	if [ "$rc" = 0 ]; then
		fail "fsop $* succeeded; expected $want"
	fi
	if ! [[ "|$want|" == *"|$out|"* ]]; then
		fail "fsop $*: expected $want, got $out"
	fi
}

# assert_fails COMMAND…: COMMAND exits non-zero.
assert_fails() {
	if "$@" >/dev/null 2>&1; then
		fail "'$*' succeeded; expected failure"
	fi
}

# --- comparing trees -------------------------------------------------------

# tree_snapshot DIR: prints one line per entry below DIR (sorted; a top
# level .txfs is left out): path, type, permission bits, owner, group, link
# count, then the size and SHA-256 of regular files, the target of
# symlinks, the device number of devices, and the user.*/trusted.* xattrs.
# Inode numbers and times are deliberately not compared.  Names must not
# contain tabs or newlines.
tree_snapshot() {
	local dir=$1 tmp=$T/.snap
	mkdir -p "$tmp"
	(
		cd "$dir" || exit 1
		find . -mindepth 1 -path ./.txfs -prune -o \
			-printf '%P\t%y\t%m\t%U\t%G\t%n\t%s\t%l\n' \
			>"$tmp/meta"
		find . -mindepth 1 -path ./.txfs -prune -o -type f -print0 |
			xargs -0 -r sha256sum -- >"$tmp/sums"
		find . -mindepth 1 -path ./.txfs -prune -o \( -type b -o \
			-type c \) -print0 | xargs -0 -r stat -c '%n %t:%T' -- \
			>"$tmp/devs"
		find . -mindepth 1 -path ./.txfs -prune -o -print0 |
			xargs -0 -r getfattr -h -d -m '^(user|trusted)\.' \
				-e hex --absolute-names -- >"$tmp/xattrs" \
				2>/dev/null || true
	) || return 1
	awk -F '\t' '
	FILENAME ~ /sums$/ { p = substr($0, 67); sub(/^\.\//, "", p);
		sum[p] = substr($0, 1, 64); next }
	FILENAME ~ /devs$/ { n = split($0, a, " "); p = substr($0, 1,
		length($0) - length(a[n]) - 1); sub(/^\.\//, "", p);
		dev[p] = a[n]; next }
	FILENAME ~ /xattrs$/ {
		if ($0 ~ /^# file: /) { p = substr($0, 9); sub(/^\.\//, "", p);
			next }
		if ($0 != "") xa[p] = xa[p] " " $0
		next }
	{
		p = $1; t = $2
		if (t == "f") r = "reg size=" $7 " sha256=" sum[p]
		else if (t == "d") r = "dir"
		else if (t == "l") r = "lnk size=" $7 " -> " $8
		else if (t == "c") r = "chr " dev[p]
		else if (t == "b") r = "blk " dev[p]
		else if (t == "p") r = "fifo"
		else if (t == "s") r = "sock"
		else r = "type=" t
		printf "%s %s mode=%s uid=%s gid=%s nlink=%s%s\n", p, r, $3, \
			$4, $5, $6, (p in xa) ? " xattrs:" xa[p] : ""
	}' "$tmp/sums" "$tmp/devs" "$tmp/xattrs" "$tmp/meta" | LC_ALL=C sort
}

# tree_compare EXPECTED-DIR ACTUAL-DIR: the two snapshots are identical.
tree_compare() {
	tree_snapshot "$1" >"$T/snap.expected" ||
		fail "cannot snapshot $1"
	tree_snapshot "$2" >"$T/snap.actual" || fail "cannot snapshot $2"
	if ! diff -u "$T/snap.expected" "$T/snap.actual" >"$T/snap.diff"; then
		cat "$T/snap.diff" >&2
		fail "tree $2 differs from $1"
	fi
}

# run_both FUNCTION: runs FUNCTION with the working directory in $REF, then
# in $MNT, recording what each prints; the transcripts must match, and the
# trees ($REF against $MNT and against $SRC) must compare equal.  FUNCTION
# must use relative paths only.  A failure in $REF means the test's own
# expectations are wrong, and is reported as such.
run_both() {
	local f=$1
	# A background subshell keeps set -e in force inside FUNCTION (in a
	# condition it would be ignored).
	(cd "$REF" && "$f") >"$T/$f.ref.out" 2>&1 &
	if ! wait $!; then
		cat "$T/$f.ref.out" >&2
		fail "$f failed on the plain reference directory (test bug?)"
	fi
	(cd "$MNT" && "$f") >"$T/$f.mnt.out" 2>&1 &
	if ! wait $!; then
		cat "$T/$f.mnt.out" >&2
		fail "$f failed through the mount"
	fi
	if ! diff -u "$T/$f.ref.out" "$T/$f.mnt.out" >&2; then
		fail "$f printed different results through the mount"
	fi
	tree_compare "$REF" "$MNT"
	tree_compare "$REF" "$SRC"
}

# as_nobody COMMAND…: runs COMMAND as nobody:nogroup without extra groups.
as_nobody() {
	setpriv --reuid=nobody --regid=nogroup --clear-groups -- "$@"
}

# --- transactions -----------------------------------------------------------

# require_txctl: fails unless $TXCTL is built, and exports TXCTL, FSOP, MNT,
# SRC and T so that members started as "bash -c '…'" or "txctl run -- …"
# can use them.
require_txctl() {
	[ -x "$TXCTL" ] || fail "no txctl at $TXCTL"
	export TXCTL FSOP MNT SRC T
}

# txctl ARGS…: runs txctl against the daemon serving $MNT.
txctl() {
	"$TXCTL" -m "$MNT" "$@"
}

# expect_status STATUS COMMAND…: COMMAND exits with STATUS.  Its standard
# output and error are left in $T/out and $T/err for further checks.
expect_status() {
	local want=$1 rc=0
	shift
	"$@" >"$T/out" 2>"$T/err" || rc=$?
	if [ "$rc" != "$want" ]; then
		cat "$T/out" "$T/err" >&2
		fail "'$*' exited with status $rc; expected $want"
	fi
}

# tx_leader IDFILE COMMAND…: runs COMMAND (a function or a program) in a
# background subshell that first begins a transaction with itself as the
# leader (txctl begin --pid) and writes the id to IDFILE; COMMAND finds it
# in $TXID (exported).  Sets TX_LEADER to the subshell's pid: "wait
# $TX_LEADER" gives COMMAND's status; a subshell not waited for is killed
# at cleanup.  The transaction outlives the subshell.
tx_leader() {
	local file=$1
	shift
	(
		me=$BASHPID
		TXID=$(txctl begin --pid "$me") || fail "txctl begin failed"
		export TXID
		echo "$TXID" >"$file.tmp"
		mv "$file.tmp" "$file"
		"$@"
	) &
	TX_LEADER=$!
	stop_at_cleanup "$TX_LEADER"
}

# tx_wait_id IDFILE: waits for tx_leader to write IDFILE, prints the id.
tx_wait_id() {
	wait_for 30 test -s "$1" || fail "no transaction id in $1"
	cat "$1"
}

# assert_no_tx_state [STATEDIR]: the state directory (default $SRC/.txfs)
# holds nothing but the journal (journal.db*) and the lock file.
assert_no_tx_state() {
	local dir=${1:-$SRC/.txfs} path
	[ -d "$dir" ] || fail "no state directory $dir"
	for path in "$dir"/* "$dir"/.[!.]* "$dir"/..?*; do
		case ${path##*/} in
		journal.db | journal.db-* | lock) ;;
		*) [ ! -e "$path" ] || fail "$dir holds $path" ;;
		esac
	done
}

# --- crashes -----------------------------------------------------------------
#
# For scenarios that crash the daemon (tx_crash*.sh) and so start it
# hundreds of times: these helpers poll with shell builtins only, since a
# process started per poll costs more than the daemon's start-up on a busy
# machine.

# require_crash_points: skips the scenario unless the daemon honours
# TXFS_CRASH (a build configured with --disable-crash-points ignores it).
# A daemon that honours it refuses an unknown point before it even looks
# at its source and mount point.
require_crash_points() {
	local out
	require_txfsd
	out=$(TXFS_CRASH=no-such-point "$TXFSD" -f "$T/no-such-source" \
		"$T/no-such-mountpoint" 2>&1) || true
	if [[ $out != *"unknown crash point"* ]]; then
		echo "SKIP: $TXFSD ignores TXFS_CRASH (crash points disabled)"
		exit 77
	fi
}

# nap SECONDS: sleeps without starting a process (a read that times out on
# a FIFO that nobody writes).
nap() {
	[ -p "$T/.nap" ] || mkfifo "$T/.nap"
	read -r -t "$1" _ <>"$T/.nap" || true
}

# mounted_type ESCAPED-DIR: sets REPLY to the file-system type of the
# topmost mount at the directory mountinfo spells ESCAPED-DIR (see
# mountinfo_escape), or to nothing; builtins only.
mounted_type() {
	local mp rest
	REPLY=
	while read -r _ _ _ _ mp rest; do
		if [ "$mp" = "$1" ]; then
			rest=${rest#* - }
			REPLY=${rest%% *}
		fi
	done </proc/self/mountinfo
}

# pid_running PID: pid_alive with builtins only.
pid_running() {
	local stat
	{ read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 1
	stat=${stat##*) }
	[ "${stat%% *}" != Z ]
}

# txfs_mount_try [txfsd options…]: like txfs_mount ($SRC on $MNT), except
# that a daemon that exits before its mount comes up (as one does when a
# crash point armed for recovery fires) is reaped and forgotten, and the
# function returns 1, with the exit status in DAEMON_STATUS, instead of
# failing the scenario.  The daemon inherits the caller's environment, so
# "TXFS_CRASH=NAME:K txfs_mount_try" arms a crash point.
txfs_mount_try() {
	local mnt esc n=${#DAEMON_PIDS[@]} i
	mnt=$(realpath -m -- "$MNT")
	esc=$(mountinfo_escape "$mnt")
	mounted_type "$esc"
	[ -z "$REPLY" ] || fail "$mnt is mounted already ($REPLY)"
	_daemon_cmd "$SRC" "$MNT" "$@"
	echo "# mount${TXFS_CRASH:+ (TXFS_CRASH=$TXFS_CRASH)}: ${_cmd[*]}"
	_daemon_start "$mnt"
	for ((i = 0; i < MOUNT_WAIT * 100; i++)); do
		mounted_type "$esc"
		case $REPLY in
		fuse | fuse.*) break ;;
		esac
		if ! pid_running "$DAEMON_PID"; then
			DAEMON_STATUS=0
			wait "$DAEMON_PID" || DAEMON_STATUS=$?
			DAEMON_PIDS[n]=
			# (Had it mounted after the last look, the mount is
			# dead now.)
			mounted_type "$esc"
			[ -z "$REPLY" ] || _force_umount "$mnt"
			return 1
		fi
		nap 0.01
	done
	case $REPLY in
	fuse | fuse.*) ;;
	*) fail "no mount at $mnt after ${MOUNT_WAIT}s" ;;
	esac
	if is_txfsd && [ "$REPLY" != fuse.txfs ]; then
		fail "mount at $mnt has type $REPLY, not fuse.txfs"
	fi
	# The first access waits for the FUSE handshake to finish.
	[ -d "$mnt/." ] || fail "cannot stat the new mount $mnt"
}

# txfs_reap_crashed: after the daemon started last (by txfs_mount or
# txfs_mount_try) died on its own (a crash point) or was killed (kill -9),
# waits for it to exit, collects its exit status into DAEMON_STATUS,
# lazily unmounts the dead mount and forgets the daemon, so that its
# status does not fail the scenario.
txfs_reap_crashed() {
	local n=$((${#DAEMON_PIDS[@]} - 1)) esc mnt
	[ "${DAEMON_PIDS[n]}" = "$DAEMON_PID" ] ||
		fail "the daemon $DAEMON_PID is not the last one started"
	# It is our child: wait blocks until it exits (the watchdog ends a
	# daemon that does not).
	wait "$DAEMON_PID" && DAEMON_STATUS=0 || DAEMON_STATUS=$?
	DAEMON_PIDS[n]=
	mnt=${DAEMON_MNTS[n]}
	fusermount3 -uz "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null ||
		true
	esc=$(mountinfo_escape "$mnt")
	mounted_type "$esc"
	[ -z "$REPLY" ] || fail "cannot unmount the dead mount $mnt"
}

# daemon_crash_point [LOG]: sets REPLY to the name of the crash point the
# daemon reported reaching in LOG (default $DAEMON_LOG), or to nothing.
daemon_crash_point() {
	local line
	REPLY=
	while IFS= read -r line; do
		if [[ $line == "txfsd: crash point reached: "* ]]; then
			REPLY=${line#txfsd: crash point reached: }
			return 0
		fi
	done <"${1:-$DAEMON_LOG}"
}
