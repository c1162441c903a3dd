/*
 * Unit tests for journal.c, on real SQLite files in a temporary directory.
 *
 * A second SQLite connection ("peek") reads or alters the database behind
 * the journal's back, and a fault-injecting VFS makes fsync fail on demand.
 */
#include "config.h"

#include "journal.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char dir[64];
static int dir_fd = -1;
static char db_path[128];
static char wal_path[160];

static void setup(void)
{
	strcpy(dir, "/tmp/txfs-journal-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ck_assert_int_ge(dir_fd, 0);
	snprintf(db_path, sizeof(db_path), "%s/%s", dir, JOURNAL_FILE);
	snprintf(wal_path, sizeof(wal_path), "%s-wal", db_path);
}

static void teardown(void)
{
	char cmd[128];

	close(dir_fd);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	ck_assert_int_eq(system(cmd), 0);
}

/* Opens the journal, which must succeed. */
static struct journal *jopen(void)
{
	struct journal *j = NULL;
	char why[512] = "";
	int ret;

	ret = journal_open(dir_fd, dir, &j, why, sizeof(why));
	ck_assert_msg(ret == 0, "journal_open: %d: %s", ret, why);
	ck_assert_ptr_nonnull(j);
	ck_assert(journal_invariants(j));
	return j;
}

/* A second connection to the database file. */
static sqlite3 *peek(void)
{
	sqlite3 *db;

	ck_assert_int_eq(
	    sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READWRITE, NULL),
	    SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	return db;
}

/* Runs a query answering one integer on db. */
static int64_t sql_int(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st;
	int64_t v;

	ck_assert_msg(sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK,
		      "%s: %s", sql, sqlite3_errmsg(db));
	ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
	v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

static void sql_exec(sqlite3 *db, const char *sql)
{
	ck_assert_msg(sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK,
		      "%s: %s", sql, sqlite3_errmsg(db));
}

/* Reads a whole file into a new buffer. */
static char *slurp(const char *path, size_t *len)
{
	struct stat st;
	char *buf;
	int fd;

	fd = open(path, O_RDONLY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(fstat(fd, &st), 0);
	buf = malloc((size_t)st.st_size + 1);
	ck_assert_ptr_nonnull(buf);
	ck_assert_int_eq(pread(fd, buf, (size_t)st.st_size, 0), st.st_size);
	close(fd);
	*len = (size_t)st.st_size;
	return buf;
}

static void spew(const char *path, const void *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, buf, len), (ssize_t)len);
	close(fd);
}

/* Asserts that the database file holds exactly want. */
static void assert_file_is(const char *want, size_t wantlen)
{
	size_t len;
	char *now = slurp(db_path, &len);

	ck_assert_uint_eq(len, wantlen);
	ck_assert(memcmp(now, want, len) == 0);
	free(now);
}

/* A change of one kind with a name and an inode number, the rest empty. */
static struct journal_change simple(enum journal_kind kind, const char *name,
				    uint64_t ino)
{
	struct journal_change c = {
		.kind = kind,
		.name = name,
		.base_ino = ino,
	};
	return c;
}

/* Returns true when two possibly-NULL strings are both NULL or equal. */
static bool same_str(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

static bool same_bytes(const void *a, size_t alen, const void *b, size_t blen)
{
	if (a == NULL || b == NULL)
		return a == b && alen == 0 && blen == 0;
	return alen == blen && memcmp(a, b, alen) == 0;
}

static void assert_same_change(const struct journal_change *got,
			       const struct journal_change *want, size_t i)
{
	ck_assert_msg(got->kind == want->kind, "change %zu: kind", i);
	ck_assert_msg(same_str(got->shadow, want->shadow), "change %zu: shadow",
		      i);
	ck_assert_msg(same_bytes(got->parent, got->parent_len, want->parent,
				 want->parent_len),
		      "change %zu: parent", i);
	ck_assert_msg(same_str(got->name, want->name), "change %zu: name", i);
	ck_assert_msg(same_bytes(got->parent2, got->parent2_len, want->parent2,
				 want->parent2_len),
		      "change %zu: parent2", i);
	ck_assert_msg(same_str(got->name2, want->name2), "change %zu: name2",
		      i);
	ck_assert_msg(got->base_dev == want->base_dev, "change %zu: dev", i);
	ck_assert_msg(got->base_ino == want->base_ino, "change %zu: ino", i);
	ck_assert_msg(got->mode == want->mode, "change %zu: mode", i);
	ck_assert_msg(got->flags == want->flags, "change %zu: flags", i);
	ck_assert_msg(same_str(got->path, want->path), "change %zu: path", i);
}

/* What a journal_pending callback saw. */
struct visit {
	uint64_t txids[256];
	size_t ns[256];
	size_t steps[256]; /* the steps each record was reported with */
	size_t count;
	size_t stop_at; /* return stop_ret at this visit (1-based) */
	int stop_ret;
	struct journal *mark; /* mark each record applied from the callback */
	const struct journal_change *want; /* compare every record's changes */
	size_t nwant;
};

static int record_visit(uint64_t txid, const struct journal_change *changes,
			size_t n, size_t steps, void *arg)
{
	struct visit *v = arg;

	ck_assert_uint_lt(v->count, 256);
	ck_assert_uint_le(steps, n);
	v->txids[v->count] = txid;
	v->ns[v->count] = n;
	v->steps[v->count] = steps;
	v->count++;
	if (v->want != NULL) {
		ck_assert_uint_eq(n, v->nwant);
		for (size_t i = 0; i < n; i++)
			assert_same_change(&changes[i], &v->want[i], i);
	}
	if (v->mark != NULL)
		ck_assert_int_eq(journal_mark_applied(v->mark, txid), 0);
	if (v->stop_at != 0 && v->count == v->stop_at)
		return v->stop_ret;
	return 0;
}

/* Collects the pending txids. */
static void pending(struct journal *j, struct visit *v)
{
	memset(v, 0, sizeof(*v));
	ck_assert_int_eq(journal_pending(j, record_visit, v), 0);
}

static uint64_t max_txid(struct journal *j)
{
	uint64_t v = 12345;

	ck_assert_int_eq(journal_max_txid(j, &v), 0);
	return v;
}

/* Commits txid with one change naming it. */
static void commit_one(struct journal *j, uint64_t txid)
{
	struct journal_change c = simple(JOURNAL_REPLACE, "f", txid);

	ck_assert_int_eq(journal_commit(j, txid, 1000, NULL, &c, 1), 0);
}

/* record.steps of txid, read on db. */
static int64_t steps_in_db(sqlite3 *db, uint64_t txid)
{
	char sql[96];

	snprintf(sql, sizeof(sql), "SELECT steps FROM record WHERE txid = %llu",
		 (unsigned long long)txid);
	return sql_int(db, sql);
}

/* Commits txid with n changes, each naming the txid and its place. */
static void commit_n(struct journal *j, uint64_t txid, size_t n)
{
	struct journal_change c[8];

	ck_assert_uint_le(n, 8);
	for (size_t i = 0; i < n; i++)
		c[i] = simple(JOURNAL_REPLACE, "f", txid * 100 + i);
	ck_assert_int_eq(journal_commit(j, txid, 0, NULL, c, n), 0);
}

START_TEST(every_field_comes_back_byte_for_byte)
{
	static const unsigned char h1[] = {
		0x01, 0x00, 0x02, 0x00, 0x00, 0xff
	};
	static const unsigned char empty_handle[1] = { 0x7f };
	unsigned char h2[128];
	char longname[256], longpath[4001];
	struct journal_change want[4];
	struct journal *j;
	struct visit v;
	sqlite3 *db;

	for (size_t i = 0; i < sizeof(h2); i++)
		h2[i] = (unsigned char)(i % 3 == 0 ? 0 : i);
	memset(longname, 'x', 255);
	longname[255] = '\0';
	for (size_t i = 0; i < 4000; i++)
		longpath[i] = i % 16 == 0 ? '/' : (char)('a' + i % 26);
	longpath[4000] = '\0';

	want[0] = (struct journal_change){
		.kind = JOURNAL_REPLACE,
		.shadow = "shadows/17/a",
		.parent = h1,
		.parent_len = sizeof(h1),
		.name = "a.txt",
		.base_dev = UINT64_MAX,
		.base_ino = (1ULL << 63) + 5,
		.mode = 0100644,
		.path = "/dir/a.txt",
	};
	want[1] = (struct journal_change){
		.kind = JOURNAL_WRITE_INTO,
		.shadow = "s2",
		.base_dev = 42,
		.base_ino = 7,
		.mode = UINT32_MAX,
		.flags = UINT32_MAX,
	};
	want[2] = (struct journal_change){
		.kind = JOURNAL_RENAME,
		.parent = h2,
		.parent_len = sizeof(h2),
		.name = longname,
		.parent2 = empty_handle,
		.parent2_len = 0,
		.name2 = "\xff\xfe\x01 not utf-8",
		.flags = 1,
		.path = longpath,
	};
	want[3] = (struct journal_change){
		.kind = JOURNAL_SETATTR,
		.shadow = "",
		.name = "",
	};

	j = jopen();
	ck_assert_int_eq(journal_commit(j, 7, 1000, "build #3", want, 4), 0);
	ck_assert(journal_invariants(j));
	memset(&v, 0, sizeof(v));
	v.want = want;
	v.nwant = 4;
	ck_assert_int_eq(journal_pending(j, record_visit, &v), 0);
	ck_assert_uint_eq(v.count, 1);
	ck_assert_uint_eq(v.txids[0], 7);

	/* Owner and label are for people: check them in the database. */
	db = peek();
	ck_assert_int_eq(sql_int(db, "SELECT owner FROM record WHERE txid = 7"),
			 1000);
	ck_assert_int_eq(sql_int(db, "SELECT label = 'build #3' FROM record"),
			 1);
	sqlite3_close(db);
	journal_close(j);
}
END_TEST

START_TEST(a_null_label_and_an_empty_change_set_are_recorded)
{
	struct journal *j = jopen();
	struct visit v;
	sqlite3 *db;

	ck_assert_int_eq(journal_commit(j, 3, 0, NULL, NULL, 0), 0);
	pending(j, &v);
	ck_assert_uint_eq(v.count, 1);
	ck_assert_uint_eq(v.txids[0], 3);
	ck_assert_uint_eq(v.ns[0], 0);
	db = peek();
	ck_assert_int_eq(sql_int(db, "SELECT label IS NULL FROM record"), 1);
	sqlite3_close(db);
	ck_assert_int_eq(journal_mark_applied(j, 3), 0);
	pending(j, &v);
	ck_assert_uint_eq(v.count, 0);
	journal_close(j);
}
END_TEST

START_TEST(pending_follows_commit_order_not_txid_order)
{
	struct journal_change two[2] = { simple(JOURNAL_REPLACE, "x", 1),
					 simple(JOURNAL_WRITE_INTO, "y", 2) };
	struct journal *j = jopen();
	struct visit v;

	commit_one(j, 5);
	ck_assert_int_eq(journal_commit(j, 3, 0, NULL, two, 2), 0);
	ck_assert_int_eq(journal_commit(j, 9, 0, NULL, NULL, 0), 0);
	commit_one(j, 4);
	pending(j, &v);
	ck_assert_uint_eq(v.count, 4);
	ck_assert_uint_eq(v.txids[0], 5);
	ck_assert_uint_eq(v.txids[1], 3);
	ck_assert_uint_eq(v.txids[2], 9);
	ck_assert_uint_eq(v.txids[3], 4);
	ck_assert_uint_eq(v.ns[0], 1);
	ck_assert_uint_eq(v.ns[1], 2);
	ck_assert_uint_eq(v.ns[2], 0);
	ck_assert_uint_eq(v.ns[3], 1);
	journal_close(j);
}
END_TEST

START_TEST(changes_come_back_in_the_order_given)
{
	struct journal_change c[3] = { simple(JOURNAL_UNLINK, "c", 30),
				       simple(JOURNAL_REPLACE, "a", 10),
				       simple(JOURNAL_MKDIR, "b", 20) };
	struct journal *j = jopen();
	struct visit v = { 0 };

	ck_assert_int_eq(journal_commit(j, 1, 0, NULL, c, 3), 0);
	v.want = c;
	v.nwant = 3;
	ck_assert_int_eq(journal_pending(j, record_visit, &v), 0);
	ck_assert_uint_eq(v.count, 1);
	journal_close(j);
}
END_TEST

START_TEST(mark_applied_removes_a_record_from_pending)
{
	struct journal *j = jopen();
	struct journal_stats s;
	struct visit v;

	commit_one(j, 1);
	commit_one(j, 2);
	commit_one(j, 3);
	journal_stats(j, &s);
	ck_assert_uint_eq(s.commits, 3);
	ck_assert_uint_eq(s.applied, 0);
	ck_assert_uint_eq(s.pending, 3);

	ck_assert_int_eq(journal_mark_applied(j, 2), 0);
	ck_assert(journal_invariants(j));
	pending(j, &v);
	ck_assert_uint_eq(v.count, 2);
	ck_assert_uint_eq(v.txids[0], 1);
	ck_assert_uint_eq(v.txids[1], 3);
	journal_stats(j, &s);
	ck_assert_uint_eq(s.applied, 1);
	ck_assert_uint_eq(s.pending, 2);

	/* Marking again is harmless and counts once. */
	ck_assert_int_eq(journal_mark_applied(j, 2), 0);
	journal_stats(j, &s);
	ck_assert_uint_eq(s.applied, 1);
	ck_assert_uint_eq(s.pending, 2);
	journal_close(j);
}
END_TEST

START_TEST(marking_an_unknown_txid_is_enoent)
{
	struct journal *j = jopen();
	struct journal_stats s;

	ck_assert_int_eq(journal_mark_applied(j, 1), -ENOENT);
	commit_one(j, 1);
	ck_assert_int_eq(journal_mark_applied(j, 2), -ENOENT);
	ck_assert_int_eq(journal_mark_applied(j, 0), -ENOENT);
	journal_stats(j, &s);
	ck_assert_uint_eq(s.applied, 0);
	ck_assert_uint_eq(s.pending, 1);
	ck_assert(journal_invariants(j));
	journal_close(j);
}
END_TEST

START_TEST(committing_a_recorded_txid_is_eexist_and_changes_nothing)
{
	struct journal_change c[2] = { simple(JOURNAL_UNLINK, "other", 8),
				       simple(JOURNAL_UNLINK, "more", 9) };
	struct journal_change want = simple(JOURNAL_REPLACE, "f", 4);
	struct journal *j = jopen();
	struct journal_stats s;
	struct visit v = { 0 };

	commit_one(j, 4);
	ck_assert_int_eq(journal_commit(j, 4, 0, NULL, c, 2), -EEXIST);
	v.want = &want;
	v.nwant = 1;
	ck_assert_int_eq(journal_pending(j, record_visit, &v), 0);
	ck_assert_uint_eq(v.count, 1);
	journal_stats(j, &s);
	ck_assert_uint_eq(s.commits, 1);
	ck_assert_uint_eq(s.pending, 1);
	ck_assert(journal_invariants(j));

	/* An applied record still in the journal is recorded too. */
	ck_assert_int_eq(journal_mark_applied(j, 4), 0);
	ck_assert_int_eq(journal_commit(j, 4, 0, NULL, c, 2), -EEXIST);
	journal_close(j);
}
END_TEST

START_TEST(bad_arguments_are_einval_and_record_nothing)
{
	struct journal_change bad_kind = simple(0, "a", 1);
	struct journal_change big_kind = simple(JOURNAL_KIND_MAX + 1, "a", 1);
	struct journal_change no_bytes = simple(JOURNAL_REPLACE, "a", 1);
	struct journal *j = jopen();
	struct journal_stats s;

	no_bytes.parent_len = 3;
	ck_assert_int_eq(journal_commit(j, 0, 0, NULL, NULL, 0), -EINVAL);
	ck_assert_int_eq(
	    journal_commit(j, (uint64_t)INT64_MAX + 1, 0, NULL, NULL, 0),
	    -EINVAL);
	ck_assert_int_eq(journal_commit(j, 1, 0, NULL, &bad_kind, 1), -EINVAL);
	ck_assert_int_eq(journal_commit(j, 1, 0, NULL, &big_kind, 1), -EINVAL);
	ck_assert_int_eq(journal_commit(j, 1, 0, NULL, &no_bytes, 1), -EINVAL);
	ck_assert_int_eq(journal_commit(j, 1, 0, NULL, NULL, 2), -EINVAL);
	ck_assert_int_eq(journal_note_txid(j, UINT64_MAX), -EINVAL);
	journal_stats(j, &s);
	ck_assert_uint_eq(s.commits, 0);
	ck_assert_uint_eq(s.pending, 0);
	ck_assert_uint_eq(max_txid(j), 0);
	ck_assert_int_eq(
	    journal_commit(j, (uint64_t)INT64_MAX, 0, NULL, NULL, 0), 0);
	ck_assert_uint_eq(max_txid(j), (uint64_t)INT64_MAX);
	journal_close(j);
}
END_TEST

START_TEST(max_txid_follows_commits_and_notes_monotonically)
{
	struct journal *j = jopen();

	ck_assert_uint_eq(max_txid(j), 0);
	commit_one(j, 6);
	ck_assert_uint_eq(max_txid(j), 6);
	commit_one(j, 2); /* began earlier, committed later */
	ck_assert_uint_eq(max_txid(j), 6);
	ck_assert_int_eq(journal_note_txid(j, 40), 0);
	ck_assert_uint_eq(max_txid(j), 40);
	ck_assert_int_eq(journal_note_txid(j, 10), 0);
	ck_assert_uint_eq(max_txid(j), 40);
	ck_assert_int_eq(journal_note_txid(j, 0), 0);
	ck_assert_uint_eq(max_txid(j), 40);
	commit_one(j, 30); /* handed out before the note: still new */
	ck_assert_uint_eq(max_txid(j), 40);
	ck_assert(journal_invariants(j));
	journal_close(j);

	j = jopen();
	ck_assert_uint_eq(max_txid(j), 40);
	journal_close(j);
}
END_TEST

START_TEST(pruning_keeps_the_latest_applied_records_and_max_txid)
{
	const int n = JOURNAL_KEEP_APPLIED + 30;
	struct journal *j = jopen();
	struct journal_stats s;
	struct visit v;
	sqlite3 *db;

	/* Commit order differs from txid order: 1000, 999, ... */
	for (int i = 0; i < n; i++) {
		commit_one(j, (uint64_t)(1000 - i));
		ck_assert_int_eq(journal_mark_applied(j, (uint64_t)(1000 - i)),
				 0);
	}
	commit_one(j, 5000);
	ck_assert(journal_invariants(j));
	journal_stats(j, &s);
	ck_assert_uint_eq(s.applied, (uint64_t)n);
	ck_assert_uint_eq(s.pending, 1);

	db = peek();
	ck_assert_int_eq(sql_int(db, "SELECT count(*) FROM record "
				     "WHERE applied = 1"),
			 JOURNAL_KEEP_APPLIED);
	/* The latest applied are the last committed: 1000 - n + 1 ... */
	ck_assert_int_eq(sql_int(db, "SELECT min(txid) FROM record"),
			 1000 - n + 1);
	ck_assert_int_eq(sql_int(db, "SELECT max(txid) FROM record "
				     "WHERE applied = 1"),
			 1000 - (n - JOURNAL_KEEP_APPLIED));
	/* Deleting a record deleted its changes. */
	ck_assert_int_eq(sql_int(db, "SELECT count(*) FROM change WHERE "
				     "txid NOT IN (SELECT txid FROM record)"),
			 0);
	ck_assert_int_eq(sql_int(db, "SELECT count(*) FROM change"),
			 JOURNAL_KEEP_APPLIED + 1);
	sqlite3_close(db);

	/* The oldest records are gone, but their ids are not reusable. */
	ck_assert_int_eq(journal_mark_applied(j, 1000), -ENOENT);
	ck_assert_uint_eq(max_txid(j), 5000);
	ck_assert_int_eq(journal_mark_applied(j, 5000), 0);
	ck_assert_uint_eq(max_txid(j), 5000);
	pending(j, &v);
	ck_assert_uint_eq(v.count, 0);
	journal_close(j);

	j = jopen();
	ck_assert_uint_eq(max_txid(j), 5000);
	journal_close(j);
}
END_TEST

START_TEST(reopening_keeps_records_marks_and_ids)
{
	struct journal_change c[2] = { simple(JOURNAL_REPLACE, "one", 1),
				       simple(JOURNAL_CREATE, "two", 2) };
	struct journal *j = jopen();
	struct journal_stats s;
	struct visit v = { 0 };

	ck_assert_int_eq(journal_commit(j, 10, 0, "a", c, 2), 0);
	commit_one(j, 11);
	ck_assert_int_eq(journal_commit(j, 12, 0, "c", c, 2), 0);
	ck_assert_int_eq(journal_mark_applied(j, 11), 0);
	ck_assert_int_eq(journal_note_txid(j, 20), 0);
	journal_close(j);
	ck_assert_int_ne(access(wal_path, F_OK), 0); /* a clean close */

	j = jopen();
	journal_stats(j, &s);
	ck_assert_uint_eq(s.commits, 0); /* counted since open */
	ck_assert_uint_eq(s.applied, 0);
	ck_assert_uint_eq(s.pending, 2);
	ck_assert_uint_eq(max_txid(j), 20);
	v.want = c;
	v.nwant = 2;
	ck_assert_int_eq(journal_pending(j, record_visit, &v), 0);
	ck_assert_uint_eq(v.count, 2);
	ck_assert_uint_eq(v.txids[0], 10);
	ck_assert_uint_eq(v.txids[1], 12);
	ck_assert_int_eq(journal_mark_applied(j, 11), 0); /* still there */
	ck_assert_int_eq(journal_commit(j, 11, 0, NULL, NULL, 0), -EEXIST);
	journal_close(j);
}
END_TEST

START_TEST(wal_mode_and_synchronous_full_are_set)
{
	struct journal *j = jopen();
	unsigned char header[100];
	sqlite3_stmt *st;
	sqlite3 *db;
	int fd;

	commit_one(j, 1);

	/* The journal mode lives in the file: ask another connection. */
	db = peek();
	ck_assert_int_eq(
	    sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL),
	    SQLITE_OK);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
	ck_assert_str_eq((const char *)sqlite3_column_text(st, 0), "wal");
	sqlite3_finalize(st);
	ck_assert_int_eq(sql_int(db, "PRAGMA user_version"), JOURNAL_FORMAT);
	sqlite3_close(db);

	/* File format bytes 18 and 19 are 2 in WAL mode. */
	fd = open(db_path, O_RDONLY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pread(fd, header, sizeof(header), 0), sizeof(header));
	close(fd);
	ck_assert_int_eq(header[18], 2);
	ck_assert_int_eq(header[19], 2);

	/* synchronous and foreign_keys belong to the journal's connection. */
	ck_assert_int_eq(sql_int(journal_sqlite(j), "PRAGMA synchronous"), 2);
	ck_assert_int_eq(sql_int(journal_sqlite(j), "PRAGMA foreign_keys"), 1);
	ck_assert_int_gt(sql_int(journal_sqlite(j), "PRAGMA busy_timeout"), 0);
	journal_close(j);
}
END_TEST

START_TEST(a_newer_format_is_refused_and_left_untouched)
{
	struct journal *j = jopen();
	char why[512] = "", want[256];
	size_t len;
	sqlite3 *db;
	char *before;

	commit_one(j, 1);
	journal_close(j);
	db = peek();
	sql_exec(db, "PRAGMA user_version = 7");
	sqlite3_close(db);
	before = slurp(db_path, &len);

	j = NULL;
	ck_assert_int_eq(journal_open(dir_fd, dir, &j, why, sizeof(why)),
			 -EPROTONOSUPPORT);
	ck_assert_ptr_null(j);
	snprintf(want, sizeof(want),
		 "journal %s: format 7 is newer than this txfsd (%d)", db_path,
		 JOURNAL_FORMAT);
	ck_assert_str_eq(why, want);
	assert_file_is(before, len);
	free(before);
}
END_TEST

START_TEST(a_garbage_file_is_refused_and_left_untouched)
{
	struct journal *j = NULL;
	char garbage[3000], why[512] = "";

	for (size_t i = 0; i < sizeof(garbage); i++)
		garbage[i] = "not a database\n"[i % 15];
	spew(db_path, garbage, sizeof(garbage));
	ck_assert_int_eq(journal_open(dir_fd, dir, &j, why, sizeof(why)),
			 -EBADMSG);
	ck_assert_ptr_null(j);
	ck_assert_ptr_nonnull(strstr(why, "not an sqlite database"));
	ck_assert_ptr_nonnull(strstr(why, db_path));
	assert_file_is(garbage, sizeof(garbage));
	ck_assert_int_ne(access(wal_path, F_OK), 0);
}
END_TEST

START_TEST(a_file_with_sqlite_magic_and_a_garbage_header_is_refused)
{
	struct journal *j = NULL;
	char garbage[4096], why[512] = "";

	memset(garbage, 0x5a, sizeof(garbage));
	memcpy(garbage, "SQLite format 3", 16);
	spew(db_path, garbage, sizeof(garbage));
	ck_assert_int_eq(journal_open(dir_fd, dir, &j, why, sizeof(why)),
			 -EBADMSG);
	ck_assert_ptr_null(j);
	ck_assert_str_ne(why, "");
	assert_file_is(garbage, sizeof(garbage));
}
END_TEST

START_TEST(a_foreign_database_is_refused)
{
	struct journal *j = NULL;
	char why[512] = "";
	sqlite3 *db;
	size_t len;
	char *before;

	ck_assert_int_eq(sqlite3_open(db_path, &db), SQLITE_OK);
	sql_exec(db, "CREATE TABLE t (x); INSERT INTO t VALUES (1)");
	sqlite3_close(db);
	before = slurp(db_path, &len);
	ck_assert_int_eq(journal_open(dir_fd, dir, &j, why, sizeof(why)),
			 -EBADMSG);
	ck_assert_ptr_nonnull(strstr(why, "not a txfs journal"));
	assert_file_is(before, len);
	free(before);
}
END_TEST

/* Builds a journal of several pages, closes it, returns its page size. */
static size_t build_big_journal(size_t *npages)
{
	struct journal_change c[300];
	char names[300][48];
	struct journal *j = jopen();
	unsigned char header[100];
	struct stat st;
	size_t page;
	int fd;

	for (int r = 0; r < 4; r++) {
		for (int i = 0; i < 300; i++) {
			snprintf(names[i], sizeof(names[i]),
				 "record-%d-change-%d-padding-padding", r, i);
			c[i] =
			    simple(JOURNAL_REPLACE, names[i], (uint64_t)i + 1);
		}
		ck_assert_int_eq(
		    journal_commit(j, (uint64_t)r + 1, 0, NULL, c, 300), 0);
	}
	journal_close(j);
	fd = open(db_path, O_RDONLY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pread(fd, header, sizeof(header), 0), sizeof(header));
	ck_assert_int_eq(fstat(fd, &st), 0);
	close(fd);
	page = (size_t)header[16] << 8 | header[17];
	if (page == 1)
		page = 65536;
	*npages = (size_t)st.st_size / page;
	ck_assert_uint_ge(*npages, 8);
	return page;
}

START_TEST(a_database_with_a_corrupt_page_is_refused_not_recreated)
{
	struct journal *j = NULL;
	char why[512] = "";
	size_t page, npages, len;
	char *bytes;

	page = build_big_journal(&npages);
	bytes = slurp(db_path, &len);
	memset(bytes + (npages / 2) * page, 0xa5, page);
	spew(db_path, bytes, len);

	ck_assert_int_eq(journal_open(dir_fd, dir, &j, why, sizeof(why)),
			 -EBADMSG);
	ck_assert_ptr_null(j);
	ck_assert_str_ne(why, "");
	assert_file_is(bytes, len);
	/* Asking again gives the same answer: nothing was repaired or reset. */
	ck_assert_int_eq(journal_open(dir_fd, dir, &j, why, sizeof(why)),
			 -EBADMSG);
	assert_file_is(bytes, len);
	free(bytes);
}
END_TEST

START_TEST(a_truncated_database_is_refused_not_recreated)
{
	struct journal *j = NULL;
	char why[512] = "";
	size_t page, npages, len;
	char *bytes;

	page = build_big_journal(&npages);
	ck_assert_int_eq(truncate(db_path, (off_t)((npages / 2) * page)), 0);
	bytes = slurp(db_path, &len);
	ck_assert_int_eq(journal_open(dir_fd, dir, &j, why, sizeof(why)),
			 -EBADMSG);
	ck_assert_ptr_null(j);
	assert_file_is(bytes, len);
	free(bytes);
}
END_TEST

START_TEST(a_path_naming_another_directory_is_einval)
{
	struct journal *j = NULL;
	char why[512] = "", other[128];

	snprintf(other, sizeof(other), "%s/other", dir);
	ck_assert_int_eq(mkdir(other, 0700), 0);
	ck_assert_int_eq(journal_open(dir_fd, other, &j, why, sizeof(why)),
			 -EINVAL);
	ck_assert_ptr_null(j);
	ck_assert_str_ne(why, "");
	ck_assert_int_ne(access(db_path, F_OK), 0);
	journal_close(NULL);
}
END_TEST

/* ------------------------------------------------------------------------
 * Upgrading a format 1 journal
 */

/* Format 1 as journal.c created it, with created_at filled in. */
static const char schema_v1[] =
    "BEGIN IMMEDIATE;"
    "CREATE TABLE meta ("
    " id INTEGER PRIMARY KEY CHECK (id = 1),"
    " max_txid INTEGER NOT NULL CHECK (max_txid >= 0),"
    " last_seq INTEGER NOT NULL CHECK (last_seq >= 0),"
    " created_at INTEGER NOT NULL);"
    "CREATE TABLE record ("
    " txid INTEGER PRIMARY KEY CHECK (txid > 0),"
    " seq INTEGER NOT NULL UNIQUE,"
    " owner INTEGER NOT NULL,"
    " label TEXT,"
    " committed_at INTEGER NOT NULL,"
    " applied INTEGER NOT NULL DEFAULT 0 CHECK (applied IN (0, 1)),"
    " applied_at INTEGER);"
    "CREATE INDEX record_pending ON record (seq) WHERE applied = 0;"
    "CREATE TABLE change ("
    " txid INTEGER NOT NULL REFERENCES record (txid) ON DELETE CASCADE,"
    " seq INTEGER NOT NULL,"
    " kind INTEGER NOT NULL,"
    " shadow BLOB,"
    " parent BLOB,"
    " name BLOB,"
    " parent2 BLOB,"
    " name2 BLOB,"
    " base_dev INTEGER NOT NULL,"
    " base_ino INTEGER NOT NULL,"
    " mode INTEGER NOT NULL,"
    " flags INTEGER NOT NULL,"
    " path BLOB,"
    " PRIMARY KEY (txid, seq)) WITHOUT ROWID;"
    "INSERT INTO meta (id, max_txid, last_seq, created_at)"
    " VALUES (1, 0, 0, 1700000000000);"
    "PRAGMA user_version = 1;"
    "COMMIT;";

/* Binds bytes as format 1 stored them: a blob, or NULL for NULL. */
static void bind_v1(sqlite3_stmt *st, int i, const void *p, size_t len)
{
	if (p == NULL)
		ck_assert_int_eq(sqlite3_bind_null(st, i), SQLITE_OK);
	else
		ck_assert_int_eq(
		    sqlite3_bind_blob64(st, i, p, len, SQLITE_TRANSIENT),
		    SQLITE_OK);
}

static void bind_v1_str(sqlite3_stmt *st, int i, const char *s)
{
	bind_v1(st, i, s, s != NULL ? strlen(s) : 0);
}

/* Writes change seq of txid into a format 1 database, as format 1 did. */
static void insert_v1_change(sqlite3 *db, uint64_t txid, size_t seq,
			     const struct journal_change *c)
{
	sqlite3_stmt *st;

	ck_assert_int_eq(
	    sqlite3_prepare_v2(
		db,
		"INSERT INTO change (txid, seq, kind, shadow, parent, name, "
		"parent2, name2, base_dev, base_ino, mode, flags, path) "
		"VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, "
		"?13)",
		-1, &st, NULL),
	    SQLITE_OK);
	sqlite3_bind_int64(st, 1, (sqlite3_int64)txid);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)seq);
	sqlite3_bind_int(st, 3, (int)c->kind);
	bind_v1_str(st, 4, c->shadow);
	bind_v1(st, 5, c->parent, c->parent_len);
	bind_v1_str(st, 6, c->name);
	bind_v1(st, 7, c->parent2, c->parent2_len);
	bind_v1_str(st, 8, c->name2);
	sqlite3_bind_int64(st, 9, (sqlite3_int64)c->base_dev);
	sqlite3_bind_int64(st, 10, (sqlite3_int64)c->base_ino);
	sqlite3_bind_int64(st, 11, c->mode);
	sqlite3_bind_int64(st, 12, c->flags);
	bind_v1_str(st, 13, c->path);
	ck_assert_msg(sqlite3_step(st) == SQLITE_DONE, "insert change: %s",
		      sqlite3_errmsg(db));
	sqlite3_finalize(st);
}

/* The changes of the pending record in the format 1 journal below. */
static const unsigned char v1_handle[] = { 0x08, 0x00, 0x00, 0x00,
					   0x01, 0x00, 0xff, 0x7f };
static const unsigned char v1_handle2[] = { 0x00, 0x00, 0xfe };

static void v1_changes(struct journal_change c[2])
{
	c[0] = (struct journal_change){
		.kind = JOURNAL_REPLACE,
		.shadow = "shadows/8/1",
		.parent = v1_handle,
		.parent_len = sizeof(v1_handle),
		.name = "a.txt",
		.base_dev = UINT64_MAX,
		.base_ino = (1ULL << 63) + 12,
		.mode = 0100644,
		.path = "/dir/a.txt",
	};
	c[1] = (struct journal_change){
		.kind = JOURNAL_RENAME,
		.parent = v1_handle,
		.parent_len = sizeof(v1_handle),
		.name = "old",
		.parent2 = v1_handle2,
		.parent2_len = sizeof(v1_handle2),
		.name2 = "\xff\xfe not utf-8",
		.flags = 1,
		.path = "",
	};
}

/*
 * Builds STATE/journal.db as a format 1 txfsd left it: WAL mode, an
 * applied record 5 (seq 1, one change) and a pending record 8 (seq 2, the
 * two v1_changes), max_txid 8.
 */
static void build_v1_journal(void)
{
	struct journal_change old = simple(JOURNAL_UNLINK, "gone", 5);
	struct journal_change c[2];
	sqlite3_stmt *st;
	sqlite3 *db;

	v1_changes(c);
	ck_assert_int_eq(
	    sqlite3_open_v2(db_path, &db,
			    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL),
	    SQLITE_OK);
	ck_assert_int_eq(
	    sqlite3_prepare_v2(db, "PRAGMA journal_mode = WAL", -1, &st, NULL),
	    SQLITE_OK);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
	ck_assert_str_eq((const char *)sqlite3_column_text(st, 0), "wal");
	sqlite3_finalize(st);
	sql_exec(db, "PRAGMA foreign_keys = ON");
	sql_exec(db, schema_v1);
	sql_exec(db, "BEGIN IMMEDIATE");
	sql_exec(db, "INSERT INTO record (txid, seq, owner, label, "
		     "committed_at, applied, applied_at) VALUES "
		     "(5, 1, 1000, 'old', 1700000000100, 1, 1700000000200), "
		     "(8, 2, 1000, 'pending', 1700000000300, 0, NULL)");
	sql_exec(db, "UPDATE meta SET max_txid = 8, last_seq = 2 "
		     "WHERE id = 1");
	insert_v1_change(db, 5, 0, &old);
	insert_v1_change(db, 8, 0, &c[0]);
	insert_v1_change(db, 8, 1, &c[1]);
	sql_exec(db, "COMMIT");
	ck_assert_int_eq(sql_int(db, "PRAGMA user_version"), 1);
	ck_assert_int_eq(sql_int(db, "SELECT count(*) FROM "
				     "pragma_table_info('record') "
				     "WHERE name = 'steps'"),
			 0);
	ck_assert_int_eq(sqlite3_close(db), SQLITE_OK);
	ck_assert_int_ne(access(wal_path, F_OK), 0); /* checkpointed */
}

START_TEST(a_format_1_journal_is_upgraded_in_place)
{
	struct journal_change want[2];
	struct journal_stats s;
	struct journal *j;
	struct visit v = { 0 };
	sqlite3 *db;

	build_v1_journal();
	v1_changes(want);

	j = jopen();
	db = peek();
	ck_assert_int_eq(sql_int(db, "PRAGMA user_version"), JOURNAL_FORMAT);
	ck_assert_int_eq(sql_int(db, "SELECT count(*) FROM record"), 2);
	ck_assert_int_eq(sql_int(db, "SELECT count(*) FROM change"), 3);
	ck_assert_int_eq(steps_in_db(db, 5), 0);
	ck_assert_int_eq(steps_in_db(db, 8), 0);
	/* The new column has format 2's check. */
	ck_assert_int_ne(
	    sqlite3_exec(db, "UPDATE record SET steps = -1", NULL, NULL, NULL),
	    SQLITE_OK);

	/* The pending record comes back byte for byte, from step 0. */
	journal_stats(j, &s);
	ck_assert_uint_eq(s.pending, 1);
	ck_assert_uint_eq(max_txid(j), 8);
	v.want = want;
	v.nwant = 2;
	ck_assert_int_eq(journal_pending(j, record_visit, &v), 0);
	ck_assert_uint_eq(v.count, 1);
	ck_assert_uint_eq(v.txids[0], 8);
	ck_assert_uint_eq(v.steps[0], 0);

	/* Steps can be marked on it; the applied record has none. */
	ck_assert_int_eq(journal_mark_steps(j, 8, 1), 0);
	ck_assert_int_eq(journal_mark_steps(j, 5, 1), -ENOENT);
	ck_assert_int_eq(journal_mark_applied(j, 5), 0); /* still there */
	ck_assert_int_eq(journal_commit(j, 5, 0, NULL, NULL, 0), -EEXIST);
	commit_one(j, 9);
	ck_assert(journal_invariants(j));
	journal_close(j);

	/* Reopening a format 2 journal keeps it so, steps and order too. */
	j = jopen();
	ck_assert_int_eq(sql_int(db, "PRAGMA user_version"), JOURNAL_FORMAT);
	ck_assert_int_eq(steps_in_db(db, 8), 1);
	memset(&v, 0, sizeof(v));
	ck_assert_int_eq(journal_pending(j, record_visit, &v), 0);
	ck_assert_uint_eq(v.count, 2);
	ck_assert_uint_eq(v.txids[0], 8);
	ck_assert_uint_eq(v.ns[0], 2);
	ck_assert_uint_eq(v.steps[0], 1);
	ck_assert_uint_eq(v.txids[1], 9);
	ck_assert_uint_eq(v.steps[1], 0);
	ck_assert_int_eq(journal_mark_applied(j, 8), 0);
	sqlite3_close(db);
	journal_close(j);
}
END_TEST

START_TEST(a_failed_upgrade_leaves_the_format_1_journal_untouched)
{
	struct journal_change want[2];
	struct journal *j = NULL;
	char why[512] = "";
	struct visit v = { 0 };
	sqlite3 *db, *holder;
	size_t len;
	char *before;

	build_v1_journal();
	v1_changes(want);
	before = slurp(db_path, &len);

	/* Another connection holds the write lock past the busy timeout. */
	holder = peek();
	sqlite3_busy_timeout(holder, 0);
	sql_exec(holder, "BEGIN IMMEDIATE");
	ck_assert_int_eq(journal_open(dir_fd, dir, &j, why, sizeof(why)),
			 -EBUSY);
	ck_assert_ptr_null(j);
	ck_assert_msg(strstr(why, "upgrade") != NULL, "why: %s", why);
	ck_assert_ptr_nonnull(strstr(why, db_path));
	sql_exec(holder, "ROLLBACK");
	sqlite3_close(holder);

	assert_file_is(before, len);
	free(before);
	db = peek();
	ck_assert_int_eq(sql_int(db, "PRAGMA user_version"), 1);
	ck_assert_int_eq(sql_int(db, "SELECT count(*) FROM "
				     "pragma_table_info('record') "
				     "WHERE name = 'steps'"),
			 0);
	sqlite3_close(db);

	/* Once the lock is gone the upgrade succeeds. */
	j = jopen();
	v.want = want;
	v.nwant = 2;
	ck_assert_int_eq(journal_pending(j, record_visit, &v), 0);
	ck_assert_uint_eq(v.count, 1);
	ck_assert_uint_eq(v.steps[0], 0);
	journal_close(j);
}
END_TEST

START_TEST(ten_thousand_changes_commit_as_one_record)
{
	enum { N = 10000 };
	struct journal_change *c = calloc(N, sizeof(*c));
	char(*names)[16] = calloc(N, sizeof(*names));
	struct journal *j = jopen();
	struct visit v = { 0 };

	ck_assert_ptr_nonnull(c);
	ck_assert_ptr_nonnull(names);
	for (size_t i = 0; i < N; i++) {
		snprintf(names[i], sizeof(names[i]), "f%zu", i);
		c[i] = simple(i % 2 ? JOURNAL_REPLACE : JOURNAL_WRITE_INTO,
			      names[i], i);
		c[i].base_dev = 2049;
		c[i].mode = 0100600;
	}
	ck_assert_int_eq(journal_commit(j, 1, 0, NULL, c, N), 0);
	ck_assert(journal_invariants(j));
	v.want = c;
	v.nwant = N;
	ck_assert_int_eq(journal_pending(j, record_visit, &v), 0);
	ck_assert_uint_eq(v.count, 1);
	ck_assert_uint_eq(v.ns[0], N);
	ck_assert_int_eq(journal_mark_applied(j, 1), 0);
	journal_close(j);
	free(names);
	free(c);
}
END_TEST

START_TEST(a_commit_survives_a_process_that_never_closes)
{
	struct journal_change want = simple(JOURNAL_REPLACE, "f", 77);
	struct journal *j;
	struct visit v = { 0 };
	int status;
	pid_t pid;

	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct journal *cj;
		char why[512];

		if (journal_open(dir_fd, dir, &cj, why, sizeof(why)) != 0)
			_exit(2);
		if (journal_commit(cj, 77, 0, NULL, &want, 1) != 0)
			_exit(3);
		_exit(0); /* no journal_close, no checkpoint */
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status));
	ck_assert_int_eq(WEXITSTATUS(status), 0);
	/* The record is in the WAL that nobody checkpointed. */
	ck_assert_int_eq(access(wal_path, F_OK), 0);

	j = jopen();
	v.want = &want;
	v.nwant = 1;
	ck_assert_int_eq(journal_pending(j, record_visit, &v), 0);
	ck_assert_uint_eq(v.count, 1);
	ck_assert_uint_eq(v.txids[0], 77);
	ck_assert_uint_eq(max_txid(j), 77);
	journal_close(j);
}
END_TEST

START_TEST(a_nonzero_callback_result_stops_the_iteration)
{
	struct journal *j = jopen();
	struct visit v = { 0 };

	commit_one(j, 1);
	commit_one(j, 2);
	commit_one(j, 3);
	v.stop_at = 2;
	v.stop_ret = 42;
	ck_assert_int_eq(journal_pending(j, record_visit, &v), 42);
	ck_assert_uint_eq(v.count, 2);
	ck_assert_uint_eq(v.txids[1], 2);

	memset(&v, 0, sizeof(v));
	v.stop_at = 1;
	v.stop_ret = -EIO;
	ck_assert_int_eq(journal_pending(j, record_visit, &v), -EIO);
	ck_assert_uint_eq(v.count, 1);
	journal_close(j);
}
END_TEST

START_TEST(the_callback_may_mark_records_applied)
{
	struct journal *j = jopen();
	struct journal_stats s;
	struct visit v = { 0 };

	commit_one(j, 1);
	commit_one(j, 2);
	commit_one(j, 3);
	v.mark = j;
	ck_assert_int_eq(journal_pending(j, record_visit, &v), 0);
	ck_assert_uint_eq(v.count, 3);
	pending(j, &v);
	ck_assert_uint_eq(v.count, 0);
	journal_stats(j, &s);
	ck_assert_uint_eq(s.applied, 3);
	ck_assert_uint_eq(s.pending, 0);
	ck_assert(journal_invariants(j));
	journal_close(j);
}
END_TEST

START_TEST(a_full_disk_is_enospc_and_rolls_back_cleanly)
{
	enum { N = 3000 };
	struct journal_change *c = calloc(N, sizeof(*c));
	struct journal *j = jopen();
	struct journal_stats s;
	struct visit v;
	sqlite3 *db = journal_sqlite(j);
	char sql[64];

	ck_assert_ptr_nonnull(c);
	for (size_t i = 0; i < N; i++)
		c[i] = simple(JOURNAL_REPLACE, "a-name-to-fill-pages", i);
	commit_one(j, 1);
	/* Let the database grow by one page only. */
	snprintf(sql, sizeof(sql), "PRAGMA max_page_count = %lld",
		 (long long)sql_int(db, "PRAGMA page_count") + 1);
	sql_int(db, sql);
	ck_assert_int_eq(journal_commit(j, 2, 0, NULL, c, N), -ENOSPC);
	ck_assert(journal_invariants(j));
	journal_stats(j, &s);
	ck_assert_uint_eq(s.commits, 1);
	ck_assert_uint_eq(s.pending, 1);
	ck_assert_uint_eq(max_txid(j), 1);
	ck_assert_int_eq(journal_mark_applied(j, 2), -ENOENT);
	pending(j, &v);
	ck_assert_uint_eq(v.count, 1);

	/* Not sticky: with room again the same commit succeeds. */
	sql_int(db, "PRAGMA max_page_count = 1073741823");
	ck_assert_int_eq(journal_commit(j, 2, 0, NULL, c, N), 0);
	pending(j, &v);
	ck_assert_uint_eq(v.count, 2);
	ck_assert_uint_eq(v.ns[1], N);
	journal_close(j);
	free(c);
}
END_TEST

/* ------------------------------------------------------------------------
 * Steps: how many of a committed record's changes are applied
 */

START_TEST(a_new_record_starts_at_step_zero)
{
	struct journal *j = jopen();
	struct visit v;
	sqlite3 *db;

	commit_n(j, 1, 3);
	ck_assert_int_eq(journal_commit(j, 2, 0, NULL, NULL, 0), 0);
	pending(j, &v);
	ck_assert_uint_eq(v.count, 2);
	ck_assert_uint_eq(v.ns[0], 3);
	ck_assert_uint_eq(v.steps[0], 0);
	ck_assert_uint_eq(v.ns[1], 0);
	ck_assert_uint_eq(v.steps[1], 0);
	db = peek();
	ck_assert_int_eq(steps_in_db(db, 1), 0);
	ck_assert_int_eq(steps_in_db(db, 2), 0);
	sqlite3_close(db);

	/* A marked step shows at once, and only on its own record. */
	ck_assert_int_eq(journal_mark_steps(j, 1, 1), 0);
	pending(j, &v);
	ck_assert_uint_eq(v.count, 2);
	ck_assert_uint_eq(v.txids[0], 1);
	ck_assert_uint_eq(v.steps[0], 1);
	ck_assert_uint_eq(v.steps[1], 0);
	ck_assert(journal_invariants(j));
	journal_close(j);
}
END_TEST

START_TEST(marked_steps_survive_a_reopen)
{
	struct journal_change c[3] = { simple(JOURNAL_UNLINK, "a", 1),
				       simple(JOURNAL_MKDIR, "b", 2),
				       simple(JOURNAL_RENAME, "c", 3) };
	struct journal *j = jopen();
	struct journal_stats s;
	struct visit v = { 0 };

	ck_assert_int_eq(journal_commit(j, 4, 0, NULL, c, 3), 0);
	ck_assert_int_eq(journal_commit(j, 6, 0, NULL, c, 3), 0);
	ck_assert_int_eq(journal_mark_steps(j, 4, 2), 0);
	ck_assert_int_eq(journal_mark_steps(j, 6, 3), 0);
	journal_close(j);

	j = jopen();
	v.want = c;
	v.nwant = 3;
	ck_assert_int_eq(journal_pending(j, record_visit, &v), 0);
	ck_assert_uint_eq(v.count, 2);
	ck_assert_uint_eq(v.txids[0], 4);
	ck_assert_uint_eq(v.steps[0], 2);
	ck_assert_uint_eq(v.txids[1], 6);
	ck_assert_uint_eq(v.steps[1], 3); /* all done, not yet marked applied */

	/* Marking steps applies nothing: both records are still pending. */
	journal_stats(j, &s);
	ck_assert_uint_eq(s.pending, 2);
	ck_assert_uint_eq(s.applied, 0);
	ck_assert_int_eq(journal_mark_applied(j, 6), 0);
	pending(j, &v);
	ck_assert_uint_eq(v.count, 1);
	ck_assert_uint_eq(v.txids[0], 4);
	ck_assert_uint_eq(v.steps[0], 2);
	journal_close(j);
}
END_TEST

START_TEST(a_smaller_step_count_is_ignored)
{
	struct journal *j = jopen();
	struct visit v;
	sqlite3 *db;

	commit_n(j, 1, 5);
	ck_assert_int_eq(journal_mark_steps(j, 1, 3), 0);
	ck_assert_int_eq(journal_mark_steps(j, 1, 1), 0);
	ck_assert_int_eq(journal_mark_steps(j, 1, 0), 0);
	pending(j, &v);
	ck_assert_uint_eq(v.count, 1);
	ck_assert_uint_eq(v.steps[0], 3);
	ck_assert_int_eq(journal_mark_steps(j, 1, 3), 0);
	ck_assert_int_eq(journal_mark_steps(j, 1, 4), 0);
	pending(j, &v);
	ck_assert_uint_eq(v.steps[0], 4);
	journal_close(j);

	j = jopen();
	pending(j, &v);
	ck_assert_uint_eq(v.steps[0], 4);
	ck_assert_int_eq(journal_mark_steps(j, 1, 2), 0);
	db = peek();
	ck_assert_int_eq(steps_in_db(db, 1), 4);
	sqlite3_close(db);
	journal_close(j);
}
END_TEST

START_TEST(marking_steps_of_an_applied_or_absent_record_is_enoent)
{
	struct journal *j = jopen();
	struct journal_stats s;
	struct visit v;
	sqlite3 *db;

	ck_assert_int_eq(journal_mark_steps(j, 1, 1), -ENOENT);
	commit_n(j, 1, 2);
	commit_n(j, 2, 2);
	ck_assert_int_eq(journal_mark_steps(j, 3, 1), -ENOENT);
	ck_assert_int_eq(journal_mark_steps(j, 3, 0), -ENOENT);
	ck_assert_int_eq(journal_mark_steps(j, (uint64_t)INT64_MAX, 1),
			 -ENOENT);

	/* An applied record is still in the journal, but no longer COMMITTED. */
	ck_assert_int_eq(journal_mark_applied(j, 1), 0);
	ck_assert_int_eq(journal_mark_steps(j, 1, 1), -ENOENT);
	ck_assert_int_eq(journal_mark_steps(j, 1, 0), -ENOENT);
	db = peek();
	ck_assert_int_eq(steps_in_db(db, 1), 0);
	ck_assert_int_eq(steps_in_db(db, 2), 0);
	sqlite3_close(db);
	journal_stats(j, &s);
	ck_assert_uint_eq(s.applied, 1);
	ck_assert_uint_eq(s.pending, 1);
	pending(j, &v);
	ck_assert_uint_eq(v.count, 1);
	ck_assert_uint_eq(v.txids[0], 2);
	ck_assert_uint_eq(v.steps[0], 0);
	ck_assert(journal_invariants(j));

	/* A failed mark is not sticky. */
	ck_assert_int_eq(journal_mark_steps(j, 2, 1), 0);
	pending(j, &v);
	ck_assert_uint_eq(v.steps[0], 1);
	journal_close(j);
}
END_TEST

START_TEST(marking_steps_with_a_bad_txid_is_einval)
{
	struct journal *j = jopen();
	struct visit v;

	commit_n(j, 1, 2);
	ck_assert_int_eq(journal_mark_steps(j, 0, 1), -EINVAL);
	ck_assert_int_eq(journal_mark_steps(j, (uint64_t)INT64_MAX + 1, 1),
			 -EINVAL);
	ck_assert_int_eq(journal_mark_steps(j, UINT64_MAX, 1), -EINVAL);
	/* A count SQLite cannot store is refused too. */
	ck_assert_int_eq(journal_mark_steps(j, 1, SIZE_MAX), -EINVAL);
	pending(j, &v);
	ck_assert_uint_eq(v.count, 1);
	ck_assert_uint_eq(v.steps[0], 0);
	ck_assert(journal_invariants(j));
	journal_close(j);
}
END_TEST

START_TEST(a_record_claiming_more_steps_than_changes_is_ebadmsg)
{
	struct journal *j = jopen();
	struct visit v = { 0 };
	sqlite3 *db;

	commit_n(j, 1, 2);
	commit_n(j, 2, 1);
	ck_assert_int_eq(journal_commit(j, 3, 0, NULL, NULL, 0), 0);

	/* As many steps as changes is fine: every change is applied. */
	db = peek();
	sql_exec(db, "UPDATE record SET steps = 2 WHERE txid = 1");
	pending(j, &v);
	ck_assert_uint_eq(v.count, 3);
	ck_assert_uint_eq(v.steps[0], 2);

	/* One more than the record holds cannot be resumed from. */
	sql_exec(db, "UPDATE record SET steps = 2 WHERE txid = 2");
	memset(&v, 0, sizeof(v));
	ck_assert_int_eq(journal_pending(j, record_visit, &v), -EBADMSG);
	ck_assert_uint_eq(v.count, 1); /* record 1 came first, then the stop */
	ck_assert_uint_eq(v.txids[0], 1);

	/* So does a step claimed by a record without changes. */
	sql_exec(db, "UPDATE record SET steps = 0 WHERE txid = 2");
	sql_exec(db, "UPDATE record SET steps = 1 WHERE txid = 3");
	memset(&v, 0, sizeof(v));
	ck_assert_int_eq(journal_pending(j, record_visit, &v), -EBADMSG);
	ck_assert_uint_eq(v.count, 2);
	ck_assert_uint_eq(v.txids[1], 2);
	sqlite3_close(db);

	/* Not sticky: the journal still works, and refuses again on reopen. */
	ck_assert_int_eq(journal_mark_steps(j, 2, 1), 0);
	journal_close(j);
	j = jopen();
	memset(&v, 0, sizeof(v));
	ck_assert_int_eq(journal_pending(j, record_visit, &v), -EBADMSG);
	ck_assert_uint_eq(v.count, 2);
	ck_assert_uint_eq(v.steps[1], 1);
	journal_close(j);
}
END_TEST

/* ------------------------------------------------------------------------
 * A VFS over the default one whose xSync fails while fail_syncs is set.
 */

static sqlite3_vfs *real_vfs;
static sqlite3_vfs faulty_vfs;
static bool fail_syncs;

struct faulty_file {
	sqlite3_file base;
	sqlite3_file *real; /* the real VFS's file, which follows */
};

#define REAL(f) (((struct faulty_file *)(f))->real)

static int ff_close(sqlite3_file *f)
{
	return REAL(f)->pMethods->xClose(REAL(f));
}

static int ff_read(sqlite3_file *f, void *buf, int n, sqlite3_int64 off)
{
	return REAL(f)->pMethods->xRead(REAL(f), buf, n, off);
}

static int ff_write(sqlite3_file *f, const void *buf, int n, sqlite3_int64 off)
{
	return REAL(f)->pMethods->xWrite(REAL(f), buf, n, off);
}

static int ff_truncate(sqlite3_file *f, sqlite3_int64 size)
{
	return REAL(f)->pMethods->xTruncate(REAL(f), size);
}

static int ff_sync(sqlite3_file *f, int flags)
{
	if (fail_syncs)
		return SQLITE_IOERR_FSYNC;
	return REAL(f)->pMethods->xSync(REAL(f), flags);
}

static int ff_file_size(sqlite3_file *f, sqlite3_int64 *size)
{
	return REAL(f)->pMethods->xFileSize(REAL(f), size);
}

static int ff_lock(sqlite3_file *f, int level)
{
	return REAL(f)->pMethods->xLock(REAL(f), level);
}

static int ff_unlock(sqlite3_file *f, int level)
{
	return REAL(f)->pMethods->xUnlock(REAL(f), level);
}

static int ff_check_reserved(sqlite3_file *f, int *out)
{
	return REAL(f)->pMethods->xCheckReservedLock(REAL(f), out);
}

static int ff_file_control(sqlite3_file *f, int op, void *arg)
{
	return REAL(f)->pMethods->xFileControl(REAL(f), op, arg);
}

static int ff_sector_size(sqlite3_file *f)
{
	return REAL(f)->pMethods->xSectorSize(REAL(f));
}

static int ff_device_characteristics(sqlite3_file *f)
{
	return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f));
}

static int ff_shm_map(sqlite3_file *f, int region, int size, int extend,
		      void volatile **p)
{
	return REAL(f)->pMethods->xShmMap(REAL(f), region, size, extend, p);
}

static int ff_shm_lock(sqlite3_file *f, int offset, int n, int flags)
{
	return REAL(f)->pMethods->xShmLock(REAL(f), offset, n, flags);
}

static void ff_shm_barrier(sqlite3_file *f)
{
	REAL(f)->pMethods->xShmBarrier(REAL(f));
}

static int ff_shm_unmap(sqlite3_file *f, int delete_flag)
{
	return REAL(f)->pMethods->xShmUnmap(REAL(f), delete_flag);
}

static int ff_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **p)
{
	return REAL(f)->pMethods->xFetch(REAL(f), off, n, p);
}

static int ff_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p)
{
	return REAL(f)->pMethods->xUnfetch(REAL(f), off, p);
}

static const sqlite3_io_methods ff_methods = {
	.iVersion = 3,
	.xClose = ff_close,
	.xRead = ff_read,
	.xWrite = ff_write,
	.xTruncate = ff_truncate,
	.xSync = ff_sync,
	.xFileSize = ff_file_size,
	.xLock = ff_lock,
	.xUnlock = ff_unlock,
	.xCheckReservedLock = ff_check_reserved,
	.xFileControl = ff_file_control,
	.xSectorSize = ff_sector_size,
	.xDeviceCharacteristics = ff_device_characteristics,
	.xShmMap = ff_shm_map,
	.xShmLock = ff_shm_lock,
	.xShmBarrier = ff_shm_barrier,
	.xShmUnmap = ff_shm_unmap,
	.xFetch = ff_fetch,
	.xUnfetch = ff_unfetch,
};

static int fv_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f,
		   int flags, int *out_flags)
{
	struct faulty_file *ff = (struct faulty_file *)f;
	int rc;

	ff->real = (sqlite3_file *)(ff + 1);
	rc = real_vfs->xOpen(real_vfs, name, ff->real, flags, out_flags);
	f->pMethods = ff->real->pMethods != NULL ? &ff_methods : NULL;
	return rc;
}

static int fv_delete(sqlite3_vfs *vfs, const char *name, int sync_dir)
{
	return real_vfs->xDelete(real_vfs, name, sync_dir);
}

static int fv_access(sqlite3_vfs *vfs, const char *name, int flags, int *out)
{
	return real_vfs->xAccess(real_vfs, name, flags, out);
}

static int fv_full_pathname(sqlite3_vfs *vfs, const char *name, int n,
			    char *out)
{
	return real_vfs->xFullPathname(real_vfs, name, n, out);
}

static int fv_randomness(sqlite3_vfs *vfs, int n, char *out)
{
	return real_vfs->xRandomness(real_vfs, n, out);
}

static int fv_sleep(sqlite3_vfs *vfs, int us)
{
	return real_vfs->xSleep(real_vfs, us);
}

static int fv_current_time(sqlite3_vfs *vfs, double *out)
{
	return real_vfs->xCurrentTime(real_vfs, out);
}

static int fv_get_last_error(sqlite3_vfs *vfs, int n, char *out)
{
	return real_vfs->xGetLastError(real_vfs, n, out);
}

static int fv_current_time_int64(sqlite3_vfs *vfs, sqlite3_int64 *out)
{
	return real_vfs->xCurrentTimeInt64(real_vfs, out);
}

/*
 * Makes the faulty VFS the default, for this test's process only.  Once is
 * enough: under CK_FORK=no a second call must not wrap the faulty VFS.
 */
static void use_faulty_vfs(void)
{
	if (real_vfs != NULL)
		return;
	real_vfs = sqlite3_vfs_find(NULL);
	ck_assert_ptr_nonnull(real_vfs);
	faulty_vfs = (sqlite3_vfs){
		.iVersion = 2,
		.szOsFile =
		    (int)sizeof(struct faulty_file) + real_vfs->szOsFile,
		.mxPathname = real_vfs->mxPathname,
		.zName = "faulty",
		.xOpen = fv_open,
		.xDelete = fv_delete,
		.xAccess = fv_access,
		.xFullPathname = fv_full_pathname,
		.xRandomness = fv_randomness,
		.xSleep = fv_sleep,
		.xCurrentTime = fv_current_time,
		.xGetLastError = fv_get_last_error,
		.xCurrentTimeInt64 = fv_current_time_int64,
	};
	ck_assert_int_eq(sqlite3_vfs_register(&faulty_vfs, 1), SQLITE_OK);
}

START_TEST(a_failed_fsync_at_commit_makes_the_journal_fail_until_reopened)
{
	struct journal *j;
	uint64_t max;
	struct visit v;
	bool saw1 = false, saw4 = false;

	use_faulty_vfs();
	j = jopen();
	commit_one(j, 1);

	fail_syncs = true;
	ck_assert_int_eq(journal_commit(j, 2, 0, NULL, NULL, 0), -EIO);
	fail_syncs = false;

	/* Sticky: nothing more is built on an unknown outcome. */
	ck_assert_int_eq(journal_commit(j, 3, 0, NULL, NULL, 0), -EIO);
	ck_assert_int_eq(journal_mark_applied(j, 1), -EIO);
	ck_assert_int_eq(journal_mark_steps(j, 1, 0), -EIO);
	ck_assert_int_eq(journal_note_txid(j, 9), -EIO);
	ck_assert_int_eq(journal_max_txid(j, &max), -EIO);
	ck_assert_int_eq(journal_pending(j, record_visit, &v), -EIO);
	ck_assert(journal_invariants(j));
	journal_close(j);

	/* A restart gets a working journal; txid 2 may or may not be there. */
	j = jopen();
	commit_one(j, 4);
	pending(j, &v);
	for (size_t i = 0; i < v.count; i++) {
		ck_assert(v.txids[i] != 3);
		saw1 |= v.txids[i] == 1;
		saw4 |= v.txids[i] == 4;
	}
	ck_assert(saw1 && saw4);
	ck_assert_uint_eq(v.txids[v.count - 1], 4);
	journal_close(j);
}
END_TEST

START_TEST(marked_steps_survive_a_process_that_never_closes)
{
	struct journal *j;
	struct visit v;
	int status;
	pid_t pid;

	j = jopen();
	commit_n(j, 3, 4);
	journal_close(j);

	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct journal *cj;
		char why[512];

		if (journal_open(dir_fd, dir, &cj, why, sizeof(why)) != 0)
			_exit(2);
		if (journal_mark_steps(cj, 3, 2) != 0)
			_exit(3);
		_exit(0); /* no journal_close, no checkpoint */
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status));
	ck_assert_int_eq(WEXITSTATUS(status), 0);
	ck_assert_int_eq(access(wal_path, F_OK), 0);

	j = jopen();
	pending(j, &v);
	ck_assert_uint_eq(v.count, 1);
	ck_assert_uint_eq(v.txids[0], 3);
	ck_assert_uint_eq(v.ns[0], 4);
	ck_assert_uint_eq(v.steps[0], 2);
	journal_close(j);
}
END_TEST

START_TEST(a_failed_fsync_while_marking_steps_makes_the_journal_fail)
{
	struct journal *j;
	struct visit v;

	use_faulty_vfs();
	j = jopen();
	commit_n(j, 1, 3);
	ck_assert_int_eq(journal_mark_steps(j, 1, 1), 0);

	fail_syncs = true;
	ck_assert_int_eq(journal_mark_steps(j, 1, 2), -EIO);
	fail_syncs = false;
	ck_assert_int_eq(journal_mark_steps(j, 1, 3), -EIO);
	ck_assert_int_eq(journal_mark_applied(j, 1), -EIO);
	ck_assert_int_eq(journal_pending(j, record_visit, &v), -EIO);
	journal_close(j);

	/* After a restart the step is 1 or 2, never lost below 1. */
	j = jopen();
	pending(j, &v);
	ck_assert_uint_eq(v.count, 1);
	ck_assert(v.steps[0] == 1 || v.steps[0] == 2);
	ck_assert_int_eq(journal_mark_steps(j, 1, 3), 0);
	journal_close(j);
}
END_TEST

/* ------------------------------------------------------------------------
 * Threads
 */

enum { THREADS = 4, PER_THREAD = 15 };

struct worker {
	struct journal *j;
	int id;
	int failures;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct journal_change c = simple(JOURNAL_REPLACE, "t", 0);
	struct journal_stats s;
	uint64_t max;

	for (int i = 0; i < PER_THREAD; i++) {
		uint64_t txid = (uint64_t)(w->id * 1000 + i + 1);

		c.base_ino = txid;
		if (journal_commit(w->j, txid, 0, NULL, &c, 1) != 0)
			w->failures++;
		if (i % 2 == 0 && journal_mark_applied(w->j, txid) != 0)
			w->failures++;
		if (journal_max_txid(w->j, &max) != 0 || max < txid)
			w->failures++;
		journal_stats(w->j, &s);
	}
	return NULL;
}

START_TEST(threads_may_share_one_journal)
{
	struct worker w[THREADS];
	pthread_t t[THREADS];
	struct journal *j = jopen();
	struct journal_stats s;
	struct visit v;

	for (int i = 0; i < THREADS; i++) {
		w[i] = (struct worker){ .j = j, .id = i + 1 };
		ck_assert_int_eq(
		    pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
	}
	for (int i = 0; i < THREADS; i++) {
		ck_assert_int_eq(pthread_join(t[i], NULL), 0);
		ck_assert_int_eq(w[i].failures, 0);
	}
	journal_stats(j, &s);
	ck_assert_uint_eq(s.commits, THREADS * PER_THREAD);
	ck_assert_uint_eq(s.applied, THREADS * ((PER_THREAD + 1) / 2));
	ck_assert_uint_eq(s.pending, THREADS * (PER_THREAD / 2));
	pending(j, &v);
	ck_assert_uint_eq(v.count, s.pending);
	for (size_t i = 0; i < v.count; i++)
		ck_assert_uint_eq(v.txids[i] % 1000 % 2, 0); /* odd i applied */
	ck_assert_uint_eq(max_txid(j), THREADS * 1000 + PER_THREAD);
	ck_assert(journal_invariants(j));
	journal_close(j);
}
END_TEST

static Suite *journal_suite(void)
{
	Suite *s = suite_create("journal");
	TCase *tc = tcase_create("records");
	TCase *tf = tcase_create("format");
	TCase *td = tcase_create("durability");
	TCase *ts = tcase_create("steps");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, every_field_comes_back_byte_for_byte);
	tcase_add_test(tc, a_null_label_and_an_empty_change_set_are_recorded);
	tcase_add_test(tc, pending_follows_commit_order_not_txid_order);
	tcase_add_test(tc, changes_come_back_in_the_order_given);
	tcase_add_test(tc, mark_applied_removes_a_record_from_pending);
	tcase_add_test(tc, marking_an_unknown_txid_is_enoent);
	tcase_add_test(
	    tc, committing_a_recorded_txid_is_eexist_and_changes_nothing);
	tcase_add_test(tc, bad_arguments_are_einval_and_record_nothing);
	tcase_add_test(tc, max_txid_follows_commits_and_notes_monotonically);
	tcase_add_test(tc,
		       pruning_keeps_the_latest_applied_records_and_max_txid);
	tcase_add_test(tc, ten_thousand_changes_commit_as_one_record);
	tcase_add_test(tc, a_nonzero_callback_result_stops_the_iteration);
	tcase_add_test(tc, the_callback_may_mark_records_applied);
	tcase_add_test(tc, threads_may_share_one_journal);
	suite_add_tcase(s, tc);

	tcase_add_checked_fixture(tf, setup, teardown);
	tcase_set_timeout(tf, 120);
	tcase_add_test(tf, wal_mode_and_synchronous_full_are_set);
	tcase_add_test(tf, a_newer_format_is_refused_and_left_untouched);
	tcase_add_test(tf, a_garbage_file_is_refused_and_left_untouched);
	tcase_add_test(
	    tf, a_file_with_sqlite_magic_and_a_garbage_header_is_refused);
	tcase_add_test(tf, a_foreign_database_is_refused);
	tcase_add_test(tf,
		       a_database_with_a_corrupt_page_is_refused_not_recreated);
	tcase_add_test(tf, a_truncated_database_is_refused_not_recreated);
	tcase_add_test(tf, a_path_naming_another_directory_is_einval);
	tcase_add_test(tf, a_format_1_journal_is_upgraded_in_place);
	tcase_add_test(tf,
		       a_failed_upgrade_leaves_the_format_1_journal_untouched);
	suite_add_tcase(s, tf);

	tcase_add_checked_fixture(ts, setup, teardown);
	tcase_set_timeout(ts, 120);
	tcase_add_test(ts, a_new_record_starts_at_step_zero);
	tcase_add_test(ts, marked_steps_survive_a_reopen);
	tcase_add_test(ts, a_smaller_step_count_is_ignored);
	tcase_add_test(ts,
		       marking_steps_of_an_applied_or_absent_record_is_enoent);
	tcase_add_test(ts, marking_steps_with_a_bad_txid_is_einval);
	tcase_add_test(ts,
		       a_record_claiming_more_steps_than_changes_is_ebadmsg);
	suite_add_tcase(s, ts);

	tcase_add_checked_fixture(td, setup, teardown);
	tcase_set_timeout(td, 120);
	tcase_add_test(td, reopening_keeps_records_marks_and_ids);
	tcase_add_test(td, a_commit_survives_a_process_that_never_closes);
	tcase_add_test(td, a_full_disk_is_enospc_and_rolls_back_cleanly);
	tcase_add_test(
	    td, a_failed_fsync_at_commit_makes_the_journal_fail_until_reopened);
	tcase_add_test(td, marked_steps_survive_a_process_that_never_closes);
	tcase_add_test(
	    td, a_failed_fsync_while_marking_steps_makes_the_journal_fail);
	suite_add_tcase(s, td);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(journal_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
