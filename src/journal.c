/*
 * journal.c: the write-ahead journal of txfsd.
 *
 * RESPONSIBILITY
 *
 * A transaction is committed when its commit record is durable here.  The
 * daemon's commit thread flushes the transaction's shadow files, calls
 * journal_commit() with the whole change set (that SQLite transaction's
 * COMMIT is the durability point), applies the changes to the source
 * directory (the checkpoint) and calls journal_mark_applied().  At start-up
 * recovery calls journal_pending() and redoes, in commit order, every record
 * that was committed but not applied.  The journal does not interpret the
 * changes: it stores them and gives them back byte for byte.
 *
 * STORAGE
 *
 * STATE/journal.db is an SQLite database in WAL mode with synchronous=FULL,
 * so the WAL has been fsynced when a COMMIT returns (and the directory too,
 * the first time SQLite creates the WAL).  PRAGMA user_version holds the
 * format number, JOURNAL_FORMAT.  Format 2 has three tables:
 *
 *   meta    One row (id 1): max_txid, the largest txid ever recorded or
 *           noted; last_seq, the last commit sequence number handed out;
 *           created_at.
 *   record  One row per committed transaction: txid (the key), seq (its
 *           place in commit order, never reused), owner, label,
 *           committed_at, applied (0 or 1), applied_at, steps (how
 *           many changes, from the first, are applied and durable).
 *   change  One row per change, keyed (txid, seq), txid referencing record
 *           ON DELETE CASCADE, with a column per journal_change field.
 *           Handles, names, shadow names and paths are BLOBs: file names
 *           are bytes, not text, and must come back unchanged.
 *
 * Commit order is seq, not txid: a transaction that began later may commit
 * first.  txids are stored as SQLite's signed 64-bit integers, so they must
 * not exceed INT64_MAX; dev and ino are stored bit for bit.  Times are
 * milliseconds since the epoch, for people reading the database.
 *
 * RECORD STATES
 *
 *   (absent)  -> COMMITTED  [journal_commit]
 *   COMMITTED -> APPLIED    [journal_mark_applied]
 *   APPLIED   -> (deleted)  [prune, from journal_mark_applied and
 *                            journal_open, for all but the latest
 *                            JOURNAL_KEEP_APPLIED applied records]
 *
 * INVARIANTS
 *
 *  (1) A record and all its changes are written by one SQLite transaction
 *      (BEGIN IMMEDIATE ... COMMIT), so after a crash a record is either
 *      absent or complete, and a change never exists without its record.
 *  (2) meta has exactly one row.  meta.max_txid is at least every txid in
 *      record and never decreases; meta.last_seq is at least every seq.
 *  (3) record.applied only goes from 0 to 1, and a COMMITTED record is
 *      never deleted.
 *  (4) Between calls at most JOURNAL_KEEP_APPLIED applied records exist.
 *  (5) j->pending is the number of COMMITTED records.
 *  (6) journal_open only reads a database until its format check has
 *      passed, so a database it refuses is left as it found it.  (SQLite's
 *      own crash recovery aside: reading may roll back a hot rollback
 *      journal, and closing may copy committed WAL frames into the file;
 *      neither changes the database's content.)
 *  (7) Errors are sticky, as in SQLite's pager: after an I/O error or
 *      corruption j->err is -EIO and every later call returns it.  A COMMIT
 *      that failed that way may still have reached the disk, so nothing
 *      more may be built on the journal; the daemon restarts and recovery
 *      decides.  A full disk (SQLITE_FULL) is not sticky: the transaction
 *      is rolled back cleanly.
 *  (8) record.steps only grows, and only while the record is COMMITTED:
 *      the first steps changes of the record are applied and durable in
 *      SOURCE, so recovery resumes after them.
 *
 * LOCKING
 *
 * j->lock guards the connection, its statements and every field but path,
 * which is immutable.  The connection is opened SQLITE_OPEN_NOMUTEX because
 * that mutex already serialises every use of it.  journal_pending holds the
 * lock while it reads a record, not while its callback runs, so the
 * callback may call back into the journal.
 */
#include "config.h"

#include "journal.h"

#include "log.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define JOURNAL_BUSY_MS	   5000
#define JOURNAL_WAL_LIMIT  (4 * 1024 * 1024)
#define SQLITE_MAGIC	   "SQLite format 3"
#define SQLITE_MAGIC_BYTES 16 /* including the NUL */

/* The prepared statements, kept for the life of the connection. */
enum {
	ST_BEGIN,
	ST_BEGIN_IMMEDIATE,
	ST_COMMIT,
	ST_ROLLBACK,
	ST_INSERT_RECORD,
	ST_BUMP_META,
	ST_INSERT_CHANGE,
	ST_MARK,
	ST_MARK_STEPS,
	ST_RECORD_STATE,
	ST_RECORD_STEPS,
	ST_PRUNE,
	ST_NOTE,
	ST_MAX_TXID,
	ST_PENDING_IDS,
	ST_CHANGES,
	ST_COUNT_PENDING,
	ST_CHECK,
	ST_COUNT
};

static const char *const sql_text[ST_COUNT] = {
	[ST_BEGIN] = "BEGIN",
	[ST_BEGIN_IMMEDIATE] = "BEGIN IMMEDIATE",
	[ST_COMMIT] = "COMMIT",
	[ST_ROLLBACK] = "ROLLBACK",
	[ST_INSERT_RECORD] =
	    "INSERT INTO record (txid, seq, owner, label, committed_at) "
	    "VALUES (?1, (SELECT last_seq + 1 FROM meta WHERE id = 1), "
	    "?2, ?3, ?4)",
	[ST_BUMP_META] = "UPDATE meta SET last_seq = last_seq + 1, "
			 "max_txid = max(max_txid, ?1) WHERE id = 1",
	[ST_INSERT_CHANGE] =
	    "INSERT INTO change (txid, seq, kind, shadow, parent, name, "
	    "parent2, name2, base_dev, base_ino, mode, flags, path) "
	    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
	[ST_MARK] = "UPDATE record SET applied = 1, applied_at = ?2 "
		    "WHERE txid = ?1 AND applied = 0",
	[ST_MARK_STEPS] = "UPDATE record SET steps = max(steps, ?2) "
			  "WHERE txid = ?1 AND applied = 0 AND ?2 <= "
			  "(SELECT count(*) FROM change WHERE txid = ?1)",
	[ST_RECORD_STATE] = "SELECT applied FROM record WHERE txid = ?1",
	[ST_RECORD_STEPS] = "SELECT steps FROM record WHERE txid = ?1",
	[ST_PRUNE] = "DELETE FROM record WHERE applied = 1 AND seq < "
		     "(SELECT seq FROM record WHERE applied = 1 "
		     "ORDER BY seq DESC LIMIT 1 OFFSET ?1)",
	[ST_NOTE] = "UPDATE meta SET max_txid = max(max_txid, ?1) "
		    "WHERE id = 1",
	[ST_MAX_TXID] = "SELECT max_txid FROM meta WHERE id = 1",
	[ST_PENDING_IDS] =
	    "SELECT txid FROM record WHERE applied = 0 ORDER BY seq",
	[ST_CHANGES] = "SELECT kind, shadow, parent, name, parent2, name2, "
		       "base_dev, base_ino, mode, flags, path "
		       "FROM change WHERE txid = ?1 ORDER BY seq",
	[ST_COUNT_PENDING] = "SELECT count(*) FROM record WHERE applied = 0",
	[ST_CHECK] = "SELECT (SELECT count(*) FROM meta), "
		     "(SELECT max_txid FROM meta WHERE id = 1) >= "
		     "(SELECT coalesce(max(txid), 0) FROM record), "
		     "(SELECT last_seq FROM meta WHERE id = 1) >= "
		     "(SELECT coalesce(max(seq), 0) FROM record), "
		     "(SELECT count(*) FROM record WHERE applied = 0), "
		     "(SELECT count(*) FROM record WHERE applied = 1)",
};

/* Format 1, a printf format: create_schema fills in created_at. */
#define SCHEMA_V1                                                              \
	"BEGIN IMMEDIATE;"                                                     \
	"CREATE TABLE meta ("                                                  \
	" id INTEGER PRIMARY KEY CHECK (id = 1),"                              \
	" max_txid INTEGER NOT NULL CHECK (max_txid >= 0),"                    \
	" last_seq INTEGER NOT NULL CHECK (last_seq >= 0),"                    \
	" created_at INTEGER NOT NULL);"                                       \
	"CREATE TABLE record ("                                                \
	" txid INTEGER PRIMARY KEY CHECK (txid > 0),"                          \
	" seq INTEGER NOT NULL UNIQUE,"                                        \
	" owner INTEGER NOT NULL,"                                             \
	" label TEXT,"                                                         \
	" committed_at INTEGER NOT NULL,"                                      \
	" applied INTEGER NOT NULL DEFAULT 0 CHECK (applied IN (0, 1)),"       \
	" applied_at INTEGER);"                                                \
	"CREATE INDEX record_pending ON record (seq) WHERE applied = 0;"       \
	"CREATE TABLE change ("                                                \
	" txid INTEGER NOT NULL REFERENCES record (txid) ON DELETE CASCADE,"   \
	" seq INTEGER NOT NULL,"                                               \
	" kind INTEGER NOT NULL,"                                              \
	" shadow BLOB,"                                                        \
	" parent BLOB,"                                                        \
	" name BLOB,"                                                          \
	" parent2 BLOB,"                                                       \
	" name2 BLOB,"                                                         \
	" base_dev INTEGER NOT NULL,"                                          \
	" base_ino INTEGER NOT NULL,"                                          \
	" mode INTEGER NOT NULL,"                                              \
	" flags INTEGER NOT NULL,"                                             \
	" path BLOB,"                                                          \
	" PRIMARY KEY (txid, seq)) WITHOUT ROWID;"                             \
	"INSERT INTO meta (id, max_txid, last_seq, created_at)"                \
	" VALUES (1, 0, 0, %" PRId64 ");"                                      \
	"PRAGMA user_version = 1;"                                             \
	"COMMIT;"

/*
 * Format 2 adds record.steps: how many of the record's changes, from the
 * first, are applied and durable in SOURCE (invariant (8)).  A format 1
 * journal is upgraded in place, in one transaction; its pending records
 * start from step 0, which is how format 1 replayed them.
 */
#define UPGRADE_V2                                                             \
	"BEGIN IMMEDIATE;"                                                     \
	"ALTER TABLE record ADD COLUMN"                                        \
	" steps INTEGER NOT NULL DEFAULT 0 CHECK (steps >= 0);"                \
	"PRAGMA user_version = 2;"                                             \
	"COMMIT;"

struct journal {
	pthread_mutex_t lock;
	char *path;		    /* immutable */
	sqlite3 *db;		    /* guarded by lock */
	sqlite3_stmt *st[ST_COUNT]; /* guarded by lock */
	uint64_t commits, applied;  /* guarded by lock */
	size_t pending;		    /* guarded by lock; invariant (5) */
	int err;		    /* guarded by lock; invariant (7) */
};

/* One record read back by journal_pending: changes[i]'s bytes live in mem[i]. */
struct loaded {
	struct journal_change *changes;
	char **mem;
	size_t n, cap;
	size_t steps; /* record.steps */
};

static bool invariants_locked(struct journal *j);

/* Milliseconds since the epoch. */
static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Converts an SQLite result code to -errno. */
static int sql_errno(sqlite3 *db, int rc)
{
	int e;

	if (rc == SQLITE_IOERR_NOMEM)
		return -ENOMEM;
	switch (rc & 0xff) {
	case SQLITE_OK:
	case SQLITE_ROW:
	case SQLITE_DONE:
		return 0;
	case SQLITE_FULL:
		return -ENOSPC;
	case SQLITE_NOMEM:
		return -ENOMEM;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return -EBUSY;
	case SQLITE_READONLY:
		return -EROFS;
	case SQLITE_PERM:
	case SQLITE_AUTH:
		return -EACCES;
	case SQLITE_TOOBIG:
		return -E2BIG;
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		return -EBADMSG;
	case SQLITE_CANTOPEN:
		e = db != NULL ? sqlite3_system_errno(db) : 0;
		return e > 0 ? -e : -EIO;
	default:
		return -EIO;
	}
}

/* Returns true for the errors after which the database is not trusted. */
static bool sql_fatal(int rc)
{
	if (rc == SQLITE_IOERR_NOMEM)
		return false;
	return (rc & 0xff) == SQLITE_IOERR || (rc & 0xff) == SQLITE_CORRUPT ||
	       (rc & 0xff) == SQLITE_NOTADB;
}

/*
 * Logs a failed operation with SQLite's message and returns -errno; a fatal
 * error makes the journal fail from now on (invariant (7)).
 */
static int op_fail(struct journal *j, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int op_fail(struct journal *j, int rc, const char *fmt, ...)
{
	char what[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	log_err("journal %s: %s: %s", j->path, what, sqlite3_errmsg(j->db));
	if (sql_fatal(rc)) {
		if (j->err == 0)
			log_err("journal %s: failing every further operation "
				"until txfsd restarts",
				j->path);
		j->err = -EIO;
		return -EIO;
	}
	return sql_errno(j->db, rc);
}

/* Writes a reason into why and returns err. */
static int refuse(char *why, size_t len, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int refuse(char *why, size_t len, int err, const char *fmt, ...)
{
	va_list ap;

	if (why != NULL && len > 0) {
		va_start(ap, fmt);
		vsnprintf(why, len, fmt, ap);
		va_end(ap);
	}
	return err;
}

/* Writes why for a failed SQLite call during open and returns -errno. */
static int open_fail(struct journal *j, int rc, char *why, size_t len,
		     const char *what)
{
	int err = sql_errno(j->db, rc);

	if (err == -EBADMSG)
		return refuse(why, len, err,
			      "journal %s: corrupt or not a database: %s",
			      j->path, sqlite3_errmsg(j->db));
	return refuse(why, len, err ? err : -EIO, "journal %s: cannot %s: %s",
		      j->path, what, sqlite3_errmsg(j->db));
}

/* Resets a statement and drops its bindings, which may point at caller memory. */
static void done(sqlite3_stmt *st)
{
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
}

/* Steps st to its end; returns SQLITE_OK or the error. */
static int run(sqlite3_stmt *st)
{
	int rc;

	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		;
	done(st);
	return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/*
 * Runs a query whose first column is an integer.  Returns SQLITE_OK with the
 * first row's value, SQLITE_DONE when there is no row, or the error.
 */
static int query_int(sqlite3_stmt *st, int64_t *out)
{
	int rc = sqlite3_step(st);

	*out = 0;
	if (rc == SQLITE_ROW) {
		*out = sqlite3_column_int64(st, 0);
		rc = SQLITE_OK;
	}
	done(st);
	return rc;
}

/* Like query_int, for a row the schema promises (meta's): none is corrupt. */
static int query_row(sqlite3_stmt *st, int64_t *out)
{
	int rc = query_int(st, out);

	return rc == SQLITE_DONE ? SQLITE_CORRUPT : rc;
}

/* Runs a pragma that answers one integer, on a throw-away statement. */
static int pragma_int(sqlite3 *db, const char *sql, int64_t *out)
{
	sqlite3_stmt *st;
	int rc;

	rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
	if (rc != SQLITE_OK)
		return rc;
	rc = query_row(st, out);
	sqlite3_finalize(st);
	return rc;
}

/* Runs a pragma that answers one string, copied into buf. */
static int pragma_text(sqlite3 *db, const char *sql, char *buf, size_t len)
{
	sqlite3_stmt *st;
	const unsigned char *s;
	int rc;

	rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
	if (rc != SQLITE_OK)
		return rc;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		s = sqlite3_column_text(st, 0);
		snprintf(buf, len, "%s", s != NULL ? (const char *)s : "");
		rc = SQLITE_OK;
	} else if (rc == SQLITE_DONE) {
		snprintf(buf, len, "%s", "");
		rc = SQLITE_OK;
	}
	sqlite3_finalize(st);
	return rc;
}

/* Ends the open SQLite transaction, if any, without its changes. */
static void rollback(struct journal *j)
{
	int rc;

	if (sqlite3_get_autocommit(j->db))
		return;
	rc = run(j->st[ST_ROLLBACK]);
	if (rc != SQLITE_OK)
		op_fail(j, rc, "cannot roll back");
}

/* ------------------------------------------------------------------------
 * Opening
 */

/*
 * Looks at STATE/journal.db before SQLite does: it must be absent, empty, or
 * a regular file that starts with SQLite's magic string.
 */
static int check_file(int dirfd, const char *path, char *why, size_t len)
{
	char magic[SQLITE_MAGIC_BYTES];
	struct stat st;
	ssize_t got;
	int fd;

	if (fstatat(dirfd, JOURNAL_FILE, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		if (errno == ENOENT)
			return 0;
		return refuse(why, len, -errno, "journal %s: cannot stat: %s",
			      path, strerror(errno));
	}
	if (!S_ISREG(st.st_mode))
		return refuse(why, len, -EINVAL,
			      "journal %s: not a regular file", path);
	if (st.st_size == 0)
		return 0;
	fd = openat(dirfd, JOURNAL_FILE, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return refuse(why, len, -errno, "journal %s: cannot open: %s",
			      path, strerror(errno));
	got = pread(fd, magic, sizeof(magic), 0);
	if (got < 0) {
		int err = -errno;

		close(fd);
		return refuse(why, len, err, "journal %s: cannot read: %s",
			      path, strerror(-err));
	}
	close(fd);
	if ((size_t)got < sizeof(magic) ||
	    memcmp(magic, SQLITE_MAGIC, sizeof(magic)) != 0)
		return refuse(why, len, -EBADMSG,
			      "journal %s: not an sqlite database", path);
	return 0;
}

/* The first problem in quick_check's report, without its heading. */
static const char *first_problem(const unsigned char *msg, char *buf,
				 size_t len)
{
	const char *s = msg != NULL ? (const char *)msg : "no report";
	const char *head = "*** in database main ***\n";

	if (strncmp(s, head, strlen(head)) == 0)
		s += strlen(head);
	snprintf(buf, len, "%.*s", (int)strcspn(s, "\n"), s);
	return buf;
}

/*
 * Reads the format and checks the database, reading only (invariant (6)).
 * Sets *fresh for an empty database, which journal_open then initialises.
 */
static int check_format(struct journal *j, bool *fresh, char *why, size_t len)
{
	int64_t version, objects;
	sqlite3_stmt *st;
	const unsigned char *msg;
	char problem[256];
	int rc, err;

	rc = pragma_int(j->db, "PRAGMA user_version", &version);
	if (rc != SQLITE_OK)
		return open_fail(j, rc, why, len, "read the format");
	if (version > JOURNAL_FORMAT)
		return refuse(why, len, -EPROTONOSUPPORT,
			      "journal %s: format %" PRId64
			      " is newer than this txfsd (%d)",
			      j->path, version, JOURNAL_FORMAT);
	if (version < 0)
		return refuse(why, len, -EBADMSG,
			      "journal %s: unknown format %" PRId64, j->path,
			      version);
	if (version == 0) {
		rc = pragma_int(j->db, "SELECT count(*) FROM sqlite_master",
				&objects);
		if (rc != SQLITE_OK)
			return open_fail(j, rc, why, len, "read the schema");
		if (objects > 0)
			return refuse(why, len, -EBADMSG,
				      "journal %s: not a txfs journal (no "
				      "format number, %" PRId64
				      " schema objects)",
				      j->path, objects);
		*fresh = true;
		return 0;
	}

	rc = sqlite3_prepare_v2(j->db, "PRAGMA quick_check", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return open_fail(j, rc, why, len, "check the database");
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		msg = sqlite3_column_text(st, 0);
		if (msg == NULL || strcmp((const char *)msg, "ok") != 0) {
			err = refuse(
			    why, len, -EBADMSG,
			    "journal %s: database is corrupt: %s", j->path,
			    first_problem(msg, problem, sizeof(problem)));
			sqlite3_finalize(st);
			return err;
		}
		rc = SQLITE_OK;
	} else if (rc == SQLITE_DONE) {
		rc = SQLITE_OK;
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_OK)
		return open_fail(j, rc, why, len, "check the database");
	*fresh = false;
	return 0;
}

/* Sets the connection's pragmas and checks that they took. */
static int configure(struct journal *j, char *why, size_t len)
{
	char mode[32], sql[64];
	int64_t v;
	int rc;

	rc =
	    pragma_text(j->db, "PRAGMA journal_mode = WAL", mode, sizeof(mode));
	if (rc != SQLITE_OK)
		return open_fail(j, rc, why, len, "enable wal mode");
	if (strcmp(mode, "wal") != 0)
		return refuse(why, len, -ENOTSUP,
			      "journal %s: cannot enable wal mode (still %s)",
			      j->path, mode);
	rc = sqlite3_exec(j->db, "PRAGMA synchronous = FULL", NULL, NULL, NULL);
	if (rc == SQLITE_OK)
		rc = pragma_int(j->db, "PRAGMA synchronous", &v);
	if (rc != SQLITE_OK)
		return open_fail(j, rc, why, len, "set synchronous=full");
	if (v != 2)
		return refuse(why, len, -ENOTSUP,
			      "journal %s: synchronous is %" PRId64
			      ", not full",
			      j->path, v);
	rc = sqlite3_exec(j->db, "PRAGMA foreign_keys = ON", NULL, NULL, NULL);
	if (rc == SQLITE_OK)
		rc = pragma_int(j->db, "PRAGMA foreign_keys", &v);
	if (rc != SQLITE_OK)
		return open_fail(j, rc, why, len, "enable foreign keys");
	if (v != 1)
		return refuse(why, len, -ENOTSUP,
			      "journal %s: sqlite3 lacks foreign keys",
			      j->path);
	snprintf(sql, sizeof(sql), "PRAGMA journal_size_limit = %d",
		 JOURNAL_WAL_LIMIT);
	rc = sqlite3_exec(j->db, sql, NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		return open_fail(j, rc, why, len, "limit the wal size");
	return 0;
}

/* Creates the format 1 schema in an empty database, in one transaction. */
static int create_schema(struct journal *j, int dirfd, char *why, size_t len)
{
	char sql[sizeof(SCHEMA_V1) + 32];
	int rc;

	snprintf(sql, sizeof(sql), SCHEMA_V1, now_ms());
	rc = sqlite3_exec(j->db, sql, NULL, NULL, NULL);
	if (rc != SQLITE_OK) {
		int err = open_fail(j, rc, why, len, "create the schema");

		if (!sqlite3_get_autocommit(j->db))
			sqlite3_exec(j->db, "ROLLBACK", NULL, NULL, NULL);
		return err;
	}
	/* SQLite syncs the directory for a new WAL, not for the database. */
	if (fsync(dirfd) < 0)
		return refuse(why, len, -errno,
			      "journal %s: cannot sync its directory: %s",
			      j->path, strerror(errno));
	return 0;
}

/* Upgrades a format 1 journal to format 2 (see UPGRADE_V2). */
static int upgrade(struct journal *j, bool fresh, char *why, size_t len)
{
	int64_t version;
	int rc;

	rc = pragma_int(j->db, "PRAGMA user_version", &version);
	if (rc != SQLITE_OK)
		return open_fail(j, rc, why, len, "read the format");
	if (version != 1)
		return 0;
	rc = sqlite3_exec(j->db, UPGRADE_V2, NULL, NULL, NULL);
	if (rc != SQLITE_OK) {
		int err = open_fail(j, rc, why, len, "upgrade to format 2");

		if (!sqlite3_get_autocommit(j->db))
			sqlite3_exec(j->db, "ROLLBACK", NULL, NULL, NULL);
		return err;
	}
	if (!fresh)
		log_info("journal %s: upgraded from format 1 to 2", j->path);
	return 0;
}

/* Prepares every statement; a missing table or column means a foreign schema. */
static int prepare_all(struct journal *j, char *why, size_t len)
{
	int rc;

	for (int i = 0; i < ST_COUNT; i++) {
		rc = sqlite3_prepare_v3(j->db, sql_text[i], -1,
					SQLITE_PREPARE_PERSISTENT, &j->st[i],
					NULL);
		if (rc == SQLITE_ERROR)
			return refuse(why, len, -EBADMSG,
				      "journal %s: schema does not match "
				      "format %d: %s",
				      j->path, JOURNAL_FORMAT,
				      sqlite3_errmsg(j->db));
		if (rc != SQLITE_OK)
			return open_fail(j, rc, why, len, "prepare statements");
	}
	return 0;
}

static void finalize_all(struct journal *j)
{
	for (int i = 0; i < ST_COUNT; i++) {
		sqlite3_finalize(j->st[i]);
		j->st[i] = NULL;
	}
}

/* Deletes applied records beyond the latest JOURNAL_KEEP_APPLIED. */
static int prune(struct journal *j)
{
	sqlite3_stmt *st = j->st[ST_PRUNE];

	sqlite3_bind_int(st, 1, JOURNAL_KEEP_APPLIED - 1);
	return run(st);
}

/* Reads the state the counters start from, and prunes. */
static int load(struct journal *j, char *why, size_t len)
{
	int64_t v;
	int rc;

	rc = query_int(j->st[ST_MAX_TXID], &v);
	if (rc == SQLITE_DONE)
		return refuse(why, len, -EBADMSG,
			      "journal %s: its meta row is missing", j->path);
	if (rc == SQLITE_OK)
		rc = query_row(j->st[ST_COUNT_PENDING], &v);
	if (rc != SQLITE_OK)
		return open_fail(j, rc, why, len, "read the journal");
	j->pending = (size_t)v;
	rc = prune(j);
	if (rc != SQLITE_OK)
		return open_fail(j, rc, why, len, "prune applied records");
	return 0;
}

int journal_open(int statedir_fd, const char *statedir_path,
		 struct journal **out, char *why, size_t whylen)
{
	char dbpath[PATH_MAX];
	struct stat fd_st, path_st;
	struct journal *j;
	bool fresh = false;
	int ret, rc;

	if (sqlite3_threadsafe() == 0)
		return refuse(why, whylen, -ENOTSUP,
			      "journal: sqlite3 is built without threads");
	if (fstat(statedir_fd, &fd_st) < 0)
		return refuse(why, whylen, -errno,
			      "journal: cannot stat the state directory: %s",
			      strerror(errno));
	if (stat(statedir_path, &path_st) < 0)
		return refuse(why, whylen, -errno,
			      "journal: cannot stat %s: %s", statedir_path,
			      strerror(errno));
	if (!S_ISDIR(fd_st.st_mode) || fd_st.st_dev != path_st.st_dev ||
	    fd_st.st_ino != path_st.st_ino)
		return refuse(why, whylen, -EINVAL,
			      "journal: %s is not the directory open as "
			      "the state directory",
			      statedir_path);
	if (snprintf(dbpath, sizeof(dbpath), "%s/%s", statedir_path,
		     JOURNAL_FILE) >= (int)sizeof(dbpath))
		return refuse(why, whylen, -ENAMETOOLONG,
			      "journal: path too long under %s", statedir_path);
	ret = check_file(statedir_fd, dbpath, why, whylen);
	if (ret < 0)
		return ret;

	j = calloc(1, sizeof(*j));
	if (j == NULL)
		return refuse(why, whylen, -ENOMEM, "journal: out of memory");
	j->path = strdup(dbpath);
	if (j->path == NULL) {
		ret = refuse(why, whylen, -ENOMEM, "journal: out of memory");
		goto out_free;
	}
	ret = -pthread_mutex_init(&j->lock, NULL);
	if (ret < 0) {
		refuse(why, whylen, ret, "journal: cannot create a mutex");
		goto out_free_path;
	}
	rc = sqlite3_open_v2(dbpath, &j->db,
			     SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
				 SQLITE_OPEN_NOMUTEX,
			     NULL);
	if (rc != SQLITE_OK) {
		ret = j->db != NULL
			  ? open_fail(j, rc, why, whylen, "open")
			  : refuse(why, whylen, -ENOMEM,
				   "journal %s: cannot open: out of memory",
				   dbpath);
		goto out_close_db;
	}
	sqlite3_extended_result_codes(j->db, 1);
	sqlite3_busy_timeout(j->db, JOURNAL_BUSY_MS);

	ret = check_format(j, &fresh, why, whylen);
	if (ret < 0)
		goto out_close_db;
	ret = configure(j, why, whylen);
	if (ret < 0)
		goto out_close_db;
	if (fresh) {
		ret = create_schema(j, statedir_fd, why, whylen);
		if (ret < 0)
			goto out_close_db;
	}
	ret = upgrade(j, fresh, why, whylen);
	if (ret < 0)
		goto out_close_db;
	ret = prepare_all(j, why, whylen);
	if (ret < 0)
		goto out_finalize;
	ret = load(j, why, whylen);
	if (ret < 0)
		goto out_finalize;
	assert(invariants_locked(j));
	log_debug("journal %s: opened, %zu pending", j->path, j->pending);
	*out = j;
	return 0;

out_finalize:
	finalize_all(j);
out_close_db:
	sqlite3_close(j->db);
	pthread_mutex_destroy(&j->lock);
out_free_path:
	free(j->path);
out_free:
	free(j);
	return ret;
}

void journal_close(struct journal *j)
{
	int rc;

	if (j == NULL)
		return;
	finalize_all(j);
	rc = sqlite3_close(j->db);
	if (rc != SQLITE_OK)
		log_err("journal %s: cannot close: %s", j->path,
			sqlite3_errstr(rc));
	pthread_mutex_destroy(&j->lock);
	free(j->path);
	free(j);
}

/* ------------------------------------------------------------------------
 * Committing and applying
 */

/* Binds bytes, or NULL for a NULL pointer; an empty string stays empty. */
static int bind_bytes(sqlite3_stmt *st, int i, const void *p, size_t len)
{
	if (p == NULL)
		return sqlite3_bind_null(st, i);
	return sqlite3_bind_blob64(st, i, p, len, SQLITE_STATIC);
}

static int bind_str(sqlite3_stmt *st, int i, const char *s)
{
	return bind_bytes(st, i, s, s != NULL ? strlen(s) : 0);
}

static bool change_valid(const struct journal_change *c)
{
	return c->kind >= JOURNAL_REPLACE && c->kind <= JOURNAL_KIND_MAX &&
	       (c->parent != NULL || c->parent_len == 0) &&
	       (c->parent2 != NULL || c->parent2_len == 0);
}

/* Writes the rows of one change. */
static int insert_change(sqlite3_stmt *st, uint64_t txid, size_t seq,
			 const struct journal_change *c)
{
	int rc;

	if ((rc = sqlite3_bind_int64(st, 1, (sqlite3_int64)txid)) ||
	    (rc = sqlite3_bind_int64(st, 2, (sqlite3_int64)seq)) ||
	    (rc = sqlite3_bind_int(st, 3, (int)c->kind)) ||
	    (rc = bind_str(st, 4, c->shadow)) ||
	    (rc = bind_bytes(st, 5, c->parent, c->parent_len)) ||
	    (rc = bind_str(st, 6, c->name)) ||
	    (rc = bind_bytes(st, 7, c->parent2, c->parent2_len)) ||
	    (rc = bind_str(st, 8, c->name2)) ||
	    (rc = sqlite3_bind_int64(st, 9, (sqlite3_int64)c->base_dev)) ||
	    (rc = sqlite3_bind_int64(st, 10, (sqlite3_int64)c->base_ino)) ||
	    (rc = sqlite3_bind_int64(st, 11, c->mode)) ||
	    (rc = sqlite3_bind_int64(st, 12, c->flags)) ||
	    (rc = bind_str(st, 13, c->path))) {
		done(st);
		return rc;
	}
	return run(st);
}

int journal_commit(struct journal *j, uint64_t txid, uint32_t owner,
		   const char *label, const struct journal_change *changes,
		   size_t n)
{
	sqlite3_stmt *st;
	int ret, rc;

	if (txid == 0 || txid > INT64_MAX || (n > 0 && changes == NULL))
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if (!change_valid(&changes[i]))
			return -EINVAL;

	pthread_mutex_lock(&j->lock);
	ret = j->err;
	if (ret < 0)
		goto out_unlock;
	rc = run(j->st[ST_BEGIN_IMMEDIATE]);
	if (rc != SQLITE_OK) {
		ret = op_fail(j, rc, "cannot begin transaction %" PRIu64, txid);
		goto out_unlock;
	}
	st = j->st[ST_INSERT_RECORD];
	sqlite3_bind_int64(st, 1, (sqlite3_int64)txid);
	sqlite3_bind_int64(st, 2, owner);
	if (label != NULL)
		sqlite3_bind_text(st, 3, label, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, now_ms());
	rc = run(st);
	if (rc == SQLITE_CONSTRAINT_PRIMARYKEY) {
		ret = -EEXIST;
		goto out_rollback;
	}
	if (rc != SQLITE_OK) {
		ret =
		    op_fail(j, rc, "cannot record transaction %" PRIu64, txid);
		goto out_rollback;
	}
	st = j->st[ST_BUMP_META];
	sqlite3_bind_int64(st, 1, (sqlite3_int64)txid);
	rc = run(st);
	if (rc != SQLITE_OK) {
		ret = op_fail(
		    j, rc, "cannot update meta for transaction %" PRIu64, txid);
		goto out_rollback;
	}
	for (size_t i = 0; i < n; i++) {
		rc = insert_change(j->st[ST_INSERT_CHANGE], txid, i,
				   &changes[i]);
		if (rc != SQLITE_OK) {
			ret = op_fail(j, rc,
				      "cannot record change %zu of transaction "
				      "%" PRIu64,
				      i, txid);
			goto out_rollback;
		}
	}
	rc = run(j->st[ST_COMMIT]);
	if (rc != SQLITE_OK) {
		ret =
		    op_fail(j, rc, "cannot commit transaction %" PRIu64, txid);
		goto out_rollback;
	}
	j->commits++;
	j->pending++;
	assert(invariants_locked(j));
	pthread_mutex_unlock(&j->lock);
	return 0;

out_rollback:
	rollback(j);
out_unlock:
	pthread_mutex_unlock(&j->lock);
	return ret;
}

int journal_mark_applied(struct journal *j, uint64_t txid)
{
	sqlite3_stmt *st;
	bool changed;
	int64_t applied;
	int ret, rc;

	if (txid == 0 || txid > INT64_MAX)
		return -ENOENT;
	pthread_mutex_lock(&j->lock);
	ret = j->err;
	if (ret < 0)
		goto out_unlock;
	rc = run(j->st[ST_BEGIN_IMMEDIATE]);
	if (rc != SQLITE_OK) {
		ret = op_fail(j, rc, "cannot begin marking %" PRIu64, txid);
		goto out_unlock;
	}
	st = j->st[ST_MARK];
	sqlite3_bind_int64(st, 1, (sqlite3_int64)txid);
	sqlite3_bind_int64(st, 2, now_ms());
	rc = run(st);
	if (rc != SQLITE_OK) {
		ret = op_fail(j, rc, "cannot mark %" PRIu64 " applied", txid);
		goto out_rollback;
	}
	changed = sqlite3_changes(j->db) == 1;
	if (!changed) {
		/* Absent, or applied already: marking again is harmless. */
		st = j->st[ST_RECORD_STATE];
		sqlite3_bind_int64(st, 1, (sqlite3_int64)txid);
		rc = query_int(st, &applied);
		if (rc == SQLITE_DONE)
			ret = -ENOENT;
		else if (rc != SQLITE_OK)
			ret = op_fail(j, rc, "cannot read %" PRIu64, txid);
		else
			ret = 0;
		goto out_rollback; /* ends a transaction that changed nothing */
	}
	rc = prune(j);
	if (rc != SQLITE_OK) {
		ret = op_fail(j, rc, "cannot prune applied records");
		goto out_rollback;
	}
	rc = run(j->st[ST_COMMIT]);
	if (rc != SQLITE_OK) {
		ret = op_fail(j, rc, "cannot commit marking %" PRIu64, txid);
		goto out_rollback;
	}
	j->applied++;
	j->pending--;
	assert(invariants_locked(j));
	pthread_mutex_unlock(&j->lock);
	return 0;

out_rollback:
	rollback(j);
out_unlock:
	pthread_mutex_unlock(&j->lock);
	return ret;
}

int journal_mark_steps(struct journal *j, uint64_t txid, size_t steps)
{
	sqlite3_stmt *st;
	int ret, rc;

	if (txid == 0 || txid > INT64_MAX || steps > INT64_MAX)
		return -EINVAL;
	pthread_mutex_lock(&j->lock);
	ret = j->err;
	if (ret < 0)
		goto out_unlock;
	st = j->st[ST_MARK_STEPS];
	sqlite3_bind_int64(st, 1, (sqlite3_int64)txid);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)steps);
	rc = run(st);
	if (rc != SQLITE_OK) {
		ret = op_fail(j, rc, "cannot record step %zu of %" PRIu64,
			      steps, txid);
		goto out_unlock;
	}
	if (sqlite3_changes(j->db) != 1)
		ret = -ENOENT; /* absent, applied, or fewer changes */
	assert(invariants_locked(j));
out_unlock:
	pthread_mutex_unlock(&j->lock);
	return ret;
}

int journal_max_txid(struct journal *j, uint64_t *out)
{
	int64_t v;
	int ret, rc;

	pthread_mutex_lock(&j->lock);
	ret = j->err;
	if (ret < 0)
		goto out_unlock;
	rc = query_row(j->st[ST_MAX_TXID], &v);
	if (rc != SQLITE_OK) {
		ret = op_fail(j, rc, "cannot read the largest txid");
		goto out_unlock;
	}
	*out = (uint64_t)v;
out_unlock:
	pthread_mutex_unlock(&j->lock);
	return ret;
}

int journal_note_txid(struct journal *j, uint64_t txid)
{
	sqlite3_stmt *st;
	int ret, rc;

	if (txid > INT64_MAX)
		return -EINVAL;
	pthread_mutex_lock(&j->lock);
	ret = j->err;
	if (ret < 0)
		goto out_unlock;
	st = j->st[ST_NOTE];
	sqlite3_bind_int64(st, 1, (sqlite3_int64)txid);
	rc = run(st);
	if (rc != SQLITE_OK) {
		ret = op_fail(j, rc, "cannot note txid %" PRIu64, txid);
		goto out_unlock;
	}
	assert(invariants_locked(j));
out_unlock:
	pthread_mutex_unlock(&j->lock);
	return ret;
}

/* ------------------------------------------------------------------------
 * Reading pending records
 */

/* Lists the txids of the COMMITTED records in commit order. */
static int pending_ids(struct journal *j, uint64_t **out, size_t *nout)
{
	sqlite3_stmt *st;
	uint64_t *ids = NULL, *grown;
	size_t n = 0, cap = 0;
	int ret = 0, rc;

	pthread_mutex_lock(&j->lock);
	ret = j->err;
	if (ret < 0)
		goto out_unlock;
	st = j->st[ST_PENDING_IDS];
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (n == cap) {
			cap = cap ? 2 * cap : 16;
			grown = realloc(ids, cap * sizeof(*ids));
			if (grown == NULL) {
				ret = -ENOMEM;
				break;
			}
			ids = grown;
		}
		ids[n++] = (uint64_t)sqlite3_column_int64(st, 0);
	}
	done(st);
	if (ret == 0 && rc != SQLITE_DONE)
		ret = op_fail(j, rc, "cannot list pending records");
out_unlock:
	pthread_mutex_unlock(&j->lock);
	if (ret < 0) {
		free(ids);
		return ret;
	}
	*out = ids;
	*nout = n;
	return 0;
}

static void loaded_free(struct loaded *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->mem[i]);
	free(l->mem);
	free(l->changes);
	memset(l, 0, sizeof(*l));
}

/* The change query's byte columns: shadow, parent, name, parent2, name2, path. */
static const int byte_cols[] = { 1, 2, 3, 4, 5, 10 };
#define NBYTE_COLS (sizeof(byte_cols) / sizeof(byte_cols[0]))

/* Appends the change in the current row of st to l. */
static int load_change(struct journal *j, uint64_t txid, sqlite3_stmt *st,
		       struct loaded *l)
{
	const void *src[NBYTE_COLS], *dst[NBYTE_COLS];
	size_t len[NBYTE_COLS] = { 0 }, total = 0;
	bool null[NBYTE_COLS];
	struct journal_change *c;
	int64_t kind, mode, flags;
	char *mem, *p;

	kind = sqlite3_column_int64(st, 0);
	mode = sqlite3_column_int64(st, 8);
	flags = sqlite3_column_int64(st, 9);
	if (kind < JOURNAL_REPLACE || kind > JOURNAL_KIND_MAX || mode < 0 ||
	    mode > UINT32_MAX || flags < 0 || flags > UINT32_MAX) {
		log_err("journal %s: change %zu of transaction %" PRIu64
			" is not understood (kind %" PRId64 ")",
			j->path, l->n, txid, kind);
		return -EBADMSG;
	}
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 16;
		struct journal_change *changes;
		char **mems;

		changes = realloc(l->changes, cap * sizeof(*changes));
		if (changes == NULL)
			return -ENOMEM;
		l->changes = changes;
		mems = realloc(l->mem, cap * sizeof(*mems));
		if (mems == NULL)
			return -ENOMEM;
		l->mem = mems;
		l->cap = cap;
	}

	/* Blob pointers first, then their sizes, as SQLite advises. */
	for (size_t i = 0; i < NBYTE_COLS; i++) {
		null[i] = sqlite3_column_type(st, byte_cols[i]) == SQLITE_NULL;
		src[i] = NULL;
		if (null[i])
			continue;
		/* NULL for an empty blob, which is still not a NULL field. */
		src[i] = sqlite3_column_blob(st, byte_cols[i]);
		len[i] = (size_t)sqlite3_column_bytes(st, byte_cols[i]);
		total += len[i] + 1;
	}
	mem = malloc(total ? total : 1);
	if (mem == NULL)
		return -ENOMEM;
	p = mem;
	for (size_t i = 0; i < NBYTE_COLS; i++) {
		if (null[i]) {
			dst[i] = NULL;
			continue;
		}
		if (len[i] > 0)
			memcpy(p, src[i], len[i]);
		p[len[i]] = '\0';
		dst[i] = p;
		p += len[i] + 1;
	}

	c = &l->changes[l->n];
	memset(c, 0, sizeof(*c));
	c->kind = (enum journal_kind)kind;
	c->shadow = dst[0];
	c->parent = dst[1];
	c->parent_len = dst[1] != NULL ? len[1] : 0;
	c->name = dst[2];
	c->parent2 = dst[3];
	c->parent2_len = dst[3] != NULL ? len[3] : 0;
	c->name2 = dst[4];
	c->base_dev = (uint64_t)sqlite3_column_int64(st, 6);
	c->base_ino = (uint64_t)sqlite3_column_int64(st, 7);
	c->mode = (uint32_t)mode;
	c->flags = (uint32_t)flags;
	c->path = dst[5];
	l->mem[l->n++] = mem;
	return 0;
}

/*
 * Reads txid's changes into l in one read transaction.  Sets *skip when the
 * record is no longer COMMITTED (the callback marked it applied meanwhile).
 */
static int load_record(struct journal *j, uint64_t txid, struct loaded *l,
		       bool *skip)
{
	sqlite3_stmt *st;
	int64_t applied, steps;
	int ret = 0, rc;

	*skip = false;
	pthread_mutex_lock(&j->lock);
	ret = j->err;
	if (ret < 0)
		goto out_unlock;
	rc = run(j->st[ST_BEGIN]);
	if (rc != SQLITE_OK) {
		ret = op_fail(j, rc, "cannot begin reading %" PRIu64, txid);
		goto out_unlock;
	}
	st = j->st[ST_RECORD_STATE];
	sqlite3_bind_int64(st, 1, (sqlite3_int64)txid);
	rc = query_int(st, &applied);
	if (rc == SQLITE_DONE) {
		*skip = true; /* deleted meanwhile */
		goto out_end;
	}
	if (rc != SQLITE_OK) {
		ret = op_fail(j, rc, "cannot read %" PRIu64, txid);
		goto out_end;
	}
	if (applied) {
		*skip = true;
		goto out_end;
	}
	st = j->st[ST_RECORD_STEPS];
	sqlite3_bind_int64(st, 1, (sqlite3_int64)txid);
	rc = query_int(st, &steps);
	if (rc != SQLITE_OK) {
		ret = op_fail(j, rc, "cannot read the steps of %" PRIu64, txid);
		goto out_end;
	}
	l->steps = (size_t)steps;
	st = j->st[ST_CHANGES];
	sqlite3_bind_int64(st, 1, (sqlite3_int64)txid);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		ret = load_change(j, txid, st, l);
		if (ret < 0)
			break;
	}
	done(st);
	if (ret == 0 && rc != SQLITE_DONE)
		ret =
		    op_fail(j, rc, "cannot read the changes of %" PRIu64, txid);
out_end:
	rollback(j); /* ends the read transaction */
out_unlock:
	pthread_mutex_unlock(&j->lock);
	if (ret < 0)
		loaded_free(l);
	return ret;
}

int journal_pending(struct journal *j, journal_pending_fn fn, void *arg)
{
	struct loaded l = { 0 };
	uint64_t *ids;
	size_t n;
	bool skip;
	int ret;

	ret = pending_ids(j, &ids, &n);
	if (ret < 0)
		return ret;
	for (size_t i = 0; i < n && ret == 0; i++) {
		ret = load_record(j, ids[i], &l, &skip);
		if (ret < 0 || skip)
			continue;
		if (l.steps > l.n) {
			log_err("journal %s: transaction %" PRIu64
				" claims %zu applied steps of %zu",
				j->path, ids[i], l.steps, l.n);
			loaded_free(&l);
			ret = -EBADMSG;
			break;
		}
		ret = fn(ids[i], l.changes, l.n, l.steps, arg);
		loaded_free(&l);
	}
	free(ids);
	return ret;
}

/* ------------------------------------------------------------------------
 * Status
 */

void journal_stats(struct journal *j, struct journal_stats *out)
{
	pthread_mutex_lock(&j->lock);
	out->commits = j->commits;
	out->applied = j->applied;
	out->pending = j->pending;
	pthread_mutex_unlock(&j->lock);
}

const char *journal_path(const struct journal *j)
{
	return j->path;
}

struct sqlite3 *journal_sqlite(struct journal *j)
{
	return j->db;
}

/* Checks invariants (2), (4) and (5) against the database; j->lock held. */
static bool invariants_locked(struct journal *j)
{
	sqlite3_stmt *st;
	bool ok;
	int rc;

	if (j->db == NULL || j->path == NULL)
		return false;
	for (int i = 0; i < ST_COUNT; i++)
		if (j->st[i] == NULL)
			return false;
	if (j->err != 0)
		return j->err == -EIO; /* the database cannot be asked */
	st = j->st[ST_CHECK];
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		/* Failing to ask is an I/O problem, not a broken invariant. */
		log_warn("journal %s: cannot check invariants: %s", j->path,
			 sqlite3_errmsg(j->db));
		done(st);
		return true;
	}
	ok = sqlite3_column_int64(st, 0) == 1 &&
	     sqlite3_column_int64(st, 1) == 1 &&
	     sqlite3_column_int64(st, 2) == 1 &&
	     (size_t)sqlite3_column_int64(st, 3) == j->pending &&
	     sqlite3_column_int64(st, 4) <= JOURNAL_KEEP_APPLIED;
	done(st);
	return ok;
}

bool journal_invariants(struct journal *j)
{
	bool ok;

	pthread_mutex_lock(&j->lock);
	ok = invariants_locked(j);
	pthread_mutex_unlock(&j->lock);
	return ok;
}
