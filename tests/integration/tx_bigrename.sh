#!/bin/bash
# Renaming a 100,000-entry directory inside a transaction and committing
# it moves the directory itself (same inode, no copy of its entries in the
# state directory) and leaves every entry under the new name; the times of
# the rename and the commit are printed beside those for 1,000 entries.
TIMEOUT=300
. "$(dirname "$0")/lib.sh"
require_txfsd
require_txctl

export LC_ALL=C

# make_dir DIR COUNT: DIR with COUNT empty files e000000…, every 1,000th
# holding its own name.
make_dir() {
	python3 - "$1" "$2" <<-'EOF'
		import os, sys
		d, n = sys.argv[1], int(sys.argv[2])
		os.mkdir(d)
		for i in range(n):
		    name = "e%06d" % i
		    path = os.path.join(d, name)
		    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
		    if i % 1000 == 0:
		        os.write(fd, name.encode())
		    os.close(fd)
	EOF
}

# check_dir DIR COUNT: DIR holds exactly the entries make_dir made.
check_dir() {
	python3 - "$1" "$2" <<-'EOF' || fail "$1 does not hold its $2 entries"
		import os, sys
		d, n = sys.argv[1], int(sys.argv[2])
		names = os.listdir(d)
		assert len(names) == len(set(names)), "duplicate names"
		want = {"e%06d" % i for i in range(n)}
		got = set(names)
		assert got == want, "missing %s, unexpected %s" % (
		    sorted(want - got)[:5], sorted(got - want)[:5])
		for i in range(0, n, 1000):
		    name = "e%06d" % i
		    with open(os.path.join(d, name)) as f:
		        assert f.read() == name, name
	EOF
}

# now_ms: the time in milliseconds.
now_ms() {
	echo $(($(date +%s%N) / 1000000))
}

t0=$(now_ms)
make_dir "$SRC/big" 100000
make_dir "$SRC/small" 1000
echo "# created 101,000 files in the source in $(($(now_ms) - t0)) ms"
mkdir "$SRC/other"
printf 'other\n' >"$SRC/other/file"
txfs_mount

# renamer NAME: renames NAME to NAME.renamed in the transaction, timing the
# rename(2) and a readdir of the renamed directory; checks the member's view.
renamer() {
	local a b c
	cd "$MNT"
	a=$(now_ms)
	expect_ok rename "$1" "$1.renamed"
	b=$(now_ms)
	n=$(ls -f "$1.renamed" | wc -l)
	c=$(now_ms)
	echo "$((b - a)) $((c - b))" >"$T/times.$1"
	assert_eq "$n" "$(($2 + 2))" "entries the member lists in $1.renamed"
	assert_missing "$1"
	assert_content "$1.renamed/e000000" e000000
}

# bigrename NAME COUNT: the whole scenario for one directory.
bigrename() {
	local name=$1 count=$2 ino tx t0 t1 rename_ms list_ms
	ino=$(stat -c %i "$SRC/$name")
	tx_leader "$T/tx.$name" renamer "$name" "$count"
	wait "$TX_LEADER" || fail "the rename of $name in a transaction failed"
	tx=$(cat "$T/tx.$name")
	read -r rename_ms list_ms <"$T/times.$name"

	# Outside, nothing moved, and the state directory holds no copy.
	assert_missing "$MNT/$name.renamed"
	assert_eq "$(stat -c %i "$MNT/$name")" "$(stat -c %i "$SRC/$name")" \
		"inode of $name outside"
	assert_eq "$(ls -f "$MNT/$name" | wc -l)" "$((count + 2))" \
		"entries outside in $name"
	state=$(find "$SRC/.txfs" | wc -l)
	((state < 100)) ||
		fail "the state directory holds $state entries for one rename"

	t0=$(now_ms)
	expect_status 0 txctl commit "$tx"
	t1=$(now_ms)
	echo "# $count entries: rename ${rename_ms} ms, member readdir" \
		"${list_ms} ms, commit $((t1 - t0)) ms"

	assert_missing "$SRC/$name"
	assert_missing "$MNT/$name"
	assert_eq "$(stat -c %i "$SRC/$name.renamed")" "$ino" \
		"inode of the renamed $name in the source"
	check_dir "$SRC/$name.renamed" "$count"
	check_dir "$MNT/$name.renamed" "$count"
	assert_no_tx_state
}

bigrename small 1000
bigrename big 100000
assert_eq "$(ls "$SRC" | tr '\n' ' ')" "big.renamed other small.renamed " \
	"the source's top level"
assert_content "$SRC/other/file" other

txfs_umount
