#!/bin/bash
# Concurrent transactions cut short by a SIGKILL of the daemon at a random
# moment are all or nothing after the restart: every acknowledged commit is
# there whole, every other transaction is either whole or absent, earlier
# rounds stay as they were, and the state directory holds nothing of them.
#
# TXFS_CRASH_ROUNDS sets the number of rounds (default 20) and
# TXFS_CRASH_SEED the seed of $RANDOM, printed for reproduction.
TIMEOUT=300
. "$(dirname "$0")/lib.sh"
require_txfsd
require_txctl

ROUNDS=${TXFS_CRASH_ROUNDS:-20}
SEED=${TXFS_CRASH_SEED:-$$}
NTX=4
NFILES=12
RANDOM=$SEED
echo "# $ROUNDS rounds of $NTX transactions, seed $SEED"

# The work of transaction J of a round, run as sh -c in the round's
# directory ($1) with the marker ($2), J ($3) and the number of files to
# rewrite ($4): it rewrites d$J/f*, creates d$J/new1 and renames it to
# d$J/new2, renames d$J/from to d$J/to and appends to it, and creates
# shared/s$J.  Then it makes the file $5 (outside the mount) to say that
# the commit comes next.
WORK='set -e
cd "$1"
i=1
while [ "$i" -le "$4" ]; do
	echo "$2" >"d$3/f$i"
	i=$((i + 1))
done
echo "$2" >"d$3/new1"
mv "d$3/from" "d$3/to"
echo "$2" >>"d$3/to"
echo "$2" >"shared/s$3"
mv "d$3/new1" "d$3/new2"
: >"$5"'

# make_round R: the files the transactions of round R start from, made in
# $SRC while no daemon runs.
make_round() {
	local j i
	for ((j = 1; j <= NTX; j++)); do
		mkdir -p "$SRC/r$1/d$j"
		for ((i = 1; i <= NFILES; i++)); do
			echo old >"$SRC/r$1/d$j/f$i"
		done
		echo old >"$SRC/r$1/d$j/from"
	done
	mkdir "$SRC/r$1/shared"
}

# read_file PATH: sets REPLY to the lines of PATH joined by "|", or to
# "-" when PATH does not exist (builtins only: this runs thousands of
# times).
read_file() {
	local lines
	if [ ! -e "$1" ] && [ ! -L "$1" ]; then
		REPLY=-
		return
	fi
	mapfile -t lines <"$1" || {
		REPLY="?unreadable"
		return
	}
	local IFS='|'
	REPLY="${lines[*]}"
}

# tx_state DIR R J: sets REPLY to "new" when every file of transaction J of
# round R below DIR is as the transaction left it, "old" when every one is
# as before, else to the list of files and their contents.
tx_state() {
	local base=$1/r$2 j=$3 marker=r$2t$3 path want_new want_old
	local n_new=0 n_old=0 n=0 detail='' i
	local -a items=()
	for ((i = 1; i <= NFILES; i++)); do
		items+=("d$j/f$i" "$marker" old)
	done
	items+=("d$j/new1" - - "d$j/new2" "$marker" -)
	items+=("d$j/from" - old "d$j/to" "old|$marker" -)
	items+=("shared/s$j" "$marker" -)
	for ((i = 0; i < ${#items[@]}; i += 3)); do
		path=${items[i]}
		want_new=${items[i + 1]}
		want_old=${items[i + 2]}
		read_file "$base/$path"
		n=$((n + 1))
		[ "$REPLY" != "$want_new" ] || n_new=$((n_new + 1))
		[ "$REPLY" != "$want_old" ] || n_old=$((n_old + 1))
		detail+=" $path=$REPLY"
	done
	if ((n_new == n)); then
		REPLY=new
	elif ((n_old == n)); then
		REPLY=old
	else
		REPLY="mixed:$detail"
	fi
}

# OUTCOME[R.J]: "new" or "old", what the check after round R found;
# STATUS[J]: the exit status of txctl run for transaction J of this round.
declare -A OUTCOME
STATUS=()
ACKED=0
APPLIED_UNACKED=0
LOST=0
CONFLICTS=0

# check_tx DIR Q J R: after the restart of round R, transaction J of round
# Q is whole or absent in DIR: as found before when Q is an earlier round;
# else whole when its commit was acknowledged and absent when it
# conflicted.  Sets REPLY to "new" or "old".
check_tx() {
	local where="round $2, transaction $3 in ${1##*/}"
	tx_state "$1" "$2" "$3"
	case $REPLY in
	mixed:*) fail "$where is there only in part:${REPLY#mixed:}" ;;
	esac
	if (($2 < $4)); then
		assert_eq "$REPLY" "${OUTCOME[$2.$3]}" "$where after round $4"
	elif [ "${STATUS[$3]}" = 0 ] && [ "$REPLY" != new ]; then
		fail "$where: acknowledged, but not there"
	elif [ "${STATUS[$3]}" = 3 ] && [ "$REPLY" != old ]; then
		fail "$where: conflicted, but there"
	fi
}

# check_round R: check_tx for every transaction so far, in $SRC and $MNT.
check_round() {
	local q j
	for ((q = 1; q <= $1; q++)); do
		for ((j = 1; j <= NTX; j++)); do
			check_tx "$SRC" "$q" "$j" "$1"
			check_tx "$MNT" "$q" "$j" "$1"
			[ "$q" != "$1" ] || OUTCOME[$q.$j]=$REPLY
		done
	done
}

for ((r = 1; r <= ROUNDS; r++)); do
	make_round "$r"
	txfs_mount
	pids=()
	rm -f "$T"/ready.*
	for ((j = 1; j <= NTX; j++)); do
		printf -v delay '0.%03d' $((RANDOM % 150))
		(
			sleep "$delay"
			exec "$TXCTL" -m "$MNT" -t 60 run -- sh -c "$WORK" \
				sh "$MNT/r$r" "r${r}t$j" "$j" "$NFILES" \
				"$T/ready.$j"
		) >"$T/tx.$j.out" 2>&1 &
		pids[j]=$!
	done
	# The kill comes 0 to 300 ms after the first transaction finished its
	# work, so that it often finds commits under way.
	for ((i = 0; i < 3000; i++)); do
		ready=("$T"/ready.*)
		[ ! -e "${ready[0]}" ] || break
		nap 0.01
	done
	printf -v delay '0.%03d' $((RANDOM % 300))
	nap "$delay"
	kill -KILL "$DAEMON_PID" || fail "the daemon died before the kill"
	STATUS=()
	for ((j = 1; j <= NTX; j++)); do
		STATUS[j]=0
		wait "${pids[j]}" || STATUS[j]=$?
	done
	txfs_reap_crashed
	assert_eq "$DAEMON_STATUS" 137 "status of the killed daemon"

	txfs_mount
	check_round "$r"
	assert_no_tx_state
	line=
	for ((j = 1; j <= NTX; j++)); do
		line+=" ${STATUS[j]}/${OUTCOME[$r.$j]}"
		if [ "${STATUS[j]}" = 0 ]; then
			ACKED=$((ACKED + 1))
		elif [ "${STATUS[j]}" = 3 ]; then
			CONFLICTS=$((CONFLICTS + 1))
		elif [ "${OUTCOME[$r.$j]}" = new ]; then
			APPLIED_UNACKED=$((APPLIED_UNACKED + 1))
		else
			LOST=$((LOST + 1))
		fi
	done
	echo "# round $r: txctl status/outcome per transaction:$line"
	txfs_umount
done

echo "# summary: $ROUNDS rounds, $((ROUNDS * NTX)) transactions:" \
	"$ACKED acknowledged, $APPLIED_UNACKED crashed mid-commit (applied," \
	"not acknowledged), $LOST lost unacknowledged, $CONFLICTS conflicts"
((ACKED > 0)) || fail "no commit was acknowledged before a kill"
((APPLIED_UNACKED + LOST > 0)) ||
	fail "every transaction was committed before its kill"
