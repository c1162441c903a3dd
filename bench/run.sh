#!/bin/sh
# bench/run.sh: the file-system benchmark behind `make bench`.
#
# usage: run.sh BUILDDIR SRCDIR
#
# Runs the same workloads, interleaved, on three subjects side by side, each
# on its own fresh SOURCE directory under one temporary directory:
#
#   native          the SOURCE directory itself;
#   passthrough_ll  libfuse's low-level example with its default options,
#                   compiled at bench time from libfuse3-dev's examples into
#                   BUILDDIR/bench (its source is never copied into the tree);
#   txfsd           BUILDDIR/txfsd in pass-through mode (no transaction).
#
# and prints one table with the ratios txfsd/passthrough_ll and txfsd/native
# (also saved as BUILDDIR/bench/fsbench-results.txt).  The workloads:
#
#   small files   create, stat and unlink 10,000 4 KiB files in 10 dirs;
#   source tree   untar a deterministic 5,000-file synthetic tree, then a
#                 find(1) stat storm over it, cold and again warm;
#   sequential    write 1 GiB with dd bs=1M conv=fsync, then read it;
#   random reads  20,000 random 4 KiB preads over a 256 MiB file;
#   fd limit      create (open limit + 5,000) empty files in one directory,
#                 then stat them all: more nodes than a daemon that keeps
#                 a descriptor per node can hold.  Not scaled.
#
# Every timed phase but the warm stat storm starts with sync and
# "echo 3 >/proc/sys/vm/drop_caches" (root only), for all subjects alike.
# A subject that cannot mount, dies or hangs shows "failed (...)" in its
# column; the run goes on.  Afterwards BUILDDIR/bench/bench_stm -q runs if it
# was built.  The phases are driven by bench/fsbench.c, which is compiled on
# the spot unless BUILDDIR/bench/fsbench exists.
#
# POSIX sh has no local variables, so each function's variables carry a
# prefix of their own (ss_ in stop_subject, rp_ in run_phase, ...).
#
# Environment:
#   BENCH_QUICK=1        a short smoke run (sizes scaled by 0.1)
#   BENCH_SCALE=F        multiply the workload sizes by F (default 1)
#   BENCH_REPS=N         run the scaled workloads N times, keep the best
#   BENCH_SUBJECTS=LIST  which columns to run (default all three)
#   BENCH_FDLIMIT=0      skip the open-file-limit workload
#   BENCH_TMPDIR=DIR     where the temporary directory goes ($TMPDIR, /tmp)
#   BENCH_TIMEOUT=S      limit for one phase in seconds (default 300)
#   BENCH_KEEP=1         keep the temporary directory and its logs
#   BENCH_TXFSD_OPTS     extra arguments for txfsd, split on blanks
#   BENCH_PTLL_SRC       passthrough_ll.c, or the directory holding it, to
#                        build instead of libfuse3-dev's
#
# Exit status: 0 when every txfsd phase ran (or txfsd was not asked for), 1
# when one failed or bench_stm failed, 2 when the harness could not run.
set -eu

die() {
	printf 'run.sh: %s\n' "$*" >&2
	exit 2
}

[ $# -eq 2 ] || die "usage: run.sh BUILDDIR SRCDIR"
BUILDDIR=$1
SRCDIR=$2
[ -d "$BUILDDIR" ] || die "cannot find build directory $BUILDDIR"
[ -f "$SRCDIR/bench/fsbench.c" ] ||
	die "cannot find $SRCDIR/bench/fsbench.c"

if [ "${BENCH_QUICK:-0}" = 1 ]; then
	SCALE=${BENCH_SCALE:-0.1}
else
	SCALE=${BENCH_SCALE:-1}
fi
REPS=${BENCH_REPS:-1}
SUBJECTS=${BENCH_SUBJECTS:-native passthrough_ll txfsd}
PHASE_TIMEOUT=${BENCH_TIMEOUT:-300}
TMPBASE=${BENCH_TMPDIR:-${TMPDIR:-/tmp}}
PTLL_SRC=${BENCH_PTLL_SRC:-/usr/share/doc/libfuse3-dev/examples}
case $PTLL_SRC in
*.c) ;;
*) PTLL_SRC=$PTLL_SRC/passthrough_ll.c ;;
esac
TXFSD=$BUILDDIR/txfsd
STM_BENCH=$BUILDDIR/bench/bench_stm

awk -v s="$SCALE" 'BEGIN { exit !(s ~ /^[0-9]*\.?[0-9]+$/ && s > 0) }' ||
	die "BENCH_SCALE must be a positive number, not '$SCALE'"
case $REPS in
'' | *[!0-9]* | 0) die "BENCH_REPS must be a positive integer" ;;
esac
case $PHASE_TIMEOUT in
'' | *[!0-9]* | 0) die "BENCH_TIMEOUT must be a positive integer" ;;
esac
for s in $SUBJECTS; do
	case $s in
	native | passthrough_ll | txfsd) ;;
	*) die "unknown subject '$s' in BENCH_SUBJECTS" ;;
	esac
done

# Prints N scaled by SCALE, but at least MIN.
scaled() {
	awk -v n="$1" -v s="$SCALE" -v m="$2" \
		'BEGIN { v = int(n * s + 0.5); print (v < m) ? m : v }'
}

SMALL_FILES=$(scaled 10000 100)
SMALL_DIRS=10
TREE_FILES=$(scaled 5000 100)
SEQ_MIB=$(scaled 1024 16)
RAND_MIB=$(scaled 256 16)
RAND_OPS=$(scaled 20000 1000)
NOFILE=$(awk '/^Max open files/ { print $4 }' /proc/self/limits)
FD_FILES=
if [ "${BENCH_FDLIMIT:-1}" != 0 ]; then
	case $NOFILE in
	'' | *[!0-9]*) ;;
	*) FD_FILES=$((NOFILE + 5000)) ;;
	esac
fi

# --- the temporary directory and its cleanup --------------------------------
WORK=$(mktemp -d "$TMPBASE/txfs-bench.XXXXXX") ||
	die "cannot create a directory in $TMPBASE"
case $WORK in
*[[:space:]]* | *\\*)
	rmdir "$WORK"
	die "$TMPBASE: paths with blanks or backslashes are not supported"
	;;
esac
mkdir "$WORK/bin" "$WORK/results"
: >"$WORK/notes"
: >"$WORK/rows"
JOB_PID=

# Is the process alive (and not a zombie waiting to be reaped)?
alive() {
	al_st=$(sed -n 's/^.*) \(.\).*$/\1/p' "/proc/$1/stat" 2>/dev/null) ||
		return 1
	[ -n "$al_st" ] && [ "$al_st" != Z ]
}

# Prints the file-system type mounted at $1, or nothing.
mounted_type() {
	awk -v m="$1" '$5 == m {
		for (i = 7; i < NF; i++)
			if ($i == "-") { t = $(i + 1); break }
	} END { if (t != "") print t }' /proc/self/mountinfo
}

is_fuse_mounted() {
	case $(mounted_type "$1") in
	fuse*) return 0 ;;
	*) return 1 ;;
	esac
}

# Waits up to $2 tenths of a second for process $1 to end.
wait_gone() {
	wg_n=0
	while alive "$1"; do
		[ "$wg_n" -lt "$2" ] || return 1
		sleep 0.1
		wg_n=$((wg_n + 1))
	done
}

# Unmounts subject $1 and ends its daemon, each step bounded: unmount, then
# SIGTERM, then SIGKILL, then a lazy unmount.  With $2 = hung, kills the
# daemon first, since unmounting waits for a daemon that does not answer.
stop_subject() {
	ss_d=$WORK/$1
	[ -f "$ss_d/pid" ] || return 0
	ss_pid=$(cat "$ss_d/pid")
	if [ "${2:-}" = hung ]; then
		kill -KILL "$ss_pid" 2>/dev/null || true
		wait_gone "$ss_pid" 50 || true
	fi
	if is_fuse_mounted "$ss_d/mnt"; then
		timeout -k 1 10 fusermount3 -u "$ss_d/mnt" 2>/dev/null ||
			timeout -k 1 10 umount "$ss_d/mnt" 2>/dev/null || true
	fi
	if ! wait_gone "$ss_pid" 50; then
		kill -TERM "$ss_pid" 2>/dev/null || true
		if ! wait_gone "$ss_pid" 50; then
			kill -KILL "$ss_pid" 2>/dev/null || true
			wait_gone "$ss_pid" 50 || true
		fi
	fi
	if is_fuse_mounted "$ss_d/mnt"; then
		umount -l "$ss_d/mnt" 2>/dev/null ||
			fusermount3 -u -z "$ss_d/mnt" 2>/dev/null || true
	fi
	wait "$ss_pid" 2>/dev/null || true
	rm -f "$ss_d/pid"
}

# shellcheck disable=SC2317 # called from the EXIT trap.
cleanup() {
	trap - EXIT INT TERM HUP
	if [ -n "$JOB_PID" ]; then
		kill -TERM "$JOB_PID" 2>/dev/null || true
		wait_gone "$JOB_PID" 50 || kill -KILL "$JOB_PID" 2>/dev/null ||
			true
	fi
	for s in native passthrough_ll txfsd; do
		stop_subject "$s"
	done
	if grep -qF " $WORK/" /proc/self/mountinfo; then
		printf 'run.sh: something is still mounted under %s; %s\n' \
			"$WORK" "not removing it" >&2
	elif [ "${BENCH_KEEP:-0}" = 1 ]; then
		printf 'run.sh: kept %s\n' "$WORK" >&2
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

note() {
	printf '%s\n' "$*" >>"$WORK/notes"
}

# Runs a command under the phase time limit, in the background so that a
# signal reaches our traps at once; output to $1 and $2.  Returns its status
# (124 or 137 when the limit hit).
bg_run() {
	bg_out=$1
	bg_err=$2
	shift 2
	timeout -k 5 "$PHASE_TIMEOUT" "$@" >"$bg_out" 2>"$bg_err" </dev/null &
	JOB_PID=$!
	if wait "$JOB_PID"; then bg_rc=0; else bg_rc=$?; fi
	JOB_PID=
	return "$bg_rc"
}

# --- tools: fsbench and passthrough_ll --------------------------------------
CC=${CC:-cc}
if [ -x "$BUILDDIR/bench/fsbench" ]; then
	FSBENCH=$BUILDDIR/bench/fsbench
else
	FSBENCH=$WORK/bin/fsbench
	"$CC" -std=gnu11 -O2 -Wall -o "$FSBENCH" "$SRCDIR/bench/fsbench.c" ||
		die "cannot compile $SRCDIR/bench/fsbench.c"
fi

# Builds passthrough_ll into BUILDDIR/bench unless it is up to date; sets PTLL
# to it, or PTLL_ERR to the reason it is missing.
build_ptll() {
	bp_src=$PTLL_SRC
	bp_bin=$BUILDDIR/bench/passthrough_ll
	if [ ! -f "$bp_src" ] && [ -f "$bp_src.gz" ]; then
		gzip -dc "$bp_src.gz" >"$WORK/passthrough_ll.c"
		bp_src=$WORK/passthrough_ll.c
	fi
	if [ ! -f "$bp_src" ]; then
		PTLL_ERR="failed (no source)"
		note "passthrough_ll: cannot find $PTLL_SRC" \
			"(install libfuse3-dev)"
		return 0
	fi
	if [ -x "$bp_bin" ] && [ -z "$(find "$bp_src" -newer "$bp_bin")" ]; then
		PTLL=$bp_bin
		return 0
	fi
	mkdir -p "$BUILDDIR/bench"
	bp_cflags=$(pkg-config --cflags fuse3) &&
		bp_libs=$(pkg-config --libs fuse3) || bp_libs=
	# shellcheck disable=SC2086 # pkg-config prints several words.
	if [ -n "$bp_libs" ] && "$CC" -O2 -g -Wall $bp_cflags -o "$bp_bin" \
		"$bp_src" $bp_libs 2>"$WORK/ptll-build.log"; then
		PTLL=$bp_bin
		return 0
	fi
	PTLL_ERR="failed (build)"
	note "passthrough_ll: cannot compile $bp_src:" \
		"$(tail -n 3 "$WORK/ptll-build.log" 2>/dev/null)"
}

PTLL=
PTLL_ERR=
case " $SUBJECTS " in
*" passthrough_ll "*) build_ptll ;;
esac

# --- subjects ---------------------------------------------------------------
mnt_of() {
	case $1 in
	native) printf '%s\n' "$WORK/native/src" ;;
	*) printf '%s\n' "$WORK/$1/mnt" ;;
	esac
}

status_of() {
	cat "$WORK/$1/status"
}

# Starts subject $1 on a fresh SOURCE and waits (bounded) for its mount.
start_subject() {
	st_name=$1
	st_d=$WORK/$st_name
	mkdir -p "$st_d/src" "$st_d/mnt"
	case $1 in
	native)
		echo up >"$st_d/status"
		return 0
		;;
	passthrough_ll)
		if [ -z "$PTLL" ]; then
			echo "$PTLL_ERR" >"$st_d/status"
			return 0
		fi
		set -- "$PTLL" -f -o "source=$st_d/src" "$st_d/mnt"
		;;
	txfsd)
		if [ ! -x "$TXFSD" ]; then
			echo "failed (not built)" >"$st_d/status"
			note "txfsd: $TXFSD does not exist"
			return 0
		fi
		mkdir -p "$st_d/state"
		# shellcheck disable=SC2086 # BENCH_TXFSD_OPTS is a word list.
		set -- "$TXFSD" -f --state-dir "$st_d/state" \
			--socket "$st_d/control.sock" ${BENCH_TXFSD_OPTS:-} \
			"$st_d/src" "$st_d/mnt"
		;;
	esac
	echo "$*" >"$st_d/command"
	"$@" >"$st_d/daemon.log" 2>&1 </dev/null &
	echo "$!" >"$st_d/pid"
	st_n=0
	while [ "$st_n" -lt 100 ]; do
		if is_fuse_mounted "$st_d/mnt"; then
			echo up >"$st_d/status"
			return 0
		fi
		if ! alive "$(cat "$st_d/pid")"; then
			echo "failed (no mount)" >"$st_d/status"
			note "$st_name: exited before mounting:" \
				"$(tail -n 3 "$st_d/daemon.log")"
			stop_subject "$st_name"
			return 0
		fi
		sleep 0.1
		st_n=$((st_n + 1))
	done
	echo "failed (no mount)" >"$st_d/status"
	note "$st_name: not mounted after 10 s"
	stop_subject "$st_name"
}

# Is subject $1 still serving?  Marks it failed the first time it is not.
subject_ready() {
	[ "$(status_of "$1")" = up ] || return 1
	[ "$1" = native ] && return 0
	if alive "$(cat "$WORK/$1/pid")" && is_fuse_mounted "$WORK/$1/mnt"; then
		return 0
	fi
	echo "failed (died)" >"$WORK/$1/status"
	note "$1: daemon died or unmounted:" \
		"$(tail -n 3 "$WORK/$1/daemon.log")"
	return 1
}

# --- results ----------------------------------------------------------------
# Declares a table row: KEY, workload label, metric label, kind.  Kinds:
# rate (ops/s), mib=N (N MiB over the time: MiB/s) and secs (lower wins).
row() {
	printf '%s|%s|%s|%s\n' "$1" "$2" "$3" "$4" >>"$WORK/rows"
}

is_number() {
	case $1 in
	'' | *[!0-9.]* | *.*.*) return 1 ;;
	*) return 0 ;;
	esac
}

# Records VALUE for KEY and SUBJECT, keeping the best over repetitions; a
# failure sticks.
record() {
	rc_f=$WORK/results/$1.$2
	if [ -f "$rc_f" ]; then
		rc_old=$(cat "$rc_f")
		is_number "$rc_old" || return 0
		if is_number "$3"; then
			rc_kind=$(awk -F'|' -v k="$1" '$1 == k { print $4 }' \
				"$WORK/rows")
			if [ "$rc_kind" = secs ]; then
				rc_better=$(awk -v a="$3" -v b="$rc_old" \
					'BEGIN { print (a < b) ? a : b }')
			else
				rc_better=$(awk -v a="$3" -v b="$rc_old" \
					'BEGIN { print (a > b) ? a : b }')
			fi
			echo "$rc_better" >"$rc_f"
			return 0
		fi
	fi
	echo "$3" >"$rc_f"
}

# Prints a value for the table: rates whole, MiB/s and seconds with decimals.
fmt_value() {
	if ! is_number "$2"; then
		printf '%s\n' "$2"
		return 0
	fi
	case $1 in
	rate) awk -v v="$2" 'BEGIN { printf "%.0f\n", v }' ;;
	mib=*) awk -v v="$2" 'BEGIN { printf "%.1f\n", v }' ;;
	*) awk -v v="$2" 'BEGIN { printf "%.3f\n", v }' ;;
	esac
}

unit_of() {
	case $1 in
	rate) echo "/s" ;;
	mib=*) echo "MiB/s" ;;
	*) echo "s" ;;
	esac
}

# --- phases -----------------------------------------------------------------
DROP=1
if [ "$(id -u)" != 0 ] || ! { sync && echo 3 >/proc/sys/vm/drop_caches; } \
	2>/dev/null; then
	DROP=0
	note "caches were NOT dropped (needs root); read phases may be warm"
fi

drop_caches() {
	sync
	[ "$DROP" = 0 ] || echo 3 >/proc/sys/vm/drop_caches
}

WL_FAILED=
PHASE_NODROP=
PHASE_PREWARM=

progress() {
	printf '  %-15s %-14s %14s %s\n' "$@"
}

# run_phase KEY SUBJECT FSBENCH-ARGS...: one timed phase, recorded.  Skipped
# when an earlier phase of the same workload failed (WL_FAILED).  Caches
# are dropped first unless PHASE_NODROP is set; PHASE_PREWARM names a file
# read into the cache after the drop.  Always returns 0.
run_phase() {
	rp_key=$1
	rp_s=$2
	shift 2
	rp_kind=$(awk -F'|' -v k="$rp_key" '$1 == k { print $4 }' "$WORK/rows")
	rp_nodrop=$PHASE_NODROP
	rp_prewarm=$PHASE_PREWARM
	PHASE_NODROP=
	PHASE_PREWARM=
	if ! subject_ready "$rp_s"; then
		record "$rp_key" "$rp_s" "$(status_of "$rp_s")"
		WL_FAILED=1
		return 0
	fi
	if [ -n "$WL_FAILED" ]; then
		record "$rp_key" "$rp_s" skipped
		return 0
	fi
	[ -n "$rp_nodrop" ] || drop_caches
	[ -z "$rp_prewarm" ] || cat "$rp_prewarm" >/dev/null
	rp_out=$WORK/$rp_s/$rp_key.out
	rp_err=$WORK/$rp_s/$rp_key.err
	if bg_run "$rp_out" "$rp_err" "$FSBENCH" "$@"; then
		rp_rc=0
	else
		rp_rc=$?
	fi
	# shellcheck disable=SC2046 # the line is "ok OPS SECONDS" or
	# "fail REASON DONE", split on purpose.
	set -- $(head -n 1 "$rp_out")
	if [ $# -eq 3 ] && [ "$1" = ok ]; then
		case $rp_kind in
		rate) rp_v=$(awk -v o="$2" -v t="$3" 'BEGIN { print o / t }') ;;
		mib=*) rp_v=$(awk -v m="${rp_kind#mib=}" -v t="$3" \
			'BEGIN { print m / t }') ;;
		*) rp_v=$3 ;;
		esac
		record "$rp_key" "$rp_s" "$rp_v"
		progress "$rp_s" "$rp_key" "$(fmt_value "$rp_kind" "$rp_v")" \
			"$(unit_of "$rp_kind")"
		return 0
	fi
	WL_FAILED=1
	if [ $# -eq 3 ] && [ "$1" = fail ]; then
		record "$rp_key" "$rp_s" "failed ($2)"
		note "$rp_s $rp_key: $2 after $3 operations:" \
			"$(tail -n 1 "$rp_err")"
	elif [ "$rp_rc" = 124 ] || [ "$rp_rc" = 137 ]; then
		record "$rp_key" "$rp_s" "failed (timeout)"
		note "$rp_s $rp_key: no result after $PHASE_TIMEOUT s;" \
			"stopping $rp_s"
		if [ "$rp_s" != native ]; then
			echo "failed (hung)" >"$WORK/$rp_s/status"
			stop_subject "$rp_s" hung
		fi
	else
		record "$rp_key" "$rp_s" "failed (exit $rp_rc)"
		note "$rp_s $rp_key: exit status $rp_rc: $(tail -n 1 "$rp_err")"
	fi
	progress "$rp_s" "$rp_key" "$(cat "$WORK/results/$rp_key.$rp_s")" ""
}

# Removes a workload's files through the subject (untimed, bounded).
scrub() {
	if subject_ready "$1" &&
		! bg_run /dev/null "$WORK/$1/scrub.err" rm -rf "$2"; then
		note "$1: cannot remove $2: $(tail -n 1 "$WORK/$1/scrub.err")"
	fi
}

# --- workloads --------------------------------------------------------------
row small.create "small files: ${SMALL_FILES} x 4 KiB" "create files/s" rate
row small.stat "  in $SMALL_DIRS directories" "stat files/s" rate
row small.unlink "" "unlink files/s" rate
row untar.extract "source tree: $TREE_FILES files" "untar s" secs
row untar.cold "" "stat storm, cold s" secs
row untar.warm "" "stat storm, warm s" secs
row seq.write "sequential: $SEQ_MIB MiB, 1 MiB" "write+fsync MiB/s" \
	"mib=$SEQ_MIB"
row seq.read "" "read, cold MiB/s" "mib=$SEQ_MIB"
row rand.read "random 4 KiB reads: $RAND_OPS" "reads/s" rate
row rand.size "  over $RAND_MIB MiB, cold" "" none
if [ -n "$FD_FILES" ]; then
	row fd.create "fd limit: $FD_FILES files" "create files/s" rate
	row fd.stat "  in 1 dir (limit $NOFILE)" "stat files/s" rate
fi

wl_small() {
	ws_d=$(mnt_of "$1")/small
	WL_FAILED=
	run_phase small.create "$1" create "$ws_d" "$SMALL_DIRS" \
		"$SMALL_FILES" 4096
	run_phase small.stat "$1" stat "$ws_d" "$SMALL_DIRS" "$SMALL_FILES"
	run_phase small.unlink "$1" unlink "$ws_d" "$SMALL_DIRS" "$SMALL_FILES"
	scrub "$1" "$ws_d"
}

wl_untar() {
	wu_m=$(mnt_of "$1")
	WL_FAILED=
	PHASE_PREWARM=$TARBALL
	run_phase untar.extract "$1" time tar --no-same-owner -xf "$TARBALL" \
		-C "$wu_m"
	run_phase untar.cold "$1" time find "$wu_m/tree" -printf '%s %T@ %m\n'
	PHASE_NODROP=1
	run_phase untar.warm "$1" time find "$wu_m/tree" -printf '%s %T@ %m\n'
	scrub "$1" "$wu_m/tree"
}

wl_seq() {
	wq_f=$(mnt_of "$1")/seq.dat
	WL_FAILED=
	run_phase seq.write "$1" time dd if=/dev/zero of="$wq_f" bs=1M \
		count="$SEQ_MIB" conv=fsync status=none
	run_phase seq.read "$1" time dd if="$wq_f" of=/dev/null bs=1M \
		status=none
	scrub "$1" "$wq_f"
}

wl_rand() {
	wr_f=$(mnt_of "$1")/rand.dat
	WL_FAILED=
	wr_err=$WORK/$1/rand-setup.err
	if subject_ready "$1" && ! bg_run /dev/null "$wr_err" dd if=/dev/zero \
		of="$wr_f" bs=1M count="$RAND_MIB" conv=fsync status=none; then
		WL_FAILED=1
		record rand.read "$1" "failed (setup)"
		note "$1: cannot write $wr_f: $(tail -n 1 "$wr_err")"
	fi
	run_phase rand.read "$1" randread "$wr_f" "$RAND_OPS" 4096 20250101
	scrub "$1" "$wr_f"
}

# Notes how many descriptors the daemon of subject $1 holds after phase $2.
note_fds() {
	[ "$1" != native ] && [ -f "$WORK/$1/pid" ] || return 0
	nf_pid=$(cat "$WORK/$1/pid")
	alive "$nf_pid" || return 0
	nf_open=$(find "/proc/$nf_pid/fd" -mindepth 1 2>/dev/null | wc -l)
	nf_max=$(awk '/^Max open files/ { print $4 }' "/proc/$nf_pid/limits")
	if [ "$nf_max" != unlimited ] &&
		[ "$nf_open" -ge $((nf_max - 16)) ]; then
		note "$1 held $nf_open of its $nf_max file descriptors after" \
			"$2: the daemon was at its open-file limit (EMFILE)"
	else
		note "$1 held $nf_open of its $nf_max file descriptors after $2"
	fi
}

# Runs last: passthrough_ll may be left holding every descriptor it has, and
# the files stay until the sources are removed.
wl_fdlimit() {
	wf_d=$(mnt_of "$1")/flat
	WL_FAILED=
	run_phase fd.create "$1" create "$wf_d" 0 "$FD_FILES" 0
	note_fds "$1" fd.create
	run_phase fd.stat "$1" stat "$wf_d" 0 "$FD_FILES"
	[ -n "$WL_FAILED" ] || note_fds "$1" fd.stat
}

# --- the run ----------------------------------------------------------------
cpus=$(nproc 2>/dev/null || echo '?')
fstype=$(df --output=fstype "$WORK" 2>/dev/null | tail -n 1) ||
	fstype=$(stat -f -c %T "$WORK")
printf 'txfs file-system benchmark, %s\n' "$(date '+%Y-%m-%d %H:%M:%S')"
printf 'host: %s CPUs, Linux %s, load average %s at start\n' "$cpus" \
	"$(uname -r)" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf 'NOTE: on a shared machine absolute figures are noisy (see the load\n'
printf '      averages); the ratios are steadier.\n'
printf 'work directory: %s (%s); each subject has its own SOURCE there\n' \
	"$WORK" "$fstype"
if [ "$DROP" = 1 ]; then
	printf '%s\n' \
		"caches: sync; echo 3 >/proc/sys/vm/drop_caches before every" \
		"        timed phase except the warm stat storm, for every" \
		"        subject alike"
fi
printf 'scale %s, best of %s; phase limit %s s\n' "$SCALE" "$REPS" \
	"$PHASE_TIMEOUT"

# Builds the deterministic source-tree tarball.
TARBALL=$WORK/tree.tar
mkdir "$WORK/tree-build"
"$FSBENCH" mktree "$WORK/tree-build/tree" "$TREE_FILES" 5000 \
	>"$WORK/tree.out" 2>"$WORK/tree.err" ||
	die "cannot generate the source tree: $(cat "$WORK/tree.err")"
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
	--mode=u+rw,go+r,go-w -cf "$TARBALL" -C "$WORK/tree-build" tree
rm -rf "$WORK/tree-build"
read -r _ tfiles tdirs tbytes <"$WORK/tree.out"
tmib=$(awk -v b="$tbytes" 'BEGIN { printf "%.1f", b / 1048576 }')
printf 'source tree: %s files in %s directories, %s MiB (synthetic, seeded)\n' \
	"$tfiles" "$tdirs" "$tmib"

printf 'subjects:\n'
for s in $SUBJECTS; do
	start_subject "$s"
	case $s in
	native)
		printf '  %-15s the SOURCE directory itself\n' "$s"
		;;
	passthrough_ll)
		ver=$(pkg-config --modversion fuse3 2>/dev/null) || ver='?'
		printf '  %-15s %s\n' "$s" \
			"libfuse $ver example with its defaults:" \
			"" "cache=auto (entry and attr timeout 1 s, page" \
			"" "cache dropped at open), no writeback cache," \
			"" "multithreaded; built -O2 [$(status_of "$s")]"
		;;
	txfsd)
		opt=$(sed -n 's/^OPT_CFLAGS = //p' "$BUILDDIR/Makefile" \
			2>/dev/null) || true
		san=$(sed -n 's/^SAN_CFLAGS = //p' "$BUILDDIR/Makefile" \
			2>/dev/null) || true
		printf '  %-15s %s\n' "$s" "pass-through, no transaction;" \
			"" "built ${opt:-?}${san:+ $san} [$(status_of "$s")]"
		case "$opt $san" in
		*-O0* | *sanitize*)
			note "txfsd was built with '$opt $san':" \
				"not an optimised build"
			;;
		esac
		;;
	esac
	if [ -f "$WORK/$s/command" ]; then
		printf '  %-15s $ %s\n' '' "$(cat "$WORK/$s/command")"
	fi
done
printf '\n'

# Prints the subject list rotated left by $1 places, so that over several
# repetitions no subject always runs first after another's clean-up.
rotated() {
	rt_n=$(($1 % $(echo "$SUBJECTS" | wc -w)))
	# shellcheck disable=SC2086 # the validated list is split on purpose.
	set -- $SUBJECTS
	while [ "$rt_n" -gt 0 ]; do
		rt_first=$1
		shift
		set -- "$@" "$rt_first"
		rt_n=$((rt_n - 1))
	done
	echo "$@"
}

rep=1
while [ "$rep" -le "$REPS" ]; do
	[ "$REPS" = 1 ] || printf 'repetition %s of %s\n' "$rep" "$REPS"
	order=$(rotated $((rep - 1)))
	for s in $order; do wl_small "$s"; done
	for s in $order; do wl_untar "$s"; done
	for s in $order; do wl_seq "$s"; done
	for s in $order; do wl_rand "$s"; done
	rep=$((rep + 1))
done
if [ -n "$FD_FILES" ]; then
	for s in $SUBJECTS; do
		wl_fdlimit "$s"
	done
fi
for s in $SUBJECTS; do
	stop_subject "$s"
done

# --- the table --------------------------------------------------------------
cell() {
	if [ -f "$WORK/results/$1.$2" ]; then
		fmt_value "$3" "$(cat "$WORK/results/$1.$2")"
	else
		echo "-"
	fi
}

ratio() {
	if is_number "$1" && is_number "$2"; then
		awk -v a="$1" -v b="$2" 'BEGIN {
			if (b > 0)
				printf "%.2f\n", a / b
			else
				print "-"
		}'
	else
		echo "-"
	fi
}

raw() {
	cat "$WORK/results/$1.$2" 2>/dev/null || echo "-"
}

line() {
	printf '%-28s %-19s %18s %18s %18s %7s %7s\n' "$@"
}

table() {
	line workload metric native passthrough_ll txfsd tx/ptll tx/nat
	while IFS='|' read -r tb_key tb_wl tb_metric tb_kind; do
		if [ "$tb_kind" = none ]; then
			line "$tb_wl" "" "" "" "" "" ""
			continue
		fi
		tb_tx=$(raw "$tb_key" txfsd)
		line "$tb_wl" "$tb_metric" \
			"$(cell "$tb_key" native "$tb_kind")" \
			"$(cell "$tb_key" passthrough_ll "$tb_kind")" \
			"$(cell "$tb_key" txfsd "$tb_kind")" \
			"$(ratio "$tb_tx" "$(raw "$tb_key" passthrough_ll)")" \
			"$(ratio "$tb_tx" "$(raw "$tb_key" native)")"
	done <"$WORK/rows"
	printf '\n'
	printf '%s\n' \
		"Higher is better for /s figures, lower for s figures;" \
		"tx/ptll and tx/nat are the txfsd figure divided by the" \
		"passthrough_ll and native ones."
	printf 'load average at end: %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
	if [ -s "$WORK/notes" ]; then
		printf '\nnotes:\n'
		sed 's/^/  - /' "$WORK/notes"
	fi
}

printf '\n'
mkdir -p "$BUILDDIR/bench"
table | tee "$BUILDDIR/bench/fsbench-results.txt"

status=0
case " $SUBJECTS " in
*" txfsd "*)
	if grep -l '^failed' "$WORK"/results/*.txfsd >/dev/null 2>&1 ||
		! ls "$WORK"/results/*.txfsd >/dev/null 2>&1; then
		status=1
	fi
	;;
esac

if [ -x "$STM_BENCH" ]; then
	printf '\nSTM micro-benchmark (%s -q):\n' "$STM_BENCH"
	if ! "$STM_BENCH" -q; then
		printf 'run.sh: %s failed\n' "$STM_BENCH" >&2
		status=1
	fi
else
	printf '\n(%s not built: STM micro-benchmark skipped)\n' "$STM_BENCH"
fi
exit "$status"
