#!/bin/bash
# bench/commit.sh: what a commit costs, next to what the same bytes cost
# written and fsync'ed natively.  Part of `make bench`.
#
# usage: commit.sh BUILDDIR
#
# On a fresh SOURCE mounted by BUILDDIR/txfsd it measures, for one file of
# BENCH_COMMIT_MIB MiB (default 1024):
#
#   native fsync     dd the file's size into the native directory with
#                    conv=fsync (the floor for making those bytes durable);
#   copy-up          the first write inside a transaction (one byte), which
#                    copies the file into a shadow (a reflink where the file
#                    system has one, else copy_file_range);
#   commit           txctl commit of that transaction: fsync of the shadow,
#                    the journal record, the view flip and a rename into
#                    SOURCE -- no second copy of the bytes;
#   commit, 1 file   txctl commit of a one-byte change to a 4 KiB file.
#
# Times are wall-clock milliseconds, best of BENCH_REPS (default 3).
set -eu

BUILDDIR=${1:?usage: commit.sh BUILDDIR}
TXFSD=$BUILDDIR/txfsd
TXCTL=$BUILDDIR/txctl/txctl
MIB=${BENCH_COMMIT_MIB:-1024}
REPS=${BENCH_REPS:-3}
T=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/txfs-commit.XXXXXX")
SRC=$T/src MNT=$T/mnt SOCK=$T/sock
mkdir -p "$SRC" "$MNT" "$T/native"

cleanup() {
	fusermount3 -u "$MNT" 2>/dev/null || fusermount3 -uz "$MNT" 2>/dev/null || true
	[ -n "${DPID:-}" ] && wait "$DPID" 2>/dev/null || true
	rm -rf "$T"
}
trap cleanup EXIT

ms() { echo $(($(date +%s%N) / 1000000)); }
drop() { sync; [ "$(id -u)" = 0 ] && echo 3 >/proc/sys/vm/drop_caches || true; }
best() { sort -n | head -1; }

"$TXFSD" -f --socket "$SOCK" "$SRC" "$MNT" 2>"$T/txfsd.log" &
DPID=$!
for _ in $(seq 100); do
	grep -q " $MNT fuse" /proc/mounts && [ -S "$SOCK" ] && break
	sleep 0.1
done
ctl() { "$TXCTL" --socket "$SOCK" "$@"; }

native=() copyup=() commit=() small=()
dd if=/dev/urandom of="$SRC/small" bs=4k count=1 status=none
for _ in $(seq "$REPS"); do
	drop
	t0=$(ms)
	dd if=/dev/zero of="$T/native/f" bs=1M count="$MIB" conv=fsync status=none
	native+=($(($(ms) - t0)))
	rm -f "$T/native/f"

	dd if=/dev/zero of="$SRC/big" bs=1M count="$MIB" conv=fsync status=none
	drop
	# A member shell: begin binds it, the write copies up, commit publishes.
	out=$(bash -c '
		txctl=$0 sock=$1 mnt=$2
		id=$("$txctl" --socket "$sock" begin --pid $$ --label bench) || exit 1
		t0=$(($(date +%s%N) / 1000000))
		printf x | dd of="$mnt/big" bs=1 count=1 seek=4096 conv=notrunc status=none
		t1=$(($(date +%s%N) / 1000000))
		printf x | dd of="$mnt/small" bs=1 count=1 seek=17 conv=notrunc status=none
		echo "$id $((t1 - t0))"
	' "$TXCTL" "$SOCK" "$MNT")
	id=${out% *}
	copyup+=(${out#* })
	t0=$(ms)
	ctl commit "$id" >/dev/null
	commit+=($(($(ms) - t0)))

	out=$(bash -c '
		id=$("$0" --socket "$1" begin --pid $$) || exit 1
		printf y | dd of="$2/small" bs=1 count=1 seek=18 conv=notrunc status=none
		echo "$id"' "$TXCTL" "$SOCK" "$MNT")
	t0=$(ms)
	ctl commit "$out" >/dev/null
	small+=($(($(ms) - t0)))
	rm -f "$SRC/big"
done

printf '\ncommit cost (%s MiB file, best of %s, milliseconds)\n' "$MIB" "$REPS"
printf '  %-44s %8s\n' \
	"native: write + fsync ${MIB} MiB" "$(printf '%s\n' "${native[@]}" | best)" \
	"txfsd: copy-up on first write (${MIB} MiB)" "$(printf '%s\n' "${copyup[@]}" | best)" \
	"txfsd: commit of the ${MIB} MiB file (+ 4 KiB)" "$(printf '%s\n' "${commit[@]}" | best)" \
	"txfsd: commit of one 4 KiB file" "$(printf '%s\n' "${small[@]}" | best)"
