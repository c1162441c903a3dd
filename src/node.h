/*
 * node.h: the node table, one entry per FUSE nodeid.
 *
 * A node stands for exactly one object of one view: a backing object seen
 * through the base view (view 0), or, in later work, one transaction's
 * shadow of it.  The kernel's page, attribute and dentry caches hang off a
 * nodeid, so a nodeid never changes the object it stands for.
 *
 * Nodes do not hold a file descriptor each.  A node names its object by a
 * kernel file handle; the O_PATH descriptors that requests work through are
 * kept in a bounded LRU cache (node_fd_get/node_fd_put), so a tree with
 * more objects than the open-file limit is served without EMFILE.
 *
 * Thread-safety: every function may be called from any FUSE worker thread.
 * The table's membership and lookup counts are guarded by the STM.
 */
#ifndef TXFS_NODE_H
#define TXFS_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

struct node;
struct node_table;

/*
 * Views.  View 0 is the base (committed) view; a transaction's view is
 * numbered by its transaction id.  Nodes of a transaction's view stand for
 * its shadows and are keyed by the base object they shadow.
 */
enum { NODE_VIEW_BASE = 0 };

/* Lifecycle */

/*
 * Creates a table whose root is the directory open at root_fd (the table
 * takes ownership of root_fd).  fd_cache_max bounds the cached O_PATH
 * descriptors.  Returns 0 or -errno.
 */
int node_table_new(int root_fd, size_t fd_cache_max, struct node_table **out);

/* Frees the table and every node; no other thread may use it any more. */
void node_table_free(struct node_table *t);

/* Checks the table's invariants (for assert; may be slow). */
bool node_table_invariants(struct node_table *t);

/* Identity */

struct node *node_root(struct node_table *t);
uint64_t node_id(const struct node *n);
uint64_t node_generation(const struct node *n);
mode_t node_type(const struct node *n);
bool node_is_root(const struct node *n);

/*
 * Maps a FUSE nodeid the kernel holds a reference on back to its node.
 * The caller's request keeps the node alive.
 */
struct node *node_from_id(struct node_table *t, uint64_t id);

/*
 * What identifies a backing object.  Inode numbers are reused once an object
 * is gone, so the birth time tells a new object from an old one with the
 * same number (0 where the file system records none).
 */
struct node_key {
	dev_t dev;
	ino_t ino;
	mode_t type;
	uint64_t birth; /* nanoseconds since the epoch, or 0 */
};

/*
 * Stats name relative to dirfd (flags as for fstatat: AT_EMPTY_PATH,
 * AT_SYMLINK_NOFOLLOW) into st and key with one statx(2).
 * Returns 0 or -errno.
 */
int node_stat(int dirfd, const char *name, int flags, struct stat *st,
	      struct node_key *key);

/* A new O_PATH descriptor of the root (SOURCE), owned by the caller. */
int node_open_root(struct node_table *t);

/* The node's file handle; NULL for the root (and objects without). */
struct handle;
const struct handle *node_handle(const struct node *n);

/* The node's view, and the key it was published under. */
uint64_t node_view(const struct node *n);
void node_get_key(const struct node *n, struct node_key *key);

/* Lookup references */

/*
 * Adds one lookup reference to the live node for key in the base view.
 * Returns 0 and the node, or -ENOENT when the table has none.  A node
 * with the key's inode number but another birth time or type is an older
 * object whose number was reused: it is marked dead and -ENOENT returned.
 */
int node_ref(struct node_table *t, const struct node_key *key,
	     struct node **out);

/* As node_ref, in the given view. */
int node_ref_view(struct node_table *t, uint64_t view,
		  const struct node_key *key, struct node **out);

/* As node_ref_fd, in the given view (key names the object the node
 * stands for in that view; fd is the object actually opened). */
int node_ref_fd_view(struct node_table *t, uint64_t view, int fd,
		     const struct node_key *key, struct node **out);

/*
 * Finds or creates the node for the object open at fd (normally O_PATH, as
 * returned by openat with O_PATH|O_NOFOLLOW) identified by key, and adds
 * one lookup reference.  Takes ownership of fd in all cases.
 * Returns 0 or -errno.
 */
int node_ref_fd(struct node_table *t, int fd, const struct node_key *key,
		struct node **out);

/*
 * Looks name up in the directory open at dirfd: stats it, takes a
 * reference on its node, building the node from a fresh O_PATH descriptor
 * when the table has none.  Fills st with the attributes of the object the
 * node stands for.  Returns 0 or -errno.
 */
int node_lookup(struct node_table *t, int dirfd, const char *name,
		struct stat *st, struct node **out);

/*
 * The second half of node_lookup: takes a reference on the base node for
 * seen, the key node_stat found for name in dirfd, building the node from
 * a fresh O_PATH descriptor when the table has none (st is then refreshed
 * from what was opened).  Returns 0 or -errno.
 */
int node_ref_at(struct node_table *t, int dirfd, const char *name,
		const struct node_key *seen, struct stat *st,
		struct node **out);

/* Drops nlookup references (FUSE forget); frees the node at zero. */
void node_forget(struct node_table *t, struct node *n, uint64_t nlookup);

/*
 * Marks the node for (dev, ino) dead after its object lost its last name,
 * so a later object that reuses the inode number gets a node of its own.
 */
void node_mark_dead(struct node_table *t, dev_t dev, ino_t ino);

/*
 * Names.  A regular file of the base view remembers the name it was last
 * looked up by (parent directory and name), so that a transaction that
 * copies it up knows where to publish its new content.  node_set_name
 * records it (cheaply when unchanged; other nodes are ignored);
 * node_get_name opens the parent (O_PATH, owned by the caller) into
 * *dirfd and copies the name into buf.  Both return 0 or -errno
 * (node_get_name: -ENOENT when no name was recorded, -ESTALE when the
 * parent is gone).
 */
int node_set_name(struct node_table *t, struct node *n, struct node *parent,
		  const char *name);
int node_get_name(struct node_table *t, struct node *n, int *dirfd, char *buf,
		  size_t len);

/* Descriptors */

/*
 * Returns a pinned O_PATH descriptor for the node's object, or -errno
 * (-ESTALE when the object no longer exists).  Release with node_fd_put.
 */
int node_fd_get(struct node_table *t, struct node *n);
void node_fd_put(struct node_table *t, struct node *n);

/*
 * Opens a new descriptor on the node's object with flags (never O_CREAT).
 * Returns the fd, owned by the caller, or -errno.
 */
int node_open(struct node_table *t, struct node *n, int flags);

/* Statistics */

size_t node_count(struct node_table *t);
size_t node_fd_count(struct node_table *t);

#endif /* TXFS_NODE_H */
