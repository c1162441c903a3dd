/*
 * view.h: the names of each transaction's view.
 *
 * A transaction's view is the base (SOURCE) plus an overlay of names: for
 * a (directory, name) pair the overlay says "whiteout" (the name is gone in
 * this view) or "object X" (the name leads to X: an object the transaction
 * created, or a base object it renamed or linked there).  Directories are
 * named by their identity (dev, ino), so renaming a directory in a view
 * never visits its entries.  Each view also keeps the log of its name
 * operations in order; commit replays it on SOURCE, which is always valid
 * because every step was valid in the view when it was taken.
 *
 * While a commit applies its log to SOURCE its overlay is "published":
 * every view, the base included, sees it on top of SOURCE, so readers see
 * the whole commit at once.
 *
 * Thread-safety: every function may be called from any thread; all state
 * is guarded by the STM.  No function does I/O.
 */
#ifndef TXFS_VIEW_H
#define TXFS_VIEW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "node.h"

struct handle;
struct view_table;

/* An object a name leads to. */
struct view_obj {
	struct node_key key;   /* its identity */
	struct handle *handle; /* to open it (owned by the struct) */
	bool created;	       /* made by the transaction (in its directory) */
	uint64_t from;	       /* view_lookup: the view whose overlay had it */
};

/* What a name was in the base when the view first changed it. */
struct view_base {
	bool existed;
	struct node_key key;
	/* The object's version then: a change to it conflicts with removing
	 * or renaming it (not checked for directories, whose entries are
	 * names of their own). */
	off_t size;
	struct timespec mtime, ctime;
};

/* The kinds of name operation, as logged. */
enum view_op_kind {
	VIEW_CREATE, /* obj (created, in the tx directory as leaf) at 1 */
	VIEW_LINK,   /* obj at 1 (obj exists elsewhere) */
	VIEW_UNLINK, /* remove name 1 (flags: AT_REMOVEDIR) */
	VIEW_RENAME, /* name 1 to name 2 (flags: renameat2 flags) */
};

/* One logged operation (a copy owned by the caller after view_log). */
struct view_op {
	enum view_op_kind kind;
	struct node_key dir1, dir2; /* directory identities */
	struct handle *dh1, *dh2;   /* their handles (NULL: the root) */
	char *name1, *name2;
	struct view_obj obj; /* CREATE, LINK */
	char leaf[24];	     /* CREATE: the name in the tx dir */
	unsigned flags;
};

/* A change to apply with view_apply: one operation and what it does to
 * the names.  name2/dir2 only for RENAME. */
struct view_change {
	struct view_op op;
	struct view_base base1, base2; /* the names' base state now */
	/* RENAME: what name 1 and name 2 lead to before the change (the
	 * source object, and for RENAME_EXCHANGE the target's). */
	struct view_obj src, dst;
	bool dst_exists;
};

int view_table_new(struct view_table **out);
void view_table_free(struct view_table *vt);
bool view_table_invariants(struct view_table *vt);

/* True when any view has name entries (or a log); cheap. */
bool view_any(struct view_table *vt);

/* True while a commit's names are published (a hint; no STM). */
bool view_published(struct view_table *vt);

/*
 * Looks (dir, name) up in view's overlay, then in the published overlay
 * (if any, and not view's own).  Returns VIEW_MISS (the base decides),
 * VIEW_GONE (a whiteout) or VIEW_FOUND with *obj filled (the caller frees
 * obj->handle with handle_free).  Negative on error.
 */
enum { VIEW_MISS = 0, VIEW_GONE = 1, VIEW_FOUND = 2 };
int view_lookup(struct view_table *vt, uint64_t view,
		const struct node_key *dir, const char *name,
		struct view_obj *obj);

/*
 * Records one operation of view (the caller did its I/O).  guard (may be
 * NULL) runs first inside the same STM transaction and may refuse it by
 * returning -errno (the transaction has ended).  0 or -errno.
 */
struct stm_tx;
typedef int (*view_guard_fn)(struct stm_tx *tx, void *arg);
int view_apply(struct view_table *vt, uint64_t view,
	       const struct view_change *ch, view_guard_fn guard, void *garg);

/*
 * Calls fn for every name view's overlay (then the published overlay)
 * has in dir, with found (false: a whiteout) and the object.  A name the
 * view's own overlay has hides the published overlay's.  0 or -errno.
 */
typedef void (*view_list_fn)(const char *name, bool found,
			     const struct node_key *obj, void *arg);
int view_list(struct view_table *vt, uint64_t view, const struct node_key *dir,
	      view_list_fn fn, void *arg);

/* Links the view's names add to (or remove from) obj; 0 if none. */
long view_nlink_delta(struct view_table *vt, uint64_t view,
		      const struct node_key *obj);

/*
 * For commit: copies view's log, oldest first (free with view_ops_free).
 */
int view_log(struct view_table *vt, uint64_t view, struct view_op **ops,
	     size_t *n);
void view_ops_free(struct view_op *ops, size_t n);

/* One name the view changed: where, what the base had, what it has now. */
struct view_name {
	struct node_key dir;
	struct handle *dh; /* NULL: the root */
	char *name;
	struct view_base base;
	bool found; /* false: a whiteout */
	struct view_obj obj;
};

/* Copies every name view changed, oldest first (free with
 * view_names_free).  0 or -errno. */
int view_names(struct view_table *vt, uint64_t view, struct view_name **out,
	       size_t *n);
void view_names_free(struct view_name *v, size_t n);

/* Makes view's overlay visible to every view (0 ends that); 0 or -errno. */
int view_publish(struct view_table *vt, uint64_t view);

/* The same inside the caller's STM body, to publish with other changes. */
int view_publish_in(struct stm_tx *tx, struct view_table *vt, uint64_t view);

/* Forgets everything of view (commit done, or abort). */
void view_drop(struct view_table *vt, uint64_t view);

#endif /* TXFS_VIEW_H */
