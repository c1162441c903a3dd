/*
 * journal.h: the write-ahead journal of txfsd.
 *
 * A transaction is committed when its commit record, holding its whole
 * change set, is durable in STATE/journal.db.  The daemon then applies the
 * changes to the source directory and marks the record applied; at start-up
 * recovery redoes the records that were committed but not applied.  See
 * journal.c for the format, the record states and the invariants.
 */
#ifndef TXFS_JOURNAL_H
#define TXFS_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct journal;
struct sqlite3;

/* The journal's file name in the state directory. */
#define JOURNAL_FILE "journal.db"

/* The format this txfsd reads and writes (PRAGMA user_version). */
#define JOURNAL_FORMAT 2

/* How many applied records are kept as history for status and debugging. */
#define JOURNAL_KEEP_APPLIED 100

/*
 * The kinds of change a record holds.  They are stored as these integers:
 * never renumber.  Kinds from JOURNAL_CREATE on belong to later issues.
 */
enum journal_kind {
	/* Rename shadow over (parent, name): a file's new content. */
	JOURNAL_REPLACE = 1,
	/* Copy the shadow's data and attributes into the base inode (a file
	 * with several hard links, which a rename would split). */
	JOURNAL_WRITE_INTO = 2,
	/* Link a new object (shadow) at (parent, name). */
	JOURNAL_CREATE = 3,
	/* Remove (parent, name). */
	JOURNAL_UNLINK = 4,
	/* Rename (parent, name) to (parent2, name2), with flags. */
	JOURNAL_RENAME = 5,
	JOURNAL_MKDIR = 6,
	JOURNAL_RMDIR = 7,
	JOURNAL_LINK = 8,
	JOURNAL_SETATTR = 9,
};

/* The largest kind this txfsd knows; a record holding a larger one is refused. */
#define JOURNAL_KIND_MAX JOURNAL_SETATTR

/* One change.  Byte strings (handles) are opaque to the journal. */
struct journal_change {
	enum journal_kind kind;
	/* The shadow's file name relative to the state directory, or NULL. */
	const char *shadow;
	/* Kernel file handle bytes of the parent directory, or NULL. */
	const void *parent;
	size_t parent_len;
	/* The name in parent, or NULL. */
	const char *name;
	/* The second parent (rename, link) and name, or NULL. */
	const void *parent2;
	size_t parent2_len;
	const char *name2;
	/* The base object changed, 0 if none. */
	uint64_t base_dev, base_ino;
	/* Type and permission bits where relevant, else 0. */
	uint32_t mode;
	/* For example renameat2 flags, else 0. */
	uint32_t flags;
	/* The path in the mount for messages ("/a/b"), or NULL. */
	const char *path;
};

/*
 * Opens (creating if needed) statedir/journal.db relative to the open
 * directory statedir_fd, whose path is statedir_path; both must name the
 * same directory (-EINVAL otherwise).  Sets WAL mode, synchronous=FULL, a
 * busy timeout and foreign keys, and checks the format: a database of a
 * newer format gives -EPROTONOSUPPORT; a file that is not a database, is
 * corrupt (PRAGMA quick_check) or is not a txfs journal gives -EBADMSG.  A
 * database that is refused is left as it was, never discarded or recreated.
 * On failure writes a one-line lowercase reason into why.  Returns 0 or
 * -errno.
 */
int journal_open(int statedir_fd, const char *statedir_path,
		 struct journal **out, char *why, size_t whylen);

/* Closes the database and frees; NULL-safe. */
void journal_close(struct journal *j);

/*
 * Writes one committed record for txid (1 .. INT64_MAX) with its n changes,
 * atomically and durably: the record is on disk when this returns 0.  Returns
 * -EEXIST when txid's record is still in the journal, -EINVAL for a bad
 * argument, -ENOSPC when the disk is full, -EIO on an I/O error.  After -EIO
 * the outcome is unknown (the record may turn up after a restart) and every
 * later call fails with -EIO: the daemon must restart and recover.
 */
int journal_commit(struct journal *j, uint64_t txid, uint32_t owner,
		   const char *label, const struct journal_change *changes,
		   size_t n);

/*
 * Marks txid's record applied (its changes are all in the source), then
 * deletes the oldest applied records beyond JOURNAL_KEEP_APPLIED.  Marking an
 * applied record again is not an error.  Returns 0, -ENOENT for a txid not in
 * the journal, or -errno.
 */
int journal_mark_applied(struct journal *j, uint64_t txid);

/*
 * Records durably that the first steps changes of txid's COMMITTED record
 * are applied and durable in SOURCE, so that recovery resumes after them.
 * A smaller number than the one recorded is ignored.  Returns 0, -ENOENT
 * when txid has no COMMITTED record or fewer changes than steps (so that a
 * bad count can never make recovery refuse the record), -EINVAL, or
 * -errno.
 */
int journal_mark_steps(struct journal *j, uint64_t txid, size_t steps);

/*
 * The largest txid ever recorded or noted (0 if none).  It survives the
 * deletion of old records, so the daemon never reuses an id.
 */
int journal_max_txid(struct journal *j, uint64_t *out);

/*
 * Records the largest txid handed out so far even if it never commits, so
 * ids are never reused across restarts.  A value smaller than the current
 * maximum is ignored.  Returns 0 or -errno.
 */
int journal_note_txid(struct journal *j, uint64_t txid);

/*
 * Calls fn once per committed-but-unapplied record, in commit order, with
 * its changes in the order they were given to journal_commit and the
 * number of them journal_mark_steps recorded as applied.  The pointers
 * live only during the call.  fn may call other journal functions (e.g.
 * journal_mark_applied); records committed after the iteration began are
 * not visited.  If fn returns non-zero the iteration stops and that value is
 * returned.  Returns 0 or -errno (-EBADMSG for a record this txfsd cannot
 * read).
 */
typedef int (*journal_pending_fn)(uint64_t txid,
				  const struct journal_change *changes,
				  size_t n, size_t steps, void *arg);
int journal_pending(struct journal *j, journal_pending_fn fn, void *arg);

/* Counters for `txctl status`: records committed since open, applied, pending now. */
struct journal_stats {
	uint64_t commits, applied;
	size_t pending;
};
void journal_stats(struct journal *j, struct journal_stats *out);

/* The database's path, for messages. */
const char *journal_path(const struct journal *j);

/*
 * The SQLite connection, for tests and debugging only (to read pragmas).
 * The caller must not use it while another thread calls into the journal.
 */
struct sqlite3 *journal_sqlite(struct journal *j);

/* Checks the invariants listed in journal.c; takes the journal's lock. */
bool journal_invariants(struct journal *j);

#endif /* TXFS_JOURNAL_H */
