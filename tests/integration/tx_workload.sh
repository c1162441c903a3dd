#!/bin/bash
# A real build inside "txctl run" (untar a C project, make it, delete the
# build directory, rename the tree) is invisible outside until it commits
# and then leaves the source exactly as the same work on a plain directory.
TIMEOUT=90
. "$(dirname "$0")/lib.sh"
require_txfsd
require_txctl

# --- the project: 19 parts, a main, a Makefile, a generator script, a
# symlink and a hard link, packed into $T/proj.tar ---------------------------

mkdir -p "$T/proj/src" "$T/proj/include" "$T/proj/config" "$T/proj/docs"
# shellcheck disable=SC2016 # (make and sh syntax, written as it is)
(
	cd "$T/proj"
	: >include/parts.h
	for i in $(seq -w 1 19); do
		printf 'int part%s(int x);\n' "$i" >>include/parts.h
		printf '#include "parts.h"\n#include "config.h"\n\n' \
			>"src/part$i.c"
		printf 'int part%s(int x)\n{\n\treturn x * %d + SCALE;\n}\n' \
			"$i" "$((10#$i))" >>"src/part$i.c"
	done
	{
		printf '#include <stdio.h>\n#include "parts.h"\n\n'
		printf 'int main(void)\n{\n\tlong sum = 0;\n\n'
		for i in $(seq -w 1 19); do
			printf '\tsum += part%s(%d);\n' "$i" "$((10#$i))"
		done
		printf '\tprintf("sum %%ld\\n", sum);\n\treturn 0;\n}\n'
	} >main.c
	printf '#define SCALE 3\n' >config/default.h
	ln -s ../config/default.h include/config.h
	printf 'A small project.\n' >README
	ln README docs/README
	printf '#!/bin/sh\n# Writes the list of parts.\n' >gen.sh
	printf 'ls src | sed "s/\\\\.c$//" >"$1"\n' >>gen.sh
	chmod 0755 gen.sh
	printf 'secret\n' >config/private
	chmod 0600 config/private
	# (Without -g, nothing in the objects depends on the directory.)
	{
		echo 'SRCS := $(sort $(wildcard src/*.c))'
		echo 'OBJS := $(patsubst src/%.c,build/%.o,$(SRCS))'
		echo 'CFLAGS := -O2 -Iinclude'
		echo 'all: prog parts.txt'
		echo 'prog: build/main.o build/libparts.a'
		printf '\t%s\n' '$(CC) -o $@ build/main.o build/libparts.a'
		echo 'build/libparts.a: $(OBJS)'
		printf '\t%s\n' 'ar rcs $@ $^'
		echo 'build/main.o: main.c include/parts.h | build'
		printf '\t%s\n' '$(CC) $(CFLAGS) -c -o $@ main.c'
		echo 'build/%.o: src/%.c include/parts.h include/config.h |' \
			'build'
		printf '\t%s\n' '$(CC) $(CFLAGS) -c -o $@ $<'
		echo 'build:'
		printf '\t%s\n' 'mkdir -p build'
		echo 'parts.txt: gen.sh $(SRCS)'
		printf '\t%s\n' './gen.sh $@'
	} >Makefile
)
tar -C "$T/proj" -cf "$T/proj.tar" .
assert_eq "$(find "$T/proj" -name '*.c' | wc -l)" 20 "C files in the project"

# $T/workload.sh DIR TAG: the work, on DIR (the mount or the reference);
# the program's output goes to $T/prog.out.TAG.
cat >"$T/workload.sh" <<-'EOF'
	set -eu -o pipefail
	mkdir "$1/w"
	tar -xf "$T/proj.tar" -C "$1/w"
	make -s -C "$1/w" -j2 CC=cc >/dev/null
	"$1/w/prog" >"$T/prog.out.$2"
	n=$(find "$1/w/build" -mindepth 1 | wc -l)
	if [ "$n" != 21 ]; then
		echo "workload: the build made $n files, not 21" >&2
		exit 1
	fi
	rm -r "$1/w/build"
	mv "$1/w" "$1/w2"
EOF

bash "$T/workload.sh" "$REF" ref ||
	fail "the workload failed on the plain reference directory"
expected="sum $(awk 'BEGIN { for (i = 1; i <= 19; i++) s += i * i + 3
	print s }')"
assert_content "$T/prog.out.ref" "$expected"
assert_content "$REF/w2/parts.txt" "$(seq -f 'part%02g' 1 19)"
assert_eq "$(stat -c %h "$REF/w2/README")" 2 "links of the reference README"

printf 'base\n' >"$SRC/existing"
printf 'base\n' >"$REF/existing"
txfs_mount
tree_snapshot "$MNT" >"$T/snap.base"

# --- the workload in txctl run, checked from outside while it waits ---------

"$TXCTL" -m "$MNT" run -- bash -c '
	bash "$T/workload.sh" "$MNT" mnt
	: >"$T/ready"
	while [ ! -e "$T/go" ]; do sleep 0.05; done' >"$T/run.out" 2>&1 &
run=$!
stop_at_cleanup "$run"
wait_for 60 eval 'test -e "$T/ready" || ! pid_alive "$run"'
if [ ! -e "$T/ready" ]; then
	cat "$T/run.out" >&2
	fail "the workload did not finish in the transaction"
fi
assert_content "$T/prog.out.mnt" "$expected"
assert_missing "$MNT/w"
assert_missing "$MNT/w2"
assert_missing "$SRC/w"
assert_missing "$SRC/w2"
tree_snapshot "$MNT" >"$T/snap.now"
diff -u "$T/snap.base" "$T/snap.now" >&2 ||
	fail "a non-member sees the transaction's workload"
: >"$T/go"
rc=0
wait "$run" || rc=$?
if [ "$rc" != 0 ]; then
	cat "$T/run.out" >&2
	fail "txctl run exited with status $rc"
fi

# --- after commit: the source holds exactly the reference's result ----------

tree_compare "$REF" "$SRC"
tree_compare "$REF" "$MNT"
assert_missing "$SRC/w"
assert_missing "$MNT/w"
assert_eq "$(stat -c %i "$SRC/w2/README")" \
	"$(stat -c %i "$SRC/w2/docs/README")" "inode of the README's two links"
assert_eq "$("$SRC/w2/prog")" "$expected" "the committed program's output"
assert_eq "$("$MNT/w2/prog")" "$expected" "the program run through the mount"
assert_no_tx_state

txfs_umount
