#!/bin/bash
# A commit, abort or recovery cut short at any of the daemon's named crash
# points leaves SOURCE, after a restart, holding exactly all of the
# transaction or none of it, as the point promises (all of it once the
# commit was acknowledged), and the state directory holding nothing of it,
# for data, name, directory-rename, hard-link, xattr and mode changes and a
# mix of them.
#
# The points come from "txfsd --crash-points", so new ones are tested
# without changing this script: a point named abort-* is armed while the
# transaction is aborted, recovery-* while the daemon restarts after a
# commit crashed at commit-recorded, any other while it commits.  A point
# named *-step is armed for its 1st, 2nd and a middle hit (abort-*: 1st and
# 2nd); a hit that never comes lets the commit succeed.  Each commit crash
# with outcome "all" is run a second time with the restarts crashed too,
# first at the 1st step recovery redoes, then at the 2nd, before the clean
# restart.  Every point must fire at least once.  TXFS_CRASH_FILTER=REGEX
# makes only the runs whose "CASE COMMIT-POINT RESTART-POINTS" matches,
# besides the commits without a crash that count each case's steps (and
# skips that last check).
TIMEOUT=600
. "$(dirname "$0")/lib.sh"
require_crash_points
require_txctl

FILTER=${TXFS_CRASH_FILTER:-}
# The crash points must never be armed by the environment we inherit.
unset TXFS_CRASH

# make_base DIR: the tree every run starts from.
make_base() {
	mkdir "$1"
	(
		cd "$1"
		seq 1 200 >data1
		printf 'hello\n' >data2
		mkdir -p dir/sub small/deeper
		echo f1 >dir/f1
		echo f2 >dir/f2
		echo f3 >dir/f3
		echo f4 >dir/sub/f4
		echo link >hl1
		ln hl1 dir/hl2
		echo pair >pair1
		ln pair1 pair2
		echo xa1 >xa1
		setfattr -n user.keep -v 1 xa1
		echo xa2 >xa2
		chmod 640 xa2
		echo s1 >small/s1
		echo s2 >small/s2
		echo s3 >small/deeper/s3
		echo keep >keep
	)
}

# The transactions, on relative paths.

# (a) Rewrite an existing file and append to another.
ops_data() {
	echo rewritten >data2
	echo appended >>data1
}

# (b) A chain of renames of a new file, and its first name made again.
ops_names() {
	echo first >a
	echo more >>a
	mv a b
	mv b c
	echo second >a
}

# (c) A directory renamed, a file in it changed before and after.
ops_dirrename() {
	echo changed >>dir/f1
	mv dir moved
	echo changed >>moved/f2
}

# (d) One name of a two-link file removed and the other one's data
# changed; data changed through one name of another pair kept whole.
ops_hardlink() {
	rm dir/hl2
	echo relinked >hl1
	echo more >>pair2
}

# (e) An xattr set and the mode changed on existing files.
ops_attrs() {
	setfattr -n user.x -v one xa1
	setfattr -n user.x -v two xa2
	chmod 600 xa1 xa2
}

# (f) All of the above, and a small tree removed and a directory made.
ops_mix() {
	ops_data
	ops_names
	ops_hardlink
	ops_dirrename
	ops_attrs
	rm -r small
	mkdir newdir
	echo new >newdir/f
}

CASES=(data names dirrename hardlink attrs mix)

# snap DIR: tree_snapshot of DIR (a top-level .txfs left out) with a few
# processes instead of twenty, plus hard-link identity: one line per entry
# with its path, type, permission bits, owner, link count, the size and
# SHA-256 of a regular file or the target of a symlink, and its user.* and
# trusted.* xattrs; then one line per set of names that are hard links of
# each other.
snap() {
	local tmp=$T/.snap.crash
	mkdir -p "$tmp"
	(
		cd "$1" || exit 1
		find . -mindepth 1 -path ./.txfs -prune -o \
			-fprintf "$tmp/meta" \
			'%P\t%y\t%m\t%U\t%G\t%n\t%s\t%l\t%i\n' \
			-type f -exec sha256sum -- {} + >"$tmp/sums"
		getfattr -R -h -d -m '^(user|trusted)\.' -e hex . \
			>"$tmp/xattrs" 2>/dev/null || true
	) || return 1
	LC_ALL=C sort -o "$tmp/meta" "$tmp/meta"
	awk -F '\t' '
	FILENAME ~ /sums$/ { p = substr($0, 67); sub(/^\.\//, "", p);
		sum[p] = substr($0, 1, 64); next }
	FILENAME ~ /xattrs$/ {
		if ($0 ~ /^# file: /) { p = substr($0, 9); next }
		if ($0 != "") xa[p] = xa[p] " " $0
		next }
	{
		p = $1; t = $2
		if (t == "f") r = "reg size=" $7 " sha256=" sum[p]
		else if (t == "d") r = "dir"
		else if (t == "l") r = "lnk -> " $8
		else r = "type=" t
		printf "%s %s mode=%s uid=%s gid=%s nlink=%s%s\n", p, r, $3, \
			$4, $5, $6, (p in xa) ? " xattrs:" xa[p] : ""
		if (t != "d" && $6 > 1)
			links[$9] = ($9 in links) ? links[$9] " " p : p
	}
	END { for (i in links) print "links: " links[i] }' \
		"$tmp/sums" "$tmp/xattrs" "$tmp/meta" | LC_ALL=C sort
}

# fresh_source: $SRC holds the base tree again, and no state directory.
fresh_source() {
	rm -rf --one-file-system "$SRC"
	cp -a "$T/base" "$SRC"
}

# in_mnt COMMAND…: runs COMMAND in $MNT.
in_mnt() {
	cd "$MNT" && "$@"
}

# leftovers: sets REPLY to what the state directory holds besides the
# journal and the lock file (assert_no_tx_state, without failing).
leftovers() {
	local path
	REPLY=
	for path in "$SRC/.txfs"/* "$SRC/.txfs"/.[!.]* "$SRC/.txfs"/..?*; do
		case ${path##*/} in
		journal.db | journal.db-* | lock) ;;
		*) [ ! -e "$path" ] || REPLY+=" ${path#"$SRC"/}" ;;
		esac
	done
}

# problem RUN MESSAGE: records a wrong outcome; the scenario goes on with
# the next run and fails at the end.
problem() {
	local run=$1
	shift
	echo "FAIL: $run: $*" >&2
	echo "$run: $*" >>"$T/problems"
}

# which_state SNAPSHOT-FILE CASE: names the state the snapshot shows.
which_state() {
	if cmp -s "$1" "$T/expect.before"; then
		echo "none of the transaction (BEFORE)"
	elif cmp -s "$1" "$T/expect.$2"; then
		echo "all of the transaction (AFTER)"
	else
		echo "neither BEFORE nor AFTER"
	fi
}

# check_source RUN CASE WANT: the snapshot of $SRC is the expected one
# (WANT: before or after); else a problem is recorded, with the difference.
check_source() {
	local run=$1 case=$2 want=$3 expect
	expect=$T/expect.before
	[ "$want" = before ] || expect=$T/expect.$case
	if ! snap "$SRC" >"$T/snap.got"; then
		problem "$run" "cannot snapshot $SRC"
		return
	fi
	if ! diff -u "$expect" "$T/snap.got" >"$T/snap.diff"; then
		problem "$run" "SOURCE should hold $(which_state "$expect" \
			"$case"), holds $(which_state "$T/snap.got" "$case"):"
		sed 's/^/    /' "$T/snap.diff" | tee -a "$T/problems" >&2
	fi
}

# Per case, the number of steps of its commit (files plus name
# operations, from the daemon's log of a commit without a crash).
declare -A STEPS
# Per crash point: its outcome, and how often it fired.
declare -A OUTCOME FIRED
# Runs already made, by "CASE COMMIT RESTART".
declare -A SEEN
RUNS=0

# mount_crashing RUN SPEC: starts the daemon with TXFS_CRASH=SPEC (may be
# empty).  Returns 1 when it died before mounting, at the crash point SPEC
# names (anything else is a problem, returned as 2).
mount_crashing() {
	local run=$1 spec=$2 fired
	if TXFS_CRASH=$spec txfs_mount_try; then
		return 0
	fi
	daemon_crash_point
	fired=$REPLY
	if [ -n "$spec" ] && [ "$fired" = "${spec%%:*}" ] &&
		[ "$DAEMON_STATUS" = 137 ]; then
		FIRED[$fired]=$((${FIRED[$fired]:-0} + 1))
		return 1
	fi
	problem "$run" "the daemon (TXFS_CRASH=$spec) exited with status" \
		"$DAEMON_STATUS before mounting${fired:+ at $fired}:"
	tail -n 20 "$DAEMON_LOG" | sed 's/^/    /' | tee -a "$T/problems" >&2
	return 2
}

# run_case CASE COMMIT-SPEC RESTART-SPEC…: one run.  From the base tree,
# the daemon starts with COMMIT-SPEC armed (- for none), the case's
# operations run in a transaction, and the transaction is committed (or,
# for an abort-* point, aborted).  Then the daemon restarts once per
# RESTART-SPEC with it armed, and once more without; SOURCE must then
# hold the transaction whole or not at all, as expected.  (The mount is
# not compared too: a snapshot through it costs more than the rest of a
# run, and tx_crash_random.sh reads its files through the mount.)
run_case() {
	local case=$1 spec=$2 name verb rc=0 fired want run rs rc2 txid
	shift 2
	[ "$spec" != - ] || spec=
	name=${spec%%:*}
	run="$case ${spec:--} ${*:--}"
	if [ -n "${SEEN[$run]:-}" ]; then
		return
	fi
	SEEN[$run]=1
	# (The commit without a crash always runs: it counts the steps.)
	if [ -n "$FILTER" ] && [ -n "$spec" ] && ! [[ $run =~ $FILTER ]]; then
		return
	fi
	RUNS=$((RUNS + 1))
	verb=commit
	[[ $name != abort-* ]] || verb=abort

	fresh_source
	mount_crashing "$run" "$spec" ||
		fail "$run: the daemon did not come up with TXFS_CRASH=$spec"
	COMMIT_LOG=$DAEMON_LOG
	rm -f "$T/txid"
	tx_leader "$T/txid" in_mnt "ops_$case"
	wait "$TX_LEADER" || fail "$run: the operations failed in the mount"
	read -r txid <"$T/txid"
	txctl -t 60 "$verb" "$txid" >"$T/out" 2>"$T/err" || rc=$?

	daemon_crash_point
	fired=$REPLY
	if [ -n "$fired" ]; then
		[ "$fired" = "$name" ] ||
			fail "$run: the daemon crashed at $fired, not at $name"
		FIRED[$fired]=$((${FIRED[$fired]:-0} + 1))
		RUN_FIRED=1
		txfs_reap_crashed
		assert_eq "$DAEMON_STATUS" 137 "$run: daemon exit status"
	else
		pid_running "$DAEMON_PID" ||
			fail "$run: the daemon died without a crash point"
		if [ "$rc" != 0 ]; then
			cat "$T/out" "$T/err" >&2
			fail "$run: txctl $verb failed (status $rc)" \
				"without a crash"
		fi
		txfs_umount
	fi

	# What SOURCE must hold from now on.
	if [ "$rc" = 0 ]; then
		want=after
		[ "$verb" = commit ] || want=before
	elif [ "${OUTCOME[$name]}" = all ]; then
		want=after
	else
		want=before
	fi
	echo "# run $RUNS: $run: txctl $verb status $rc," \
		"crashed at ${fired:-nothing}; expecting ${want^^}"

	# A restart its crash point spared had nothing more to recover: the
	# later ones would not fire either.
	for rs in "$@"; do
		rc2=0
		mount_crashing "$run" "$rs" || rc2=$?
		case $rc2 in
		0)
			txfs_umount
			break
			;;
		1) ;;
		*) return ;;
		esac
	done
	mount_crashing "$run" "" || return 0
	check_source "$run" "$case" "$want"
	recovery_reported "$run" "$fired" "$#"
	leftovers
	[ -z "$REPLY" ] || problem "$run" "the state directory holds$REPLY"
	txfs_umount
}

# recovery_reported RUN FIRED NRESTARTS: after a crash at FIRED during the
# commit and a clean restart (NRESTARTS 0), `txctl status` must say what
# recovery did: finished the committed transaction when the crash came
# after the commit record and before it was applied, or discarded the
# unfinished one when the crash came before the record or during an abort.
recovery_reported() {
	local run=$1 fired=$2 want line
	(($3 == 0)) || return 0
	case $fired in
	commit-recorded | commit-flipped | checkpoint-step)
		want="^recovery: +1 committed transaction\\(s\\) finished"
		;;
	commit-flushed | abort-step)
		want=" 1 unfinished transaction\\(s\\) discarded"
		;;
	*) return 0 ;;
	esac
	line=$(txctl status | grep '^recovery:') || line=
	[[ $line =~ $want ]] ||
		problem "$run" "txctl status says '$line', not /$want/"
}

# ks NAME CASE: the hits to arm NAME at: 1, 2 and a middle one of the
# case's steps for a *-step point of commit or recovery, 1 and 2 for one
# of abort, else 1.
ks() {
	local mid
	if [[ $1 != *-step ]]; then
		echo 1
		return
	fi
	if [[ $1 == abort-* ]]; then
		echo 1 2
		return
	fi
	mid=$(((${STEPS[$2]:-6} + 2) / 2))
	if ((mid > 2)); then
		echo 1 2 "$mid"
	else
		echo 1 2
	fi
}

# commit_steps LOG: sets REPLY to the number of steps of the last commit
# LOG reports (files plus name operations), or to nothing.
commit_steps() {
	local line re='committed \(([0-9]+) file\(s\), ([0-9]+) name'
	REPLY=
	while IFS= read -r line; do
		if [[ $line =~ $re ]]; then
			REPLY=$((BASH_REMATCH[1] + BASH_REMATCH[2]))
		fi
	done <"$1"
}

# runs_at CASE NAME K: the runs of CASE with point NAME armed for hit K.
runs_at() {
	local case=$1 name=$2 k=$3
	case $name in
	abort-*)
		run_case "$case" "$name:$k"
		;;
	recovery-*)
		# The second runs below cover recovery-step:1 and :2.
		if [ "$name" = recovery-step ] && ((k <= 2)); then
			return
		fi
		run_case "$case" "$PRIME" "$name:$k"
		;;
	*)
		RUN_FIRED=
		run_case "$case" "$name:$k"
		if [ -n "$RUN_FIRED" ] && [ "${OUTCOME[$name]}" = all ] &&
			((${#CHAIN[@]} > 0)); then
			run_case "$case" "$name:$k" "${CHAIN[@]}"
		fi
		;;
	esac
}

# --- the expected trees ----------------------------------------------------

make_base "$T/base"
snap "$T/base" >"$T/expect.before"
for case in "${CASES[@]}"; do
	cp -a "$T/base" "$T/after.$case"
	(cd "$T/after.$case" && "ops_$case") ||
		fail "ops_$case failed on a plain directory (test bug?)"
	snap "$T/after.$case" >"$T/expect.$case"
	if cmp -s "$T/expect.before" "$T/expect.$case"; then
		fail "ops_$case changes nothing (test bug?)"
	fi
done

# --- the crash points ------------------------------------------------------

NAMES=()
PRIME=
while IFS=$'\t' read -r name outcome _; do
	case $outcome in
	all | none) ;;
	*) fail "crash point $name has outcome '$outcome', not all or none" ;;
	esac
	NAMES+=("$name")
	OUTCOME[$name]=$outcome
	if [ -z "$PRIME" ] && [ "$outcome" = all ] &&
		[[ $name != abort-* && $name != recovery-* ]]; then
		PRIME=$name
	fi
done < <("$TXFSD" --crash-points)
((${#NAMES[@]} > 0)) || fail "txfsd --crash-points lists no point"
[ -n "$PRIME" ] || fail "no commit crash point has outcome all"
# Recovery has the most to redo after a crash at the commit record.
if [ -n "${OUTCOME[commit-recorded]:-}" ]; then
	PRIME=commit-recorded
fi
# The restarts that crash recovery after a commit crash with outcome all.
CHAIN=()
if [ -n "${OUTCOME[recovery-step]:-}" ]; then
	CHAIN=(recovery-step:1 recovery-step:2)
fi
echo "# crash points: ${NAMES[*]}"

: >"$T/problems"
for case in "${CASES[@]}"; do
	# A commit without a crash: the case itself, and its step count.
	COMMIT_LOG=/dev/null
	run_case "$case" -
	commit_steps "$COMMIT_LOG"
	[ -z "$REPLY" ] || STEPS[$case]=$REPLY
	echo "# case $case: ${STEPS[$case]:-an unknown number of} steps"

	for name in "${NAMES[@]}"; do
		for k in $(ks "$name" "$case"); do
			runs_at "$case" "$name" "$k"
		done
	done
done

summary=
for name in "${NAMES[@]}"; do
	summary+=" $name=${FIRED[$name]:-0}"
done
echo "# $RUNS runs; crashes per point:$summary"
if [ -s "$T/problems" ]; then
	fail "$(grep -c '^[^ ]' "$T/problems") wrong outcome(s) in $RUNS" \
		"runs (listed above)"
fi
if [ -z "$FILTER" ]; then
	for name in "${NAMES[@]}"; do
		[ "${FIRED[$name]:-0}" -gt 0 ] ||
			fail "crash point $name never fired (not wired in?)"
	done
fi
