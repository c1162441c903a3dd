#!/bin/bash
# Real programs on the mount behave as on a plain directory: cp -a of a
# header tree, a tar round trip, grep -r, a git repository (commit, gc,
# fsck), an SQLite database in WAL mode, and compiling and running a
# program.
TIMEOUT=180
. "$(dirname "$0")/lib.sh"

txfs_mount

export GIT_AUTHOR_NAME=txfs GIT_AUTHOR_EMAIL=txfs@example.invalid
export GIT_COMMITTER_NAME=txfs GIT_COMMITTER_EMAIL=txfs@example.invalid
export GIT_AUTHOR_DATE='2020-01-01T00:00:00Z'
export GIT_COMMITTER_DATE='2020-01-01T00:00:00Z'
export GIT_CONFIG_NOSYSTEM=1 HOME=$T

ops() {
	cp -a /usr/include/linux inc
	find inc | wc -l
	mkdir t
	tar -cf - inc | (cd t && tar -xf -)
	diff -r inc t/inc
	grep -rl 'struct' inc | LC_ALL=C sort | sha256sum
	rm -rf t

	if command -v git >/dev/null; then
		git init -q -b main repo
		cp inc/a*.h repo/
		(
			cd repo
			git add .
			git commit -qm initial
			echo '/* changed */' >>"$(ls | head -n 1)"
			git commit -qam change
			git gc -q
			git fsck --no-progress
			git log --format='%H %s'
			git status --porcelain
		)
		rm -rf repo
	fi

	if command -v sqlite3 >/dev/null; then
		sqlite3 db.sqlite 'pragma journal_mode=wal;' \
			'create table t(x integer primary key, y text);' \
			'with recursive c(i) as (select 1 union all select i+1
			  from c where i < 5000) insert into t(y) select
			  hex(randomblob(20)) from c;' \
			'select count(*) from t;' 'pragma integrity_check;'
		sqlite3 db.sqlite 'delete from t where x % 2 = 0;' \
			'vacuum;' 'select count(*) from t;'
		rm -f db.sqlite db.sqlite-wal db.sqlite-shm
	fi

	if command -v gcc >/dev/null; then
		printf 'int main(void) { return 42; }\n' >hello.c
		gcc -o hello hello.c
		./hello || echo "hello exited with $?"
		rm hello
	fi
}

run_both ops

txfs_umount
