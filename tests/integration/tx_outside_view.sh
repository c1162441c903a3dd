#!/bin/bash
# While a large transaction creates 2,000 files in 20 new directories and
# renames 5 base directories, an outside process looping over ls -R, find
# and stat always sees exactly the base tree; after the abort the source
# is as before.
TIMEOUT=90
. "$(dirname "$0")/lib.sh"
require_txfsd
require_txctl

NEWDIRS=20
PERDIR=100
export LC_ALL=C

# The base: five directories the transaction renames (each with files, a
# subdirectory, a symlink), one it leaves alone, and top-level files.
for b in 1 2 3 4 5; do
	mkdir -p "$SRC/b$b/sub"
	for i in $(seq 1 20); do
		printf '%s\n' "b$b/$i" >"$SRC/b$b/file$i"
	done
	for i in $(seq 1 10); do
		printf '%s\n' "b$b/sub/$i" >"$SRC/b$b/sub/deep$i"
	done
	ln -s file1 "$SRC/b$b/link"
done
mkdir "$SRC/still"
seq 1 30 | sed 's/^/still\/s/' | (cd "$SRC" && xargs touch)
for i in $(seq 1 10); do
	printf 'top %s\n' "$i" >"$SRC/top$i"
done
txfs_mount

# outside_ls / outside_find: what a non-member's ls -R and find print.
outside_ls() {
	ls -R "$MNT"
}
outside_find() {
	find "$MNT" -path "$MNT/.txfs" -prune -o -printf '%P %y %n\n' | sort
}
# src_listing: the source with inodes, sizes, links and times.
src_listing() {
	(cd "$SRC" && find . -path ./.txfs -prune -o \
		-printf '%p %y %i %n %s %T@ %C@\n' | sort)
}
outside_ls >"$T/base.ls"
outside_find >"$T/base.find"
base_entries=$(wc -l <"$T/base.find")
echo "# the base tree: $base_entries entries"
src_listing >"$T/src.before"

# member: the transaction's work; the renames come between the creates.
member() {
	local d i b=1
	cd "$MNT"
	for ((d = 1; d <= NEWDIRS; d++)); do
		mkdir "new$d"
		for ((i = 1; i <= PERDIR; i++)); do
			: >"new$d/tx$i"
		done
		if ((d % 4 == 0)); then
			mv "b$b" "renamed$b"
			b=$((b + 1))
		fi
		if ((d == 1)); then
			: >"$T/member.started"
		fi
	done
	assert_eq "$(find . -path ./.txfs -prune -o -name 'tx*' -print |
		wc -l)" $((NEWDIRS * PERDIR)) "files the member sees"
	for b in 1 2 3 4 5; do
		assert_missing "b$b"
		assert_content "renamed$b/sub/deep3" "b$b/sub/3"
		assert_content "renamed$b/link" "b$b/1"
	done
	: >"$T/member.done"
}

# watcher: the outside process; compares every listing with the base
# and looks up names of the transaction, until it has done 5 rounds
# after the member finished.
watcher() {
	local n=0 after=0 b
	while ((after < 5)); do
		if [ -e "$T/member.done" ]; then
			after=$((after + 1))
		fi
		outside_ls >"$T/watch.ls"
		diff -u "$T/base.ls" "$T/watch.ls" >&2 ||
			fail "round $n: ls -R from outside is not the base"
		outside_find >"$T/watch.find"
		diff -u "$T/base.find" "$T/watch.find" >&2 ||
			fail "round $n: find from outside is not the base"
		for b in 1 2 3 4 5; do
			[ -d "$MNT/b$b/sub" ] ||
				fail "round $n: b$b/sub is missing outside"
			[ ! -e "$MNT/renamed$b" ] ||
				fail "round $n: renamed$b shows outside"
		done
		if [ -e "$MNT/new1" ] || [ -e "$MNT/new1/tx1" ]; then
			fail "round $n: new1 shows outside"
		fi
		[ ! -e "$MNT/new$NEWDIRS/tx$PERDIR" ] ||
			fail "round $n: new$NEWDIRS/tx$PERDIR shows outside"
		n=$((n + 1))
	done
	echo "$n" >"$T/watch.rounds"
}

tx_leader "$T/txid" member
leader=$TX_LEADER
wait_for 30 test -e "$T/member.started" || fail "the member never started"
watcher &
watch=$!
stop_at_cleanup "$watch"
wait "$leader" || fail "the member failed"
wait "$watch" || fail "the outside watcher failed"
echo "# the watcher compared $(cat "$T/watch.rounds") listings with the base"
tx=$(cat "$T/txid")

txctl abort "$tx"
src_listing >"$T/src.after"
diff -u "$T/src.before" "$T/src.after" >&2 ||
	fail "the source is not as before the transaction"
outside_find >"$T/after.find"
diff -u "$T/base.find" "$T/after.find" >&2 ||
	fail "the mount is not the base after abort"
assert_no_tx_state

txfs_umount
