/*
 * tx.h: transactions: begin, copy-up into shadows, commit, abort.
 *
 * A transaction is a set of member processes (see membership.h) whose
 * changes to existing files go to copy-on-write shadows in the state
 * directory.  Members see their shadows (the transaction's view, numbered
 * by the transaction id); everybody else sees the base.  Commit checks for
 * write-write conflicts, records the change set in the journal (the
 * durability point), flips every shadow to published in one STM
 * transaction (the atomicity point for readers through the mount), applies
 * the changes to SOURCE and forgets the transaction.  Abort removes every
 * shadow.
 *
 * The metadata (transactions, shadows, their states) is guarded by the
 * STM; the I/O (copying, fsync, renames, the journal) happens outside STM
 * bodies.  Commits and aborts run on the caller's thread; txfsd runs them
 * on one worker thread (see txcmd.h), which also serialises commits.
 */
#ifndef TXFS_TX_H
#define TXFS_TX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "node.h"

struct journal;
struct membership;
struct statedir;
struct tx_table;
struct view_change;
struct view_table;

struct tx_config {
	struct node_table *nodes;
	struct statedir *state;
	struct journal *journal;
	struct membership *members;
	struct view_table *views; /* the names of each view */
	const char *source_path;  /* resolved; for paths in messages */
};

/* What a transaction looks like from the outside (list, show). */
enum tx_state { TX_OPEN, TX_COMMITTING, TX_ABORTING, TX_DONE };

struct tx_info {
	uint64_t id;
	uid_t owner;
	pid_t leader;
	char label[256];
	int64_t started; /* seconds since the Epoch */
	enum tx_state state;
	size_t changes; /* shadows ready or published */
	size_t members; /* live member processes */
	uint64_t conn;	/* the control connection that aborts it on close */
};

/* Lifecycle */

/*
 * Creates the transaction table.  Removes what transactions of an earlier
 * run left in the state directory (a restart aborts open transactions)
 * and continues the id sequence after the journal's.  Returns 0 or -errno.
 */
int tx_table_new(const struct tx_config *cfg, struct tx_table **out);

/* Aborts every open transaction and frees the table. */
void tx_table_free(struct tx_table *tt);

bool tx_table_invariants(struct tx_table *tt);

/* Control (each may block on I/O; never call from an STM body) */

/*
 * Starts a transaction owned by owner and binds process leader to it.
 * conn is the control connection to abort it with (tx_abort_conn), or 0.
 * Returns 0 and the id, -ESRCH (no such process), -EPERM (requester may
 * not bind the process), -EBUSY (the process is in a transaction).
 */
int tx_begin(struct tx_table *tt, uid_t requester, pid_t leader,
	     const char *label, uint64_t conn, uint64_t *id);

/*
 * Binds pid into transaction id.  Returns 0, -ENOENT, -EPERM (requester
 * does not own the transaction), -EACCES (the process belongs to another
 * user), -ESRCH or -EBUSY.
 */
int tx_bind(struct tx_table *tt, uint64_t id, uid_t requester, pid_t pid);

/* A conflict report: one path per conflicting object. */
struct tx_conflicts {
	size_t n;
	char **paths;
};
void tx_conflicts_clear(struct tx_conflicts *c);

/*
 * Commits transaction id.  Returns 0 and the number of published objects
 * in *changes; -ECANCELED when it conflicted (it is then aborted and the
 * paths are in *conflicts); -ENOENT, -EPERM (requester is not the owner
 * or root), -EBUSY (a commit or abort is running), or the -errno of the
 * I/O that failed (the transaction then stays open and may be aborted).
 */
int tx_commit(struct tx_table *tt, uint64_t id, uid_t requester,
	      size_t *changes, struct tx_conflicts *conflicts);

/* Aborts transaction id.  Returns 0, -ENOENT, -EPERM or -EBUSY. */
int tx_abort(struct tx_table *tt, uint64_t id, uid_t requester);

/*
 * What transaction id changed, like `git status`: one change per path,
 * sorted by path.  Must run where commits and aborts run (the worker).
 * Returns 0, -ENOENT, -EPERM, -EBUSY (not open) or -errno.
 */
struct tx_change {
	char kind;   /* 'A'dded, 'M'odified, 'D'eleted, 'R'enamed,
			   * 'T'ype changed */
	char *path;  /* in the mount; for D the removed path */
	char *old;   /* R: the old path */
	mode_t type; /* S_IFREG, ... (now; for D before) */
	bool mode_changed;
	char *old_file; /* absolute path of the base version, or NULL */
	char *new_file; /* absolute path of the new version, or NULL */
};
int tx_diff(struct tx_table *tt, uint64_t id, uid_t requester,
	    struct tx_change **out, size_t *n);
void tx_changes_free(struct tx_change *c, size_t n);

/* What recovery did when the table was created (txctl status). */
struct tx_recovery {
	size_t records;	  /* committed records redone */
	size_t steps;	  /* steps performed */
	size_t already;	  /* steps found done by the crashed run */
	size_t skipped;	  /* steps whose directory was gone */
	size_t discarded; /* unfinished transactions' directories removed */
	uint64_t ms;	  /* how long it took */
};
void tx_recovery_get(struct tx_table *tt, struct tx_recovery *out);

/* The open transaction bound to control connection conn, or 0. */
uint64_t tx_by_conn(struct tx_table *tt, uint64_t conn);

/* Which transaction process pid belongs to (0: none); -errno on error. */
int tx_of_pid(struct tx_table *tt, pid_t pid, uint64_t *id);

/*
 * Introspection.  tx_list fills up to max entries and returns how many
 * transactions there are.  tx_show fills one (-ENOENT) and calls fn for
 * each changed object's path.
 */
size_t tx_list(struct tx_table *tt, struct tx_info *out, size_t max);
int tx_show(struct tx_table *tt, uint64_t id, struct tx_info *out,
	    void (*fn)(const char *path, const char *change, void *arg),
	    void *arg);

/* The file system's side */

/*
 * The view a request from thread tid sees: the id of the open transaction
 * its process belongs to, or NODE_VIEW_BASE.  Returns 0 or -errno (when
 * membership cannot be told, the request must fail).
 */
int tx_view_of(struct tx_table *tt, pid_t tid, uint64_t *view);

/* True while any transaction exists (replies then use timeouts of 0). */
bool tx_any(struct tx_table *tt);

/*
 * A counter raised each time a transaction ends.  A lookup that stats a
 * name and then resolves it reads it before and after: if it moved, a
 * commit may have renamed a shadow over the name in between, and the
 * lookup must start again (or it could show the replaced object after
 * the commit has ended).
 */
uint64_t tx_generation(struct tx_table *tt);

/* What a lookup in a view shows for a base object. */
enum tx_show_kind {
	TX_SHOW_BASE,	   /* the base object itself */
	TX_SHOW_SHADOW,	   /* the view's shadow: node (view, base key) */
	TX_SHOW_PUBLISHED, /* a committed shadow not yet in SOURCE: node
			    * (base view, shadow key) */
};

struct tx_target {
	enum tx_show_kind kind;
	struct node_key key;   /* the node's key */
	struct handle *handle; /* the shadow's (a copy), or NULL */
	nlink_t nlink;	       /* link count to show, 0: the object's own */
};

/*
 * Resolves what view sees for the base object base.  Fills *out (free
 * out->handle with handle_free).  Returns 0 or -errno.
 */
int tx_resolve(struct tx_table *tt, uint64_t view, const struct node_key *base,
	       struct tx_target *out);

/*
 * Copies the base regular file behind node n (a base-view node) up into
 * view's shadow, unless it has one already.  With truncate the shadow
 * starts empty (an O_TRUNC open).  Returns 0, -ESTALE when the node's name
 * no longer leads to its object, -EBUSY when the transaction is ending,
 * or the -errno of the copy.
 */
int tx_copy_up(struct tx_table *tt, uint64_t view, struct node *n,
	       bool truncate);

/*
 * Name operations.  tx_new_object reserves a fresh name (leaf) in the
 * transaction's directory and gives a descriptor of that directory (the
 * caller closes it) in which the caller makes the new object; the
 * transaction cannot end until the caller calls tx_end_object.
 * tx_apply_names records a name operation in the view, unless the
 * transaction has ended meanwhile (-EBUSY).  Both return 0 or -errno.
 */
int tx_new_object(struct tx_table *tt, uint64_t view, int *dirfd,
		  char leaf[24]);
void tx_end_object(struct tx_table *tt, uint64_t view);
int tx_apply_names(struct tx_table *tt, uint64_t view,
		   const struct view_change *ch);

/*
 * Records that a non-member changed base object key (a write, truncate,
 * attribute change), so a transaction that copied it up conflicts.
 * Cheap when no transaction has shadows.
 */
void tx_note_base_write(struct tx_table *tt, const struct node_key *key);

#endif /* TXFS_TX_H */
