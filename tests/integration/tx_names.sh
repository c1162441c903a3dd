#!/bin/bash
# Every name operation inside a transaction (create, mkdir, symlink, hard
# links, mkfifo, unlink, rmdir, renames across directories, over a file and
# of a directory, RENAME_NOREPLACE, RENAME_EXCHANGE) shows to the member
# exactly as on a plain directory, never to anyone else, leaves the source
# byte-identical when aborted and is exactly what the source holds after
# commit, renamed objects keeping their inodes.
TIMEOUT=90
. "$(dirname "$0")/lib.sh"
require_txfsd
require_txctl

# make_base DIR: the names the transaction works on, and one it leaves.
make_base() {
	(
		cd "$1"
		printf 'keep\n' >keep.txt
		printf 'victim\n' >victim.txt
		printf 'linked\n' >linked.txt
		printf 'pair\n' >pair1
		ln pair1 pair2
		mkdir gone srcdir dstdir olddir olddir/sub xdir
		printf 'moved\n' >srcdir/moved.txt
		printf 'over\n' >over.txt
		printf 'target\n' >target.txt
		printf 'a\n' >olddir/a.txt
		printf 'b\n' >olddir/sub/b.txt
		ln -s sub/b.txt olddir/in.lnk
		printf 'noreplace a\n' >noreplace_a
		printf 'noreplace b\n' >noreplace_b
		printf 'xfile\n' >xfile
		printf 'in xdir\n' >xdir/in.txt
		chmod 0600 victim.txt
		chmod 0711 olddir
	)
}

# ops: the transaction's work, on relative paths, one call per operation.
ops() {
	printf 'new file\n' >new.txt
	mkdir -m 0750 newdir
	printf 'inner\n' >newdir/inner.txt
	ln -s keep.txt sym.lnk
	ln -s ../no/such/target newdir/dangling.lnk
	expect_ok link linked.txt linked2.txt
	expect_ok link new.txt newdir/new.hard
	printf 'more\n' >>newdir/new.hard
	mkfifo -m 0640 pipe
	expect_ok unlink victim.txt
	expect_ok unlink pair2
	expect_ok rmdir gone
	expect_ok rename srcdir/moved.txt dstdir/moved.txt
	expect_ok rename over.txt target.txt
	expect_ok rename olddir dstdir/renamed
	printf 'added\n' >dstdir/renamed/added.txt
	expect_errno EEXIST rename2 noreplace_a noreplace_b noreplace
	expect_errno EEXIST rename2 noreplace_a dstdir noreplace
	expect_ok rename2 xfile xdir exchange
}

# The names ops creates, and the base names it removes or renames away.
NEW_NAMES="new.txt newdir newdir/inner.txt sym.lnk newdir/dangling.lnk
	linked2.txt newdir/new.hard pipe dstdir/moved.txt dstdir/renamed
	dstdir/renamed/added.txt dstdir/renamed/sub/b.txt"
GONE_NAMES="victim.txt pair2 gone srcdir/moved.txt over.txt olddir
	olddir/a.txt olddir/sub"

# listing DIR: every entry below DIR (the state directory left out) with
# inode, type, mode, owner, size, links, symlink target, mtime and ctime,
# then the content hashes: equal listings mean a byte-identical tree.
listing() {
	(
		cd "$1"
		find . -path ./.txfs -prune -o -printf '%p %y ino=%i mode=%m' \
			-printf ' uid=%U gid=%G size=%s nlink=%n -> %l' \
			-printf ' mtime=%T@ ctime=%C@\n' | LC_ALL=C sort
		find . -path ./.txfs -prune -o -type f -print0 |
			LC_ALL=C sort -z | xargs -0 sha256sum --
	)
}

# outside_view: what a non-member sees of the mount through ls -R, find
# and stat (inode numbers and times included).
outside_view() {
	(
		cd "$MNT"
		LC_ALL=C ls -lAnR --time-style=full-iso .
		find . -path ./.txfs -prune -o \
			-printf '%p %y %i %n %m %s %l\n' | LC_ALL=C sort
		find . -path ./.txfs -prune -o -print0 | LC_ALL=C sort -z |
			xargs -0 stat -c '%n %F %i %h %a %s %Y %Z' --
	)
}

# assert_same SAVED NOW WHAT: the two saved outputs are identical.
assert_same() {
	if ! diff -u "$1" "$2" >&2; then
		fail "$3"
	fi
}

# assert_type PATH TYPE: stat -c %F of PATH is TYPE.
assert_type() {
	assert_eq "$(stat -c %F -- "$1")" "$2" "type of $1"
}

# assert_links PATH COUNT: PATH has COUNT links.
assert_links() {
	assert_eq "$(stat -c %h -- "$1")" "$2" "link count of $1"
}

# member: runs in the transaction; does ops in the mount and checks the
# result, first name by name, then as a whole against the reference.
member() {
	local p
	cd "$MNT"
	ops
	assert_type new.txt "regular file"
	assert_type newdir directory
	assert_type sym.lnk "symbolic link"
	assert_type newdir/dangling.lnk "symbolic link"
	assert_type pipe fifo
	assert_type xfile directory
	assert_type xdir "regular file"
	assert_type dstdir/renamed directory
	assert_eq "$(stat -c %a pipe)" 640 "mode of the fifo"
	assert_eq "$(stat -c %a newdir)" 750 "mode of newdir"
	assert_eq "$(stat -c %a dstdir/renamed)" 711 "mode of the renamed dir"
	assert_eq "$(readlink sym.lnk)" keep.txt "target of sym.lnk"
	assert_eq "$(readlink newdir/dangling.lnk)" ../no/such/target \
		"target of newdir/dangling.lnk"
	assert_content sym.lnk keep
	assert_content dstdir/renamed/in.lnk b
	assert_links linked.txt 2
	assert_links linked2.txt 2
	assert_links new.txt 2
	assert_links newdir/new.hard 2
	assert_links pair1 1
	assert_links keep.txt 1
	assert_links newdir 2
	assert_links dstdir/renamed 3
	# (A subdirectory renamed in adds a link to its new parent.)
	assert_links dstdir 3
	assert_links srcdir 2
	assert_eq "$(stat -c %i linked2.txt)" "$(stat -c %i linked.txt)" \
		"inode of the link to a base file"
	assert_eq "$(stat -c %i newdir/new.hard)" "$(stat -c %i new.txt)" \
		"inode of the link to a new file"
	assert_content new.txt "new file
more"
	assert_content target.txt over
	assert_content dstdir/moved.txt moved
	assert_content dstdir/renamed/a.txt a
	assert_content dstdir/renamed/sub/b.txt b
	assert_content xfile/in.txt "in xdir"
	assert_content xdir xfile
	assert_content noreplace_a "noreplace a"
	assert_content noreplace_b "noreplace b"
	for p in $NEW_NAMES; do
		assert_exists "$p"
	done
	for p in $GONE_NAMES; do
		assert_missing "$p"
		assert_fails stat -- "$p"
	done
	assert_eq "$(ls srcdir)" "" "ls of srcdir"
	assert_eq "$(ls -A xdir 2>&1)" xdir "ls of xdir (a file now)"
	# readdir merges: exactly the reference's names, each once.
	LC_ALL=C ls -A >"$T/ls.member"
	(cd "$REF" && LC_ALL=C ls -A) >"$T/ls.ref"
	assert_same "$T/ls.ref" "$T/ls.member" "the member's ls of the root"
	tree_snapshot "$MNT" >"$T/snap.member"
	assert_same "$T/snap.ref" "$T/snap.member" \
		"the member's view differs from the reference"
}

# assert_outside_unchanged WHAT: a non-member sees the base, name by name
# and as a whole, and the source is untouched.
assert_outside_unchanged() {
	local p
	for p in $NEW_NAMES; do
		assert_missing "$MNT/$p"
		assert_fails stat -- "$MNT/$p"
	done
	for p in $GONE_NAMES; do
		assert_exists "$MNT/$p"
	done
	assert_type "$MNT/xfile" "regular file"
	assert_type "$MNT/xdir" directory
	assert_links "$MNT/linked.txt" 1
	assert_links "$MNT/pair1" 2
	outside_view >"$T/view.now"
	assert_same "$T/view.base" "$T/view.now" "outside view, $1"
	tree_snapshot "$MNT" >"$T/snap.now"
	assert_same "$T/snap.base" "$T/snap.now" "outside snapshot, $1"
	listing "$SRC" >"$T/listing.now"
	assert_same "$T/listing.src" "$T/listing.now" "source, $1"
}

make_base "$SRC"
make_base "$REF"
(
	cd "$REF"
	ops >/dev/null
)
tree_snapshot "$REF" >"$T/snap.ref"
txfs_mount
listing "$SRC" >"$T/listing.src"
outside_view >"$T/view.base"
tree_snapshot "$MNT" >"$T/snap.base"
tree_snapshot "$SRC" >"$T/snap.src"
assert_same "$T/snap.src" "$T/snap.base" "the mount shows the source"

# --- the operations, aborted ------------------------------------------------

tx_leader "$T/txid" member
wait "$TX_LEADER" || fail "the member's operations failed"
tx=$(cat "$T/txid")
assert_outside_unchanged "transaction open"
txctl abort "$tx"
assert_outside_unchanged "after abort"
assert_no_tx_state
for p in "$SRC"/.txfs/tx-*; do
	assert_missing "$p"
done
expect_status 4 txctl status "$tx"

# --- the same operations, committed -----------------------------------------

declare -A ino
for p in olddir olddir/a.txt olddir/sub olddir/sub/b.txt srcdir/moved.txt \
	over.txt xfile xdir linked.txt keep.txt pair1; do
	ino[${p//[^a-z0-9]/_}]=$(stat -c %i "$SRC/$p")
done
tx_leader "$T/txid2" member
wait "$TX_LEADER" || fail "the member's operations failed (second time)"
tx=$(cat "$T/txid2")
assert_outside_unchanged "second transaction open"
expect_status 0 txctl commit "$tx"
tree_compare "$REF" "$SRC"
tree_compare "$REF" "$MNT"
assert_no_tx_state

# Renames were replayed as renames: the objects kept their inodes, and a
# link to a base file links the base inode.
assert_inode() {
	assert_eq "$(stat -c %i "$SRC/$2")" "${ino[${1//[^a-z0-9]/_}]}" \
		"inode of $2 (was $1)"
}
assert_inode olddir dstdir/renamed
assert_inode olddir/a.txt dstdir/renamed/a.txt
assert_inode olddir/sub dstdir/renamed/sub
assert_inode olddir/sub/b.txt dstdir/renamed/sub/b.txt
assert_inode srcdir/moved.txt dstdir/moved.txt
assert_inode over.txt target.txt
assert_inode xfile xdir
assert_inode xdir xfile
assert_inode linked.txt linked.txt
assert_inode linked.txt linked2.txt
assert_inode keep.txt keep.txt
assert_inode pair1 pair1
assert_eq "$(stat -c %i "$SRC/newdir/new.hard")" \
	"$(stat -c %i "$SRC/new.txt")" "inode of the link to a new file"

txfs_umount
