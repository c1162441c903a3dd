#!/bin/bash
# A file with two hard links changed in a transaction shows the change
# under both names, as one inode with two links, inside the transaction
# and, after commit, in the mount and the source, but never outside before
# the commit or after an abort.
TIMEOUT=60
. "$(dirname "$0")/lib.sh"
require_txfsd
require_txctl

mkdir "$SRC/dir"
printf 'base' >"$SRC/one"
ln "$SRC/one" "$SRC/dir/two"
printf 'base' >"$SRC/a1"
ln "$SRC/a1" "$SRC/a2"
src_ino=$(stat -c %i "$SRC/one")
txfs_mount

# assert_linked DIR A B CONTENT MODE: A and B below DIR are one inode with
# two links, holding CONTENT with permission bits MODE.
assert_linked() {
	local a b
	a=$(stat -c '%i %h %a %s' "$1/$2")
	b=$(stat -c '%i %h %a %s' "$1/$3")
	assert_eq "$b" "$a" "$3 against $2 in $1 (ino links mode size)"
	assert_eq "${a#* }" "2 $5 ${#4}" "links, mode and size of $1/$2"
	assert_content "$1/$2" "$4"
	assert_content "$1/$3" "$4"
}

# The member changes the data through one name and the mode through the
# other, and sees both changes under both names.
member() {
	printf 'changed' >"$MNT/one"
	assert_content "$MNT/dir/two" changed
	chmod 0600 "$MNT/dir/two"
	assert_linked "$MNT" one dir/two changed 600
	printf '+more' >>"$MNT/dir/two"
	assert_linked "$MNT" one dir/two changed+more 600
}

# --- abort ------------------------------------------------------------------

tx_leader "$T/tx1" sh -c \
	'printf aborted >"$MNT/a2" && cat "$MNT/a1" >"$T/a.out"'
wait "$TX_LEADER" || fail "the aborted member failed"
assert_content "$T/a.out" aborted
tx=$(cat "$T/tx1")
assert_linked "$MNT" a1 a2 base 644
txctl abort "$tx"
assert_linked "$MNT" a1 a2 base 644
assert_linked "$SRC" a1 a2 base 644

# --- commit -----------------------------------------------------------------

mnt_ino=$(stat -c %i "$MNT/one")
tx_leader "$T/tx2" member
wait "$TX_LEADER" || fail "the member failed"
tx=$(cat "$T/tx2")

# Outside, nothing changed, under either name.
assert_linked "$MNT" one dir/two base 644
assert_linked "$SRC" one dir/two base 644
assert_eq "$(stat -c %i "$MNT/one")" "$mnt_ino" "inode of one in the mount"

txctl commit "$tx"
assert_linked "$MNT" one dir/two changed+more 600
assert_linked "$SRC" one dir/two changed+more 600
if [ "$(stat -c %i "$SRC/one")" = "$src_ino" ]; then
	echo "# the commit wrote into the base inode ($src_ino)"
else
	echo "# the commit replaced inode $src_ino by $(stat -c %i "$SRC/one")"
fi
assert_no_tx_state

txfs_umount
