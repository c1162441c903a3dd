#!/bin/bash
# Inside a transaction "rm -r d; mkdir d" gives an empty d (a recreated
# subdirectory is empty too), inside and after commit, and readdir of a
# 3,000-entry directory stays exact while members add and remove 500
# names: no duplicates, no missing names, stable offsets and seekdir.
TIMEOUT=90
. "$(dirname "$0")/lib.sh"
require_txfsd
require_txctl

BASE=3000

# make_trees DIR: two populated directories to remove and recreate.
make_trees() {
	local t
	for t in d e; do
		mkdir -p "$1/$t/sub/deeper"
		printf 'a\n' >"$1/$t/a.txt"
		printf 'b\n' >"$1/$t/sub/b.txt"
		printf 'c\n' >"$1/$t/sub/deeper/c.txt"
		ln -s a.txt "$1/$t/l.lnk"
		mkfifo "$1/$t/sub/pipe"
	done
}

# recreate: the transaction's work, relative: d comes back empty, e with
# a new file and an empty sub.
recreate() {
	rm -r d
	mkdir d
	rm -r e
	mkdir e
	printf 'new\n' >e/new.txt
	mkdir e/sub
}

# de_snapshot ROOT: tree_snapshot of ROOT/d and ROOT/e (not of big, whose
# 3,000 files would take long to hash through the mount).
de_snapshot() {
	local t
	for t in d e; do
		stat -c "$t %F mode=%a nlink=%h" "$1/$t"
		tree_snapshot "$1/$t" | sed "s|^|$t/|"
	done
}

# --- rm -r; mkdir -----------------------------------------------------------

make_trees "$SRC"
make_trees "$REF"
(
	cd "$REF"
	recreate
)
mkdir "$SRC/big"
(cd "$SRC/big" && seq -f 'f%04g' 0 $((BASE - 1)) | xargs touch)
txfs_mount
de_snapshot "$MNT" >"$T/snap.base"

rmrf_member() {
	cd "$MNT"
	recreate
	assert_eq "$(ls -A d)" "" "ls -A d after rm -r d; mkdir d"
	assert_eq "$(find d | wc -l)" 1 "entries find sees below d"
	assert_eq "$(stat -c %h d)" 2 "link count of the new d"
	assert_missing d/a.txt
	assert_missing d/sub
	assert_fails stat d/sub/deeper/c.txt
	assert_eq "$(ls -A e | tr '\n' ' ')" "new.txt sub " "ls -A e"
	assert_eq "$(ls -A e/sub)" "" "ls -A of the recreated e/sub"
	assert_missing e/sub/b.txt
	assert_missing e/sub/deeper
	assert_content e/new.txt new
	de_snapshot "$MNT" >"$T/snap.member"
	de_snapshot "$REF" >"$T/snap.ref"
	diff -u "$T/snap.ref" "$T/snap.member" >&2 ||
		fail "the member's d and e differ from the reference"
}
tx_leader "$T/tx1" rmrf_member
wait "$TX_LEADER" || fail "rm -r; mkdir in the transaction failed"
tx1=$(cat "$T/tx1")
de_snapshot "$MNT" >"$T/snap.now"
diff -u "$T/snap.base" "$T/snap.now" >&2 ||
	fail "a non-member sees the transaction's rm -r and mkdir"
assert_content "$MNT/d/sub/deeper/c.txt" c
expect_status 0 txctl commit "$tx1"
for dir in "$SRC" "$MNT"; do
	assert_eq "$(ls -A "$dir/d")" "" "ls -A $dir/d after commit"
	assert_eq "$(ls -A "$dir/e/sub")" "" "ls -A $dir/e/sub after commit"
done
de_snapshot "$REF" >"$T/snap.ref"
de_snapshot "$SRC" >"$T/snap.src"
diff -u "$T/snap.ref" "$T/snap.src" >&2 ||
	fail "the source's d and e differ from the reference after commit"
assert_no_tx_state

# --- readdir of a big directory while members change it ---------------------

# The name sets, sorted (LC_ALL=C): the base; the 500 names removed (every
# sixth), the 500 added; the 2,500 base names no one touches concurrently;
# every name that may appear; the result.
export LC_ALL=C
seq -f 'f%04g' 0 $((BASE - 1)) >"$T/base.names"
awk 'NR % 6 == 1' "$T/base.names" >"$T/removed.names"
seq -f 'n%04g' 0 499 >"$T/added.names"
comm -23 "$T/base.names" "$T/removed.names" >"$T/stable.names"
sort "$T/base.names" "$T/added.names" >"$T/any.names"
sort "$T/stable.names" "$T/added.names" >"$T/expected.names"
assert_eq "$(wc -l <"$T/removed.names")" 500 "names to remove"
assert_eq "$(wc -l <"$T/stable.names")" 2500 "names left alone"

# check_listing FILE WHAT: the raw readdir in FILE (ls -f, so with . and
# ..) holds each name once, every stable name, and nothing unexpected.
check_listing() {
	local sorted=$1.sorted
	grep -vxE '\.|\.\.' "$1" | sort >"$sorted"
	[ "$(grep -cxE '\.|\.\.' "$1")" = 2 ] ||
		fail "$2: . and .. are not listed once each"
	[ -z "$(uniq -d "$sorted")" ] ||
		fail "$2: duplicates: $(uniq -d "$sorted" | head -5 | xargs)"
	[ -z "$(comm -23 "$T/stable.names" "$sorted")" ] ||
		fail "$2: missing: $(comm -23 "$T/stable.names" "$sorted" |
			head -5 | xargs)"
	[ -z "$(comm -13 "$T/any.names" "$sorted")" ] ||
		fail "$2: unexpected: $(comm -13 "$T/any.names" "$sorted" |
			head -5 | xargs)"
}

# lister: a member reading big with ls -f until told to stop.
lister() {
	local n=0
	while [ ! -e "$T/stop" ]; do
		ls -f "$MNT/big" >"$T/lister.out"
		check_listing "$T/lister.out" "member ls -f number $((n + 1))"
		n=$((n + 1))
	done
	echo "$n" >"$T/lister.count"
}

big_member() {
	local lpid
	cd "$MNT/big"
	lister &
	lpid=$!
	# Interleaved: one name added, one removed, 500 times.
	paste -d ' ' "$T/added.names" "$T/removed.names" |
		while read -r add rm; do
			: >"$add"
			rm "$rm"
		done
	: >"$T/stop"
	wait "$lpid" || fail "the member's lister failed"
	ls -f . >"$T/final.out"
	check_listing "$T/final.out" "member ls -f after the changes"
	diff -u "$T/expected.names" "$T/final.out.sorted" >&2 ||
		fail "the member's final listing is not the expected set"
	ls -A >"$T/ls.out"
	diff -u "$T/expected.names" "$T/ls.out" >&2 ||
		fail "the member's ls -A is not the expected set"
	assert_eq "$(find . -mindepth 1 | wc -l)" 3000 "entries find sees"
	# telldir/seekdir: every position found by telldir leads back to its
	# entry, and a rewind reads the same sequence (. and .. counted).
	assert_eq "$("$FSOP" dirseek . 7)" 3002 "fsop dirseek in the merged dir"
	# One readdir stream, changed under it half-way: every name neither
	# added nor removed meanwhile comes exactly once.
	python3 - <<'EOF' || fail "a readdir stream changed half-way"
import collections, os
it = os.scandir(".")
seen = []
for e in it:
    seen.append(e.name)
    if len(seen) == 1000:
        break
before = set(os.listdir("."))
removed = sorted(n for n in before if n.startswith("f"))[::10][:100]
added = ["s%04d" % i for i in range(100)]
for n in removed:
    os.unlink(n)
for n in added:
    open(n, "w").close()
seen += [e.name for e in it]
stable = before - set(removed)
dups = sorted(n for n, c in collections.Counter(seen).items() if c > 1)
assert not dups, "duplicates: %s" % dups[:5]
missing = stable - set(seen)
assert not missing, "missing: %s" % sorted(missing)[:5]
unexpected = set(seen) - before - set(added)
assert not unexpected, "unexpected: %s" % sorted(unexpected)[:5]
with open(os.environ["T"] + "/stream.removed", "w") as f:
    f.write("".join(n + "\n" for n in removed))
EOF
	assert_eq "$(ls | wc -l)" 3000 "entries after the stream's changes"
	assert_eq "$("$FSOP" dirseek . 13)" 3002 "fsop dirseek after the stream"
}

ls -f "$MNT/big" >"$T/outside.before"
tx_leader "$T/tx2" big_member
wait "$TX_LEADER" || fail "the member's readdir checks failed"
echo "# the member listed big $(cat "$T/lister.count") times while changing it"
tx2=$(cat "$T/tx2")

# Outside, the directory is the base.
ls -A "$MNT/big" >"$T/outside.ls"
diff -u "$T/base.names" "$T/outside.ls" >&2 ||
	fail "a non-member's ls of big is not the base"

# After commit, the source and the mount hold the member's final set.
comm -23 "$T/expected.names" "$T/stream.removed" >"$T/committed.names"
seq -f 's%04g' 0 99 >>"$T/committed.names"
sort -o "$T/committed.names" "$T/committed.names"
assert_eq "$(wc -l <"$T/committed.names")" 3000 "names to expect in big"
expect_status 0 txctl commit "$tx2"
for dir in "$SRC" "$MNT"; do
	ls -A "$dir/big" >"$T/after.ls"
	diff -u "$T/committed.names" "$T/after.ls" >&2 ||
		fail "$dir/big after commit is not the member's final set"
	ls -f "$dir/big" >"$T/after.raw"
	[ -z "$(sort "$T/after.raw" | uniq -d)" ] ||
		fail "ls -f $dir/big after commit lists duplicates"
done
assert_eq "$("$FSOP" dirseek "$MNT/big" 7)" 3002 "dirseek after commit"
assert_no_tx_state

txfs_umount
